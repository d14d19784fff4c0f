//! The web UI: its route table under every kind of credential, CSRF, per-owner control,
//! escaping of what SkyPilot and its users say, session expiry, login rate limits, the
//! refusal to listen beyond loopback without users, and TLS. The host database is
//! filled by the real cluster manager binary polling the simulator.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use skypilot_host::config::Config;
use skypilot_host::time::{Clock, SystemClock, Timestamp};

use crate::support::clock::TestClock;
use crate::support::host::{bin, cluster, free_port, Host, HostProcess};
use crate::support::sim::{Op, Outcome, SimCluster, SimStatus, Simulator};
use crate::support::web::{http, tokens_file, users_file, Browser, WebUi};

fn later(t: Timestamp, secs: f64) -> Timestamp {
    Timestamp::from_secs_f64(t.secs_since(Timestamp::from_secs(0)) + secs)
}

const ADMIN: (&str, &str, &str) = ("alice", "alice-password", "admin");
const USER: (&str, &str, &str) = ("bob", "bob-password", "user");
const VIEWER: (&str, &str, &str) = ("carol", "carol-password", "viewer");

/// A simulated fleet recorded by the cluster manager, and a web UI over it.
struct Setup {
    rt: tokio::runtime::Runtime,
    sim: Simulator,
    host: Host,
    _manager: HostProcess,
    web: Option<WebUi>,
    token: String,
    config: Config,
}

impl Setup {
    /// `extra` adds clusters to the simulated fleet; `tweak` changes the config.
    fn new(extra: &[SimCluster], tweak: impl FnOnce(&mut Config)) -> Setup {
        Setup::with_sim(extra, |_| {}, tweak)
    }

    /// [`Setup::new`], with `before` done to the simulator before the cluster manager
    /// first polls it.
    fn with_sim(
        extra: &[SimCluster],
        before: impl FnOnce(&Simulator),
        tweak: impl FnOnce(&mut Config),
    ) -> Setup {
        let rt = crate::support::runtime(2);
        let sim = rt.block_on(Simulator::start()).unwrap();
        before(&sim);
        sim.add_cluster(SimCluster::new("web-a").user("alice", "a1"));
        sim.add_cluster(SimCluster::new("web-b").user("bob", "b2"));
        if sim.next_job_id() == 1 {
            sim.upsert_job(crate::support::sim::SimJob::new(1, "nightly", "alice"));
        }
        if !sim.update_service("api", |_| {}) {
            let mut api = crate::support::sim::SimService::new("api", "alice", 1);
            api.replica(1, "READY", 1_796_540_000);
            sim.upsert_service(api);
        }
        sim.add_cluster(
            SimCluster::new("web-c")
                .user("alice", "a1")
                .status(SimStatus::Stopped),
        );
        for c in extra {
            sim.add_cluster(c.clone());
        }
        let names = sim.cluster_names();
        // List prices: m6i.large in us-west-2 (the simulator's default), $0.096/h.
        let host = Host::new(&sim.url(), 1, 3600).with_aws_catalog(
            "InstanceType,Price,SpotPrice,Region,AvailabilityZone\nm6i.large,0.096,0.04,us-west-2,us-west-2a\n",
        );
        let manager = host.spawn_manager();
        host.wait_status("the fleet is recorded", Duration::from_secs(30), |s| {
            names.iter().all(|n| cluster(s, n).is_some())
        });
        host.wait_jobs("the job queue is recorded", Duration::from_secs(30), |r| {
            r["jobs"].as_array().is_some_and(|j| !j.is_empty())
        });
        host.wait_services("the services are recorded", Duration::from_secs(30), |r| {
            r["services"].as_array().is_some_and(|j| !j.is_empty())
        });
        let users = users_file(host.dir.path(), &[ADMIN, USER, VIEWER]);
        let (tokens, token) = tokens_file(host.dir.path(), "ci-bot", "admin");
        let mut config = Config::default();
        config.skypilot.api_url = sim.url();
        config.skypilot.request_timeout_secs = 5;
        config.skypilot.connect_attempts = 1;
        config.cluster_manager.database = host.db.clone();
        config.web_ui.users_file = Some(users);
        config.web_ui.tokens_file = Some(tokens);
        tweak(&mut config);
        let clock = TestClock::new(SystemClock.now());
        let web = rt.block_on(WebUi::start(config.clone(), clock));
        Setup {
            rt,
            sim,
            host,
            _manager: manager,
            web: Some(web),
            token,
            config,
        }
    }

    /// Stops the web UI and starts a new one on the same config and database, its clock
    /// where the old one's was.
    fn restart(&mut self) {
        let old = self.web.take().unwrap();
        let now = old.clock.now();
        self.rt.block_on(old.stop());
        let web = WebUi::start(self.config.clone(), TestClock::new(now));
        self.web = Some(self.rt.block_on(web));
    }

    fn web(&self) -> &WebUi {
        self.web.as_ref().unwrap()
    }

    fn browser(&self) -> Browser {
        Browser::new(&self.web().base, http())
    }

    fn logged_in(&self, who: (&str, &str, &str)) -> Browser {
        let mut b = self.browser();
        self.rt.block_on(b.login(who.0, who.1));
        b
    }

    fn audit(&self) -> Vec<Value> {
        let b = self.logged_in(ADMIN);
        let a = self.rt.block_on(b.get("/api/v1/actions?limit=1000"));
        assert_eq!(a.status, 200, "{}", a.body);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        v["entries"].as_array().unwrap().clone()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(w) = self.web.take() {
            self.rt.block_on(w.stop());
        }
    }
}

/// Pages: without a login, a redirect to the login page naming where to come back.
const PAGES: [&str; 12] = [
    "/console/",
    "/console/clusters?status=UP",
    "/console/jobs?status=RUNNING",
    "/console/jobs/1",
    "/console/serve?status=READY",
    "/console/serve/api",
    "/console/clusters/web-a",
    "/console/clusters/web-a/actions/stop",
    "/console/audit",
    "/console/autostop",
    "/console/services",
    "/console/config",
];
/// Forms: without a login, a redirect too.
const PAGE_POSTS: [&str; 2] = ["/console/clusters/web-a/actions/stop", "/console/logout"];
/// The JSON API: without a login, 401.
const API: [&str; 8] = [
    "/api/v1/clusters",
    "/api/v1/jobs",
    "/api/v1/jobs/1",
    "/api/v1/services",
    "/api/v1/services/api",
    "/api/v1/clusters/web-a",
    "/api/v1/actions",
    "/api/v1/health",
];
/// Open to all.
const OPEN: [&str; 4] = [
    "/healthz",
    "/console/login",
    "/console/static/console.css",
    "/console/static/refresh.js",
];

fn security_headers_present(a: &crate::support::web::Answer, what: &str) {
    let csp = a.header("content-security-policy");
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "{what}: CSP {csp:?}"
    );
    assert!(csp.contains("script-src 'self'"), "{what}: CSP {csp:?}");
    assert!(!csp.contains("unsafe-inline"), "{what}: CSP {csp:?}");
    assert_eq!(a.header("x-content-type-options"), "nosniff", "{what}");
    assert!(!a.header("referrer-policy").is_empty(), "{what}");
}

#[test]
fn every_route_refuses_strangers_and_forged_requests() {
    let s = Setup::new(&[], |_| {});
    let rt = &s.rt;
    let anon = s.browser();
    // Nobody: pages redirect to the login, the API answers 401, the open routes answer.
    for path in PAGES {
        let a = rt.block_on(anon.get(path));
        assert_eq!(a.status, 303, "GET {path}: {}", a.body);
        let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
        assert_eq!(
            a.header("location"),
            format!("/console/login?next={next}"),
            "GET {path}"
        );
        security_headers_present(&a, path);
    }
    for path in PAGE_POSTS {
        let a = rt.block_on(anon.post(path, &[("action", "stop")], false));
        assert_eq!(a.status, 303, "POST {path}: {}", a.body);
        assert!(
            a.header("location").starts_with("/console/login"),
            "POST {path}"
        );
    }
    for path in API {
        let a = rt.block_on(anon.get(path));
        assert_eq!(a.status, 401, "GET {path}: {}", a.body);
        security_headers_present(&a, path);
    }
    let a = rt.block_on(anon.post("/api/v1/actions", &[("cluster", "web-a")], false));
    assert_eq!(a.status, 401, "POST /api/v1/actions: {}", a.body);
    for path in OPEN {
        let a = rt.block_on(anon.get(path));
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
    }

    // A SkyPilot service-account token is for the gateway, not a login here.
    let sa = |path: &str| {
        rt.block_on(
            http()
                .get(format!("{}{path}", s.web().base))
                .bearer_auth("sky_0123456789abcdef")
                .send(),
        )
        .unwrap()
        .status()
        .as_u16()
    };
    assert_eq!(sa("/api/v1/clusters"), 401);
    assert_eq!(sa("/console/clusters"), 401);
    // Wrong credentials of each kind: 401 from the middleware, on any route.
    for path in ["/api/v1/clusters", "/console/", "/dashboard/"] {
        let wrong_basic = rt
            .block_on(
                http()
                    .get(format!("{}{path}", s.web().base))
                    .basic_auth("alice", Some("not-her-password"))
                    .send(),
            )
            .unwrap();
        assert_eq!(wrong_basic.status().as_u16(), 401, "{path}");
        let wrong_token = rt
            .block_on(
                http()
                    .get(format!("{}{path}", s.web().base))
                    .bearer_auth("shtok_nottherealone")
                    .send(),
            )
            .unwrap();
        assert_eq!(wrong_token.status().as_u16(), 401, "{path}");
    }
    // Right credentials of each kind reach the API.
    let basic = rt
        .block_on(
            http()
                .get(format!("{}/api/v1/clusters", s.web().base))
                .basic_auth("bob", Some("bob-password"))
                .send(),
        )
        .unwrap();
    assert_eq!(basic.status().as_u16(), 200);
    let token = rt
        .block_on(
            http()
                .get(format!("{}/api/v1/health", s.web().base))
                .bearer_auth(&s.token)
                .send(),
        )
        .unwrap();
    assert_eq!(token.status().as_u16(), 200);

    // The login form itself needs its CSRF token.
    let a = rt.block_on(anon.post(
        "/console/login",
        &[("username", "alice"), ("password", "alice-password")],
        false,
    ));
    assert_eq!(a.status, 403, "login without CSRF: {}", a.body);

    // Logged in, but without the CSRF token: 403 and nothing sent to SkyPilot.
    let alice = s.logged_in(ADMIN);
    for path in PAGE_POSTS {
        let a = rt.block_on(alice.post(path, &[("action", "stop")], false));
        assert_eq!(a.status, 403, "POST {path} without CSRF: {}", a.body);
    }
    let wrong = rt
        .block_on(
            alice
                .http
                .post(format!(
                    "{}/console/clusters/web-a/actions/stop",
                    s.web().base
                ))
                .header(
                    "cookie",
                    format!("skyhost_session={}", alice.session.clone().unwrap()),
                )
                .form(&[("action", "stop"), ("csrf_token", "forged")])
                .send(),
        )
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 403);
    let json_post = rt
        .block_on(
            alice
                .http
                .post(format!("{}/api/v1/actions", s.web().base))
                .header(
                    "cookie",
                    format!("skyhost_session={}", alice.session.clone().unwrap()),
                )
                .json(&serde_json::json!({"cluster": "web-a", "action": "stop"}))
                .send(),
        )
        .unwrap();
    assert_eq!(json_post.status().as_u16(), 403);
    // Basic credentials a browser may have cached do not make a state change either.
    let basic_post = rt
        .block_on(
            http()
                .post(format!("{}/api/v1/actions", s.web().base))
                .basic_auth("alice", Some("alice-password"))
                .json(&serde_json::json!({"cluster": "web-a", "action": "stop"}))
                .send(),
        )
        .unwrap();
    assert_eq!(basic_post.status().as_u16(), 403);
    assert!(
        s.sim.requests_for(Op::Stop).is_empty(),
        "a forged request reached SkyPilot"
    );
    // Every page answers the logged-in person, with the security headers.
    for path in PAGES {
        let a = rt.block_on(alice.get(path));
        assert_eq!(a.status, 200, "GET {path} logged in: {}", a.body);
        security_headers_present(&a, path);
    }
}

#[test]
fn admins_act_users_only_on_their_own_clusters_viewers_never_and_all_is_audited() {
    let s = Setup::new(&[], |_| {});
    let rt = &s.rt;
    let alice = s.logged_in(ADMIN);
    let bob = s.logged_in(USER);
    let carol = s.logged_in(VIEWER);

    // Carol (viewer) is offered no action and may take none, not even on a cluster of
    // her name's.
    let list = rt.block_on(carol.get("/console/clusters"));
    assert_eq!(list.status, 200);
    assert!(
        !list.body.contains("/actions/"),
        "a viewer is offered actions"
    );
    let a = rt.block_on(carol.post("/console/clusters/web-b/actions/stop", &[], true));
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(s.sim.requests_for(Op::Stop).is_empty());

    // Bob may not stop alice's cluster: refused, audited, nothing sent.
    let page = rt.block_on(bob.get("/console/clusters/web-a/actions/stop"));
    assert_eq!(page.status, 403, "{}", page.body);
    let a = rt.block_on(bob.post("/console/clusters/web-a/actions/stop", &[], true));
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(s.sim.requests_for(Op::Stop).is_empty());
    let list = rt.block_on(bob.get("/console/clusters"));
    assert!(
        !list.body.contains("/console/clusters/web-a/actions/"),
        "bob is offered actions on alice's cluster"
    );
    assert!(list.body.contains("/console/clusters/web-b/actions/stop"));

    // Bob may set autostop on his own.
    let confirm = rt.block_on(bob.get("/console/clusters/web-b/actions/autostop"));
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let a = rt.block_on(bob.post(
        "/console/clusters/web-b/actions/autostop",
        &[("action", "autostop"), ("minutes", "45")],
        true,
    ));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(s.sim.cluster("web-b").unwrap().autostop, 45);

    // Alice stops anyone's cluster; SkyPilot gets it.
    let a = rt.block_on(alice.post("/console/clusters/web-b/actions/stop", &[], true));
    assert_eq!(a.status, 200, "{}", a.body);
    let stops = s.sim.requests_for(Op::Stop);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].body["cluster_name"], "web-b");

    // A failure of SkyPilot is shown and audited with its error.
    s.sim.set_outcome_for(
        Op::Down,
        "web-a",
        Outcome::fail("CloudUserIdentityError", "no AWS credentials found"),
    );
    let a = rt.block_on(alice.post("/console/clusters/web-a/actions/down", &[], true));
    assert_eq!(a.status, 502, "{}", a.body);
    // One line with SkyPilot's error type and message, no URL; the whole error folded.
    let start = a
        .body
        .find(r#"id="action-result">"#)
        .expect("an action result");
    let result = &a.body[start..start + a.body[start..].find("</p>").unwrap()];
    assert!(
        result.starts_with(r#"id="action-result">SkyPilot failed on web-a: "#)
            && result.ends_with("CloudUserIdentityError: no AWS credentials found")
            && !result.contains("http"),
        "{result}"
    );
    assert!(
        a.body.contains("<summary>SkyPilot's whole error</summary>"),
        "{}",
        a.body
    );

    // An API token acts without a session (no CSRF: a browser never sends it by itself).
    let a = rt
        .block_on(
            http()
                .post(format!("{}/api/v1/actions", s.web().base))
                .bearer_auth(&s.token)
                .json(&serde_json::json!({"cluster": "web-a", "action": "autostop", "minutes": 30, "down": true}))
                .send(),
        )
        .unwrap();
    assert_eq!(a.status().as_u16(), 200);
    assert_eq!(s.sim.cluster("web-a").unwrap().autostop, 30);

    let audit = s.audit();
    let find = |actor: &str, action: &str, cluster: &str| {
        audit
            .iter()
            .find(|e| e["actor"] == actor && e["action"] == action && e["cluster"] == cluster)
            .unwrap_or_else(|| panic!("no audit entry {actor} {action} {cluster} in {audit:#?}"))
            .clone()
    };
    assert_eq!(find("web-ui:bob", "stop", "web-a")["outcome"], "refused");
    assert_eq!(find("web-ui:bob", "autostop", "web-b")["outcome"], "ok");
    assert_eq!(find("web-ui:alice", "stop", "web-b")["outcome"], "ok");
    let down = find("web-ui:alice", "down", "web-a");
    assert_eq!(down["outcome"], "error");
    assert!(down["detail"]
        .as_str()
        .unwrap()
        .contains("no AWS credentials found"));
    assert_eq!(find("web-ui:ci-bot", "autostop", "web-a")["outcome"], "ok");
    assert!(audit
        .iter()
        .any(|e| e["actor"] == "web-ui:alice" && e["action"] == "login"));

    // The audit log page and the cluster page show it.
    let page = rt.block_on(alice.get("/console/audit"));
    assert!(page.body.contains("web-ui:bob") && page.body.contains("refused"));
    let page = rt.block_on(alice.get("/console/clusters/web-a"));
    assert!(
        page.body.contains("/dashboard/clusters/web-a"),
        "link to SkyPilot's dashboard"
    );
    assert!(page.body.contains("no AWS credentials found"));
}

#[test]
fn html_from_skypilot_and_its_users_is_escaped() {
    let evil_user = "<script>alert('user')</script>";
    let evil_cluster = "evil<img src=x onerror=alert(1)>";
    let s = Setup::new(
        &[SimCluster::new(evil_cluster).user(evil_user, "e1")],
        |_| {},
    );
    let rt = &s.rt;
    let evil_error = "<b onmouseover=alert(2)>denied</b>";
    s.sim.set_outcome_for(
        Op::Stop,
        evil_cluster,
        Outcome::fail("CloudUserIdentityError", evil_error),
    );
    let alice = s.logged_in(ADMIN);
    let encoded: String = url::form_urlencoded::byte_serialize(evil_cluster.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    let action = format!("/console/clusters/{encoded}/actions/stop");
    let a = rt.block_on(alice.post(&action, &[], true));
    assert_eq!(a.status, 502, "{}", a.body);
    let mut pages = vec![a.body];
    for path in [
        "/console/clusters".to_string(),
        format!("/console/clusters/{encoded}"),
        "/console/audit".to_string(),
        "/console/".to_string(),
        format!(
            "/console/clusters?user={}",
            url::form_urlencoded::byte_serialize(evil_user.as_bytes()).collect::<String>()
        ),
    ] {
        let p = rt.block_on(alice.get(&path));
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        pages.push(p.body);
    }
    for (i, body) in pages.iter().enumerate() {
        for raw in [evil_user, "<img src=x", "<b onmouseover"] {
            assert!(!body.contains(raw), "page {i} contains {raw:?} unescaped");
        }
    }
    assert!(
        pages[1].contains("&lt;script&gt;alert('user')&lt;/script&gt;")
            || pages[1].contains("&lt;script&gt;alert(&#39;user&#39;)&lt;/script&gt;"),
        "the user is shown, escaped"
    );
    assert!(
        pages[0].contains("&lt;b onmouseover=alert(2)&gt;denied&lt;/b&gt;"),
        "the error is shown, escaped: {}",
        pages[0]
    );
}

/// The Jobs page, a job's page, the Overview and the JSON API show SkyPilot's managed
/// jobs with their owner, cost so far (the price of the cluster they run on) and failure,
/// every value from SkyPilot escaped.
#[test]
fn the_jobs_pages_show_the_queue_escaped() {
    use crate::support::sim::SimJob;
    let evil_name = "train<img src=x onerror=alert(3)>";
    let evil_reason = "<script>alert('reason')</script>";
    let s = Setup::with_sim(
        &[],
        |sim| {
            let mut running = SimJob::new(1, "train-llm", "alice");
            running.status = "RUNNING".into();
            running.cluster = Some("web-a".into());
            running.recovery_count = 2;
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                - 3600.0;
            running.start_at = Some(started);
            running.submitted_at = Some(started);
            sim.upsert_job(running);
            let mut failed = SimJob::new(2, evil_name, "bob");
            failed.status = "FAILED".into();
            failed.failure_reason = Some(evil_reason.into());
            sim.upsert_job(failed);
        },
        |_| {},
    );
    s.host.wait_jobs("both jobs", Duration::from_secs(30), |r| {
        r["jobs"].as_array().is_some_and(|j| j.len() == 2)
    });
    let rt = &s.rt;
    let viewer = s.logged_in(VIEWER);
    let list = rt.block_on(viewer.get("/console/jobs"));
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("train-llm") && list.body.contains("RUNNING"));
    // Without a filter, jobs that ended are left out; with all=1 they are there.
    assert!(!list.body.contains("FAILED</span>"), "{}", list.body);
    let all = rt.block_on(viewer.get("/console/jobs?all=1"));
    assert!(all.body.contains("FAILED"), "{}", all.body);
    // An hour on a $0.096/h cluster.
    assert!(all.body.contains("$0.10"), "{}", all.body);
    let one = rt.block_on(viewer.get("/console/jobs/2"));
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(
        one.body.contains("/dashboard/jobs/2"),
        "link to SkyPilot's page"
    );
    let overview = rt.block_on(viewer.get("/console/"));
    assert!(
        overview.body.contains("Managed jobs") && overview.body.contains("1 running"),
        "{}",
        overview.body
    );
    for (what, body) in [
        ("list", &all.body),
        ("job", &one.body),
        ("overview", &overview.body),
    ] {
        for raw in ["<img src=x", "<script>alert("] {
            assert!(!body.contains(raw), "{what} contains {raw:?} unescaped");
        }
    }
    assert!(
        one.body.contains("&lt;script&gt;"),
        "the failure is shown, escaped"
    );
    assert_eq!(rt.block_on(viewer.get("/console/jobs/99")).status, 404);

    let api = rt.block_on(viewer.get("/api/v1/jobs?all=1"));
    assert_eq!(api.status, 200, "{}", api.body);
    let v: Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(v["total"], 2);
    assert_eq!(v["active"], 1);
    assert_eq!(v["by_status"]["FAILED"], 1);
    let j = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == 1)
        .unwrap();
    assert_eq!(
        (&j["user_name"], &j["recovery_count"]),
        (&json!("alice"), &json!(2))
    );
    assert_eq!(j["hourly_cost"], 0.096);
    let bad = rt.block_on(viewer.get("/api/v1/jobs?status=LOST"));
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("LOST"), "{}", bad.body);
    // Every role reads the job queue (it is the fleet's, as the clusters are).
    for who in [USER, ADMIN] {
        let b = s.logged_in(who);
        for path in [
            "/console/jobs?all=1",
            "/console/jobs/1",
            "/api/v1/jobs",
            "/api/v1/jobs/1",
        ] {
            assert_eq!(rt.block_on(b.get(path)).status, 200, "{path} as {}", who.2);
        }
    }
    let job = rt.block_on(viewer.get("/api/v1/jobs/1"));
    let v: Value = serde_json::from_str(&job.body).unwrap();
    assert_eq!(v["transitions"][0]["to"], "RUNNING");
}

#[test]
fn the_services_pages_show_the_services_escaped() {
    use crate::support::sim::SimService;
    let evil = "chat<img src=x onerror=alert(4)>";
    // api's ready replica runs on a priced cluster ($0.096/h).
    let s = Setup::with_sim(
        &[SimCluster::new("api-1").user("alice", "a1")],
        |sim| {
            let mut web = SimService::new("api", "alice", 2);
            web.replica(1, "READY", 1_796_540_000);
            web.replica(2, "PROVISIONING", 1_796_540_000);
            sim.upsert_service(web);
            let mut chat = SimService::new(evil, "bob", 1);
            chat.replica(1, "FAILED", 1_796_540_000);
            sim.upsert_service(chat);
        },
        |_| {},
    );
    s.host
        .wait_services("both services", Duration::from_secs(30), |r| {
            r["services"].as_array().is_some_and(|j| j.len() == 2)
        });
    let rt = &s.rt;
    let viewer = s.logged_in(VIEWER);
    let list = rt.block_on(viewer.get("/console/serve"));
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body
            .contains(r#"<a href="/console/serve/api">api</a>"#)
            && list.body.contains("1 PROVISIONING, 1 READY"),
        "{}",
        list.body
    );
    assert!(
        list.body
            .contains(r#"<a href="http://localhost:30001" rel="noreferrer">"#),
        "the endpoint is a link: {}",
        list.body
    );
    let one = rt.block_on(viewer.get("/console/serve/api"));
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(
        one.body.contains(r#"href="/console/clusters/api-1""#),
        "a replica links to its cluster: {}",
        one.body
    );
    let failed = rt.block_on(viewer.get("/console/serve?status=FAILED"));
    assert!(failed.body.contains("chat&lt;img"), "{}", failed.body);
    let overview = rt.block_on(viewer.get("/console/"));
    assert!(
        overview.body.contains("Services without a ready replica")
            && overview.body.contains("1 ready of 2"),
        "{}",
        overview.body
    );
    let evil_page = rt.block_on(viewer.get(&format!(
        "/console/serve/{}",
        "chat%3Cimg%20src=x%20onerror=alert(4)%3E"
    )));
    assert_eq!(evil_page.status, 200, "{}", evil_page.body);
    for (what, body) in [
        ("list", &list.body),
        ("failed", &failed.body),
        ("service", &evil_page.body),
        ("overview", &overview.body),
    ] {
        assert!(
            !body.contains("<img src=x"),
            "{what} contains markup unescaped"
        );
    }
    assert_eq!(rt.block_on(viewer.get("/console/serve/nope")).status, 404);
    let bad = rt.block_on(viewer.get("/console/serve?status=DOWN"));
    assert_eq!(bad.status, 400);

    let api = rt.block_on(viewer.get("/api/v1/services"));
    assert_eq!(api.status, 200, "{}", api.body);
    let v: Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(v["by_status"]["READY"], 1);
    assert_eq!(v["by_status"]["FAILED"], 1);
    assert_eq!(v["without_ready"], 1);
    assert_eq!(v["burn"], 0.096, "the price of api-1");
    let one = rt.block_on(viewer.get("/api/v1/services/api"));
    let v: Value = serde_json::from_str(&one.body).unwrap();
    assert_eq!(v["service"]["ready_replicas"], 1);
    assert_eq!(v["service"]["hourly_cost"], 0.096);
    assert_eq!(v["transitions"][0]["to"], "READY");
    assert_eq!(rt.block_on(viewer.get("/api/v1/services/nope")).status, 404);
    // Every role reads the services (they are the fleet's, as the clusters are).
    for who in [USER, ADMIN] {
        let b = s.logged_in(who);
        for path in ["/console/serve", "/console/serve/api", "/api/v1/services"] {
            assert_eq!(rt.block_on(b.get(path)).status, 200, "{path} as {}", who.2);
        }
    }
}

#[test]
fn sessions_expire_and_logout_ends_them() {
    let s = Setup::new(&[], |c| c.web_ui.session_lifetime_secs = 600);
    let rt = &s.rt;
    let alice = s.logged_in(ADMIN);
    let t0 = s.web().clock.now();
    s.web().clock.set(later(t0, 599.0));
    assert_eq!(rt.block_on(alice.get("/console/clusters")).status, 200);
    s.web().clock.set(later(t0, 601.0));
    let a = rt.block_on(alice.get("/console/clusters"));
    assert_eq!(a.status, 303, "an expired session is no login");
    assert!(a.header("location").starts_with("/console/login"));
    let a = rt.block_on(alice.get("/api/v1/clusters"));
    assert_eq!(a.status, 401);

    let bob = s.logged_in(USER);
    let out = rt.block_on(bob.post("/console/logout", &[], true));
    assert_eq!(out.status, 303);
    let gone = crate::support::web::set_cookie(&out.headers, "skyhost_session").unwrap();
    assert!(gone.contains("Max-Age=0"), "{gone}");
    assert_eq!(
        rt.block_on(bob.get("/console/")).status,
        303,
        "the session ended on the server"
    );
}

#[test]
fn a_restart_keeps_sessions_and_what_ended_stays_ended() {
    let mut s = Setup::new(&[], |c| c.web_ui.session_lifetime_secs = 600);
    let mut alice = s.logged_in(ADMIN);
    let mut bob = s.logged_in(USER);
    let mut viewer = s.logged_in(VIEWER);
    assert_eq!(
        s.rt.block_on(bob.post("/console/logout", &[], true)).status,
        303
    );
    s.restart();
    for b in [&mut alice, &mut bob, &mut viewer] {
        b.base = s.web().base.clone();
    }
    let a = s.rt.block_on(alice.get("/console/"));
    assert_eq!(a.status, 200, "the session outlived the restart");
    assert!(a.body.contains(&who("alice", "admin")), "{}", a.body);
    let a = s.rt.block_on(bob.get("/console/"));
    assert_eq!(
        a.status, 303,
        "a logged-out session stays ended after a restart"
    );
    let mut forged = s.browser();
    forged.session = Some("not-a-session-id".into());
    assert_eq!(s.rt.block_on(forged.get("/console/")).status, 303);
    // The CSRF token of the page served before the restart still holds.
    let out = s.rt.block_on(alice.post("/console/logout", &[], true));
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(s.rt.block_on(alice.get("/console/")).status, 303);
    s.restart();
    for b in [&mut alice, &mut viewer] {
        b.base = s.web().base.clone();
    }
    assert_eq!(s.rt.block_on(alice.get("/console/")).status, 303);
    assert_eq!(s.rt.block_on(viewer.get("/console/")).status, 200);
    let t0 = s.web().clock.now();
    s.web().clock.set(later(t0, 601.0));
    assert_eq!(
        s.rt.block_on(viewer.get("/console/")).status,
        303,
        "a restored session still expires"
    );
}

/// Replaces the users file at `path` with one of `users`, in one step (as an editor
/// saving it does).
fn replace_users_file(path: &Path, users: &[(&str, &str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let made = users_file(tmp.path(), users);
    std::fs::copy(&made, path.with_extension("new")).unwrap();
    std::fs::rename(path.with_extension("new"), path).unwrap();
}

/// Polls `check` every 250 ms for up to 15 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not within 15 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_users_file_is_read_again_when_it_changes_and_a_bad_one_keeps_the_old() {
    let s = Setup::new(&[], |_| {});
    let path = s.config.web_ui.users_file.clone().unwrap();
    let alice = s.logged_in(ADMIN);
    let bob = s.logged_in(USER);
    let carol = s.logged_in(VIEWER);
    // bob leaves, carol becomes a user, dave arrives.
    replace_users_file(
        &path,
        &[
            ADMIN,
            ("carol", "carol-password", "user"),
            ("dave", "dave-password", "viewer"),
        ],
    );
    // (Asked by a session, not by logging in: failed logins would be rate-limited.)
    eventually("bob, no longer in the file, has no session", || {
        s.rt.block_on(bob.get("/console/")).status == 303
    });
    let mut dave = s.browser();
    assert_eq!(
        s.rt.block_on(dave.try_login("dave", "dave-password"))
            .status,
        303,
        "a person added to the file logs in"
    );
    assert_eq!(
        s.rt.block_on(alice.get("/console/")).status,
        200,
        "nobody else is logged out"
    );
    let page = s.rt.block_on(carol.get("/console/"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&who("carol", "user")),
        "the role the file gives now: {}",
        page.body
    );
    // A file that does not read: the previous one stays, and the Services page says why.
    std::fs::write(path.with_extension("new"), "dave:not-a-hash:viewer\n").unwrap();
    std::fs::rename(path.with_extension("new"), &path).unwrap();
    eventually("the Services page names the problem", || {
        let p = s.rt.block_on(alice.get("/console/services"));
        p.body
            .contains("the previous users and tokens stay in force")
    });
    let p = s.rt.block_on(alice.get("/console/services"));
    assert!(p.body.contains(&path.display().to_string()), "{}", p.body);
    let mut d = s.browser();
    assert_eq!(
        s.rt.block_on(d.try_login("dave", "dave-password")).status,
        303,
        "the last good file is in force"
    );
    assert_eq!(s.rt.block_on(carol.get("/console/")).status, 200);
}

#[test]
fn session_cookies_are_http_only_and_same_site() {
    let s = Setup::new(&[], |_| {});
    let mut b = s.browser();
    let a = s.rt.block_on(b.try_login("alice", "alice-password"));
    let c = crate::support::web::set_cookie(&a.headers, "skyhost_session").unwrap();
    assert!(c.contains("HttpOnly"), "{c}");
    assert!(
        c.contains("SameSite=Lax") || c.contains("SameSite=Strict"),
        "{c}"
    );
    assert!(!c.contains("Secure"), "plain HTTP on loopback: {c}");
}

#[test]
fn logins_are_rate_limited_per_user_and_per_client() {
    let s = Setup::new(&[], |c| {
        c.web_ui.login_failures_per_user = 3;
        c.web_ui.login_failures_per_client = 5;
        c.web_ui.login_window_secs = 60;
    });
    let rt = &s.rt;
    let mut b = s.browser();
    for _ in 0..3 {
        assert_eq!(rt.block_on(b.try_login("alice", "wrong")).status, 401);
    }
    // Locked: even the right password is refused, with a Retry-After.
    let a = rt.block_on(b.try_login("alice", "alice-password"));
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.header("retry-after").parse::<u64>().unwrap() > 0);
    // Basic auth counts against the same limits.
    let basic = rt
        .block_on(
            http()
                .get(format!("{}/api/v1/clusters", s.web().base))
                .basic_auth("alice", Some("alice-password"))
                .send(),
        )
        .unwrap();
    assert_eq!(basic.status().as_u16(), 429);
    // Another user from the same client: two more failures reach the client's limit.
    for _ in 0..2 {
        assert_eq!(rt.block_on(b.try_login("bob", "wrong")).status, 401);
    }
    assert_eq!(rt.block_on(b.try_login("bob", "bob-password")).status, 429);
    // After the window, the right password works again.
    let now = s.web().clock.now();
    s.web().clock.set(later(now, 61.0));
    assert_eq!(
        rt.block_on(b.try_login("alice", "alice-password")).status,
        303
    );
}

/// Whether `GET /healthz` on 127.0.0.1:`port` answers 200.
fn healthz_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

#[test]
fn without_users_it_makes_one_admin_with_a_private_password_and_a_users_file_disables_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("host.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "[cluster_manager]\ndatabase = {:?}\n[web_ui]\nlisten = \"0.0.0.0:{port}\"\n",
            dir.path().join("host.db").to_str().unwrap()
        ),
    )
    .unwrap();
    let start = |log: &str| {
        let mut p = HostProcess::role("web-ui", &config, &dir.path().join(log));
        let started = std::time::Instant::now();
        while !healthz_answers(port) {
            assert!(p.is_running(), "web-ui exited: {}", p.log_text());
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "web-ui never listened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    };
    let p = start("web1.log");
    let file = dir.path().join("web-ui-initial-admin");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(password.len() >= 24, "{password}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the password file is readable by others");
    let log = p.log_text();
    assert!(
        log.contains(file.to_str().unwrap()),
        "the log names the file: {log}"
    );
    assert!(
        !log.contains(&password),
        "the log shows the password: {log}"
    );
    let rt = crate::support::runtime(2);
    let login = |user: &str, pw: &str| {
        rt.block_on(
            http()
                .get(format!("http://127.0.0.1:{port}/api/v1/clusters"))
                .basic_auth(user, Some(pw))
                .send(),
        )
        .unwrap()
        .status()
        .as_u16()
    };
    // The generated admin logs in (the database is missing, so the API says so: not 401).
    assert_ne!(login("admin", &password), 401);
    assert_eq!(login("admin", "wrong-password"), 401);
    assert!(p.terminate().success());
    // A second start keeps the same password: it never makes another.
    let p = start("web2.log");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    assert_ne!(login("admin", &password), 401);
    assert!(p.terminate().success());
    // With a users file, the generated admin is disabled.
    let users = users_file(dir.path(), &[ADMIN]);
    std::fs::write(
        &config,
        format!(
            "[cluster_manager]\ndatabase = {:?}\n[web_ui]\nlisten = \"0.0.0.0:{port}\"\nusers_file = {:?}\n",
            dir.path().join("host.db").to_str().unwrap(),
            users.to_str().unwrap()
        ),
    )
    .unwrap();
    let p = start("web3.log");
    assert_eq!(login("admin", &password), 401);
    assert_ne!(login(ADMIN.0, ADMIN.1), 401);
    assert!(
        p.log_text().contains("generated admin is disabled"),
        "{}",
        p.log_text()
    );
    assert!(p.terminate().success());
}

#[test]
fn a_broken_users_file_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "# ok\nalice:$argon2id$nope:admin\n").unwrap();
    let config = dir.path().join("host.toml");
    std::fs::write(
        &config,
        format!("[web_ui]\nusers_file = {:?}\n", users.to_str().unwrap()),
    )
    .unwrap();
    let out = bin()
        .args(["web-ui", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}: line 2:", users.display())),
        "{err}"
    );
}

/// A certificate for 127.0.0.1 and its key, in PEM files; the certificate's PEM.
fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ])));
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert.pem())
}

#[test]
fn serves_tls_with_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(dir.path());
    let s = Setup::new(&[], |c| {
        c.web_ui.tls_cert_file = Some(cert.clone());
        c.web_ui.tls_key_file = Some(key.clone());
    });
    assert!(s.web().base.starts_with("https://"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let health =
        s.rt.block_on(async {
            client
                .get(format!("{}/healthz", s.web().base))
                .send()
                .await?
                .text()
                .await
        })
        .unwrap();
    assert_eq!(health, "ok\n");
    let mut b = Browser::new(&s.web().base, client);
    let a = s.rt.block_on(b.try_login("alice", "alice-password"));
    assert_eq!(a.status, 303, "{}", a.body);
    let c = crate::support::web::set_cookie(&a.headers, "skyhost_session").unwrap();
    assert!(c.contains("; Secure"), "{c}");
    // Plain HTTP to the TLS port gets no page.
    let plain = s.rt.block_on(
        http()
            .get(s.web().base.replace("https://", "http://") + "/healthz")
            .send(),
    );
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[test]
fn the_api_lists_and_filters_the_clusters() {
    let s = Setup::new(&[], |_| {});
    let alice = s.logged_in(ADMIN);
    let a =
        s.rt.block_on(alice.get("/api/v1/clusters?status=UP&sort=name"));
    assert_eq!(a.status, 200, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    let names: Vec<&str> = v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-a", "web-b"]);
    assert_eq!(v["state"]["stale"], false);
    let a = s.rt.block_on(alice.get("/api/v1/clusters?user=bob"));
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["clusters"].as_array().unwrap().len(), 1);
    let a = s.rt.block_on(alice.get("/api/v1/clusters?status=RUNNING"));
    assert_eq!(a.status, 400);
    assert!(a.body.contains("RUNNING"), "{}", a.body);
    let a = s.rt.block_on(alice.get("/api/v1/clusters/web-c"));
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["cluster"]["status"], "STOPPED");
    assert_eq!(
        s.rt.block_on(alice.get("/api/v1/clusters/nope")).status,
        404
    );
    let _ = &s.host;
}

/// The console in headless Chromium: log in, see the clusters, stop one on the
/// simulator, see it in the audit log (tests/browser/console_flow.py, with Debian's
/// Chromium and Playwright from `.venv/browser`). Screenshots go to target/screenshots.
#[cfg(feature = "browser")]
#[test]
fn browser_console_flow() {
    let s = Setup::new(&[], |_| {});
    let root = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("BROWSER_PYTHON")
        .unwrap_or_else(|_| format!("{root}/.venv/browser/bin/python"));
    let shots = format!("{root}/target/screenshots");
    let out = std::process::Command::new(&python)
        .arg(format!("{root}/tests/browser/console_flow.py"))
        .args([s.web().base.as_str(), ADMIN.0, ADMIN.1, shots.as_str()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("browser: ") && stdout.contains(" 0 failed"),
        "{stdout}"
    );
    let stops = s.sim.requests_for(Op::Stop);
    assert_eq!(stops.len(), 1, "the browser's stop reached SkyPilot");
    assert_eq!(stops[0].body["cluster_name"], "web-a");
}

/// The Autostop page shows the enforcer's own dry run: one row per cluster with its
/// decision, computed from the same database and `[autostop]` policy, and nothing sent.
#[test]
fn the_autostop_page_previews_the_next_pass() {
    let s = Setup::new(&[], |c| {
        c.autostop.grace_minutes = 0;
        c.autostop.idle_minutes = 25;
    });
    let alice = s.logged_in(ADMIN);
    let page = s.rt.block_on(alice.get("/console/autostop"));
    assert_eq!(page.status, 200, "{}", page.body);
    let start = page
        .body
        .find("id=\"autostop-preview\"")
        .unwrap_or_else(|| panic!("no preview section: {}", page.body));
    let section = &page.body[start..];
    let section = &section[..section.find("</table>").unwrap_or(section.len())];
    assert!(!section.contains("could not be made"), "{section}");
    let row = |name: &str| -> String {
        let at = section
            .find(&format!(">{name}</a>"))
            .unwrap_or_else(|| panic!("no row for {name}: {section}"));
        let rest = &section[at..];
        rest[..rest.find("</tr>").unwrap_or(rest.len())].to_string()
    };
    // UP without autostop: the pass would set it to the policy's 25 minutes.
    for name in ["web-a", "web-b"] {
        let r = row(name);
        assert!(r.contains("act: autostop 25m (stop)"), "{name}: {r}");
    }
    // STOPPED: nothing to do.
    let r = row("web-c");
    assert!(r.contains("skip") && !r.contains("act:"), "web-c: {r}");
    // The policy in words, not the TOML section: the limit, and the clouds that
    // cannot stop folded away.
    assert!(
        page.body
            .contains("autostop of at most <strong>25 min</strong>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("cannot_stop_clouds"), "{}", page.body);
    assert!(
        page.body
            .contains("<summary>which</summary>Kubernetes, SSH, Lambda"),
        "{}",
        page.body
    );
    // A preview sends nothing.
    assert!(s.sim.requests_for(Op::Autostop).is_empty());
    assert!(
        page.body.contains("The enforcer has not made a pass yet."),
        "{}",
        page.body
    );

    // Before any pass the enforcer is idle, not a problem; the cluster manager's row says
    // the interval it polls at and why.
    let services = s.rt.block_on(alice.get("/console/services"));
    assert!(
        services
            .body
            .contains(r#"<span class="badge badge-idle">idle</span></td><td>no pass recorded yet"#),
        "{}",
        services.body
    );
    assert!(services.body.contains("polled every "), "{}", services.body);

    // After a pass, the page says what it did.
    let mut cfg = std::fs::read_to_string(&s.host.config).unwrap();
    cfg.push_str("[autostop]\ngrace_minutes = 0\nidle_minutes = 25\n");
    std::fs::write(&s.host.config, cfg).unwrap();
    s.host.run_ok(&["autostop"]);
    let page = s.rt.block_on(alice.get("/console/autostop"));
    assert!(
        page.body.contains("3 cluster(s), acted on 2, held back 0.")
            && page.body.contains("It has never held a cluster back."),
        "{}",
        page.body
    );
    let services = s.rt.block_on(alice.get("/console/services"));
    assert!(
        services
            .body
            .contains(r#"<span class="badge badge-ok">ok</span></td><td>last pass "#)
            && services
                .body
                .contains("3 cluster(s): 2 acted, 0 held, 0 failed"),
        "{}",
        services.body
    );
}

/// The Clusters page at fleet scale: one page of `per_page` rows with the total, first /
/// previous / next / last links that keep the filters and the order, the page size as a
/// plain form; the audit log paged the same way.
#[test]
fn the_clusters_page_and_the_audit_log_are_paged() {
    let extra: Vec<SimCluster> = (0..27)
        .map(|i| SimCluster::new(&format!("page-{i:02}")).user("bob", "b2"))
        .collect();
    let s = Setup::new(&extra, |_| {});
    let alice = s.logged_in(ADMIN);
    // 30 clusters, 3 of them STOPPED/other: UP clusters by name, 10 a page.
    let page = |q: &str| {
        let p = s.rt.block_on(alice.get(&format!("/console/clusters?{q}")));
        assert_eq!(p.status, 200, "{q}: {}", p.body);
        p.body
    };
    let rows = |body: &str| {
        body.matches("<tr><td class=\"name\"><a href=\"/console/clusters/")
            .count()
    };
    let first = page("user=bob&per_page=10");
    assert_eq!(rows(&first), 10, "{first}");
    assert!(first.contains("1–10 of 28"), "{first}");
    assert!(first.contains("page 1 of 3"), "{first}");
    // Links keep the filter and the size; the first page has no previous.
    assert!(
        first.contains(
            "href=\"/console/clusters?user=bob&amp;per_page=10&amp;page=2\" rel=\"next\""
        ),
        "{first}"
    );
    assert!(
        first.contains(
            "href=\"/console/clusters?user=bob&amp;per_page=10&amp;page=3\" rel=\"last\""
        ),
        "{first}"
    );
    assert!(!first.contains("rel=\"prev\""), "{first}");
    let last = page("user=bob&per_page=10&page=3");
    assert_eq!(rows(&last), 8, "{last}");
    assert!(
        last.contains("21–28 of 28") && last.contains("rel=\"prev\""),
        "{last}"
    );
    assert!(
        last.contains(">page-26<") && !last.contains(">page-00<"),
        "{last}"
    );
    // Sorted the other way round, the order is kept in the pager's links.
    let desc = page("user=bob&sort=name&desc=1&per_page=10");
    assert!(
        desc.find(">web-b<").unwrap() < desc.find(">page-26<").unwrap(),
        "{desc}"
    );
    assert!(
        desc.contains("sort=name&amp;desc=1&amp;per_page=10&amp;page=2"),
        "{desc}"
    );
    // Past the end: the last page. A bad size is refused with what was expected.
    assert!(page("user=bob&per_page=10&page=99").contains("21–28 of 28"));
    let bad = s.rt.block_on(alice.get("/console/clusters?per_page=lots"));
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("per_page") && bad.body.contains("1 to 10000"),
        "{}",
        bad.body
    );
    // The size form works without JavaScript: a GET with the filters kept.
    assert!(first.contains("<select name=\"per_page\">"), "{first}");
    assert!(
        first.contains("<input type=\"hidden\" name=\"user\" value=\"bob\">"),
        "{first}"
    );
    // The JSON API pages too, with the total.
    let a =
        s.rt.block_on(alice.get("/api/v1/clusters?per_page=5&page=2"));
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["total"], 30, "{v:#}");
    assert_eq!(v["clusters"].as_array().unwrap().len(), 5);

    // The audit log: 25 logins recorded, 10 a page, newest first.
    for _ in 0..24 {
        let _ = s.logged_in(VIEWER);
    }
    let audit = s.rt.block_on(alice.get("/console/audit?per_page=10"));
    assert_eq!(audit.status, 200);
    assert!(audit.body.contains("1–10 of "), "{}", audit.body);
    assert_eq!(
        audit.body.matches("<td class=\"outcome-ok\">").count(),
        10,
        "{}",
        audit.body
    );
    let p3 =
        s.rt.block_on(alice.get("/console/audit?per_page=10&page=3"));
    assert!(p3.body.contains("21–"), "{}", p3.body);
}

/// Prices from SkyPilot's catalog: SkyPilot's cost report fails (as without a cloud
/// SDK), so the clusters' $/h is the catalog's list price (m6i.large in us-west-2,
/// $0.096), shown with its source in the console and the API; the cost so far of an UP
/// one is estimated since launch. The Overview sums them (no "$-0.00"), draws the
/// fleet's history and a cluster's page its status timeline; the history is in the API
/// too.
#[test]
fn prices_charts_and_timelines() {
    let s = Setup::with_sim(
        &[],
        |sim| sim.set_fault_on("/cost_report", crate::support::sim::Fault::Http500Html),
        |_| {},
    );
    let alice = s.logged_in(ADMIN);
    let a = s.rt.block_on(alice.get("/api/v1/clusters/web-a"));
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["cluster"]["hourly_cost"], 0.096, "{v:#}");
    assert_eq!(v["cluster"]["price_source"], "catalog", "{v:#}");
    // Cost so far: the catalog price over the hours since launch, to the cent.
    let hours = v["age_secs"].as_f64().unwrap() / 3600.0;
    let cents = (0.096 * hours * 100.0).round() / 100.0;
    assert_eq!(v["cost_so_far"].as_f64(), Some(cents), "{v:#}");
    let spans = v["timeline"].as_array().unwrap();
    assert_eq!(spans.last().unwrap()["status"], "UP", "{v:#}");
    let clusters = s.rt.block_on(alice.get("/console/clusters"));
    assert!(
        clusters.body.contains(
            "$0.10<span class=\"src\" title=\"from SkyPilot&#39;s catalog\">catalog</span>"
        ) || clusters
            .body
            .contains("$0.10<span class=\"src\" title=\"from SkyPilot's catalog\">catalog</span>"),
        "{}",
        clusters.body
    );
    let overview = s.rt.block_on(alice.get("/console/"));
    // web-a and web-b UP at $0.096 each.
    assert!(overview.body.contains("$0.19/h"), "{}", overview.body);
    assert!(!overview.body.contains("$-"), "{}", overview.body);
    assert!(
        overview.body.contains("id=\"fleet-chart\"") && overview.body.contains("id=\"burn-chart\""),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("<svg"), "{}", overview.body);
    let page = s.rt.block_on(alice.get("/console/clusters/web-c"));
    assert!(
        page.body.contains("id=\"timeline\"") && page.body.contains("bar s-stopped"),
        "{}",
        page.body
    );
    let h = s.rt.block_on(alice.get("/api/v1/fleet/history?window=1h"));
    let v: Value = serde_json::from_str(&h.body).unwrap();
    let last = v["samples"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["up"].as_i64(), last["stopped"].as_i64()),
        (Some(2), Some(1)),
        "{v:#}"
    );
    assert!(
        (last["burn"].as_f64().unwrap() - 0.192).abs() < 1e-9,
        "{v:#}"
    );
    let bad =
        s.rt.block_on(alice.get("/api/v1/fleet/history?window=year"));
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("1h, 24h, 7d"), "{}", bad.body);
}

/// The console header's name and role badge, as the web UI renders them.
fn who(name: &str, role: &str) -> String {
    format!(
        r#"<span class="name">{name}</span><span class="badge role" title="your role">{role}</span>"#
    )
}

/// SkyPilot's CLI (it sends `X-SkyPilot-API-Version`) with a wrong password in its
/// endpoint: its health probe goes on as an anonymous one answered "healthy", and its
/// request is refused with a 403 whose `detail` its CLI shows (with the real CLI:
/// `gateway::real::the_sky_cli_works_through_the_gateway…`), never with the password; a
/// script or a browser still gets the 401.
#[test]
fn a_wrong_password_from_the_cli_is_told_without_the_password() {
    let s = Setup::new(&[], |_| {});
    let send = |method: reqwest::Method, path: &str, cli: bool| {
        let mut r = http()
            .request(method, format!("{}{path}", s.web().base))
            .basic_auth("alice", Some("not-her-pw-7"));
        if cli {
            r = r.header("X-SkyPilot-API-Version", "62");
        }
        s.rt.block_on(async {
            let a = r.send().await.unwrap();
            let status = a.status().as_u16();
            (status, a.text().await.unwrap())
        })
    };
    let (status, body) = send(reqwest::Method::GET, "/api/health", true);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "healthy", "{v}");
    assert!(v["user"].is_null(), "{v}");
    let (status, body) = send(reqwest::Method::POST, "/status", true);
    assert_eq!(status, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with(r#"wrong user name or password for "alice""#),
        "{v}"
    );
    assert!(!body.contains("not-her-pw-7"), "{body}");
    // Without SkyPilot's version header (a script, a browser), and on the console's
    // own routes: the 401 as before.
    assert_eq!(send(reqwest::Method::POST, "/status", false).0, 401);
    assert_eq!(send(reqwest::Method::GET, "/api/health", false).0, 401);
    assert_eq!(send(reqwest::Method::GET, "/api/v1/clusters", true).0, 401);
}

/// A forced refresh that fails (the clouds cannot be asked, as in the demo without a
/// cloud SDK) is a warning on the Services page, not a red error: the read without
/// refresh that follows keeps the state fresh.
#[test]
fn a_failed_forced_refresh_is_a_warning_not_a_problem() {
    let s = Setup::with_sim(
        &[],
        |sim| sim.set_fault_on_times("/status", crate::support::sim::Fault::Http500Html, 1),
        |_| {},
    );
    let alice = s.logged_in(ADMIN);
    let page = s.rt.block_on(alice.get("/console/services"));
    assert!(
        page.body
            .contains(r#"<td>FORCE</td><td><span class="badge badge-warn">refresh failed</span>"#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"<td>Cluster manager</td><td><span class="badge badge-ok">ok</span>"#),
        "{}",
        page.body
    );
}
