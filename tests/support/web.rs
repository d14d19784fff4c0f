//! The web UI under test: served in-process on a port-0 listener with a test clock, a
//! users file made by the binary's own `hash-password`, and a client that logs in the
//! way a browser does (login form, cookies, the CSRF token of the pages).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use skypilot_host::config::Config;
use skypilot_host::web_ui;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::clock::TestClock;
use super::host::bin;

/// A users file with these `(name, password, role)` lines, made with `hash-password`.
pub fn users_file(dir: &Path, users: &[(&str, &str, &str)]) -> PathBuf {
    let path = dir.join("users");
    let mut text = String::from("# test users\n");
    for (name, password, role) in users {
        let mut child = bin()
            .args(["hash-password", name, "--role", role])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "hash-password {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A tokens file with one token for `name`; returns (file, token).
pub fn tokens_file(dir: &Path, name: &str, role: &str) -> (PathBuf, String) {
    let out = bin()
        .args(["make-token", name, "--role", role])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let path = dir.join("tokens");
    std::fs::write(&path, out.stdout).unwrap();
    (path, token)
}

/// A running web UI.
pub struct WebUi {
    pub base: String,
    pub clock: Arc<TestClock>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl WebUi {
    /// Serves `config` on 127.0.0.1:0 (plain HTTP unless the config has TLS files).
    pub async fn start(config: Config, clock: Arc<TestClock>) -> WebUi {
        let tls = config.web_ui.tls_cert_file.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("{}://{addr}", if tls { "https" } else { "http" });
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(web_ui::serve(listener, config, clock.clone(), async {
            let _ = rx.await;
        }));
        WebUi {
            base,
            clock,
            stop: Some(tx),
            task,
        }
    }

    /// Stops the server; panics if it ended with an error.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A client that never follows redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    async fn of(resp: reqwest::Response) -> Answer {
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }
}

/// The value `name=` a response sets as a cookie.
pub fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// The CSRF token in a page's forms.
pub fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// A person in a browser: the session cookie and the CSRF token once logged in.
pub struct Browser {
    pub base: String,
    pub http: reqwest::Client,
    pub session: Option<String>,
    pub csrf: Option<String>,
}

impl Browser {
    pub fn new(base: &str, http: reqwest::Client) -> Browser {
        Browser {
            base: base.to_string(),
            http,
            session: None,
            csrf: None,
        }
    }

    /// Fills and posts the login form; the answer to the POST.
    pub async fn try_login(&mut self, user: &str, password: &str) -> Answer {
        let form = Answer::of(
            self.http
                .get(format!("{}/console/login", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(form.status, 200, "{}", form.body);
        let login_cookie = cookie_value(&set_cookie(&form.headers, "skyhost_login_csrf").unwrap());
        let token = csrf_in(&form.body).unwrap();
        let resp = self
            .http
            .post(format!("{}/console/login", self.base))
            .header(COOKIE, format!("skyhost_login_csrf={login_cookie}"))
            .form(&[
                ("username", user),
                ("password", password),
                ("csrf_token", token.as_str()),
                ("next", "/console/clusters"),
            ])
            .send()
            .await
            .unwrap();
        let answer = Answer::of(resp).await;
        if let Some(c) = set_cookie(&answer.headers, "skyhost_session") {
            self.session = Some(cookie_value(&c));
        }
        answer
    }

    /// Logs in; panics unless the console accepts.
    pub async fn login(&mut self, user: &str, password: &str) {
        let a = self.try_login(user, password).await;
        assert_eq!(a.status, 303, "login of {user}: {}", a.body);
        assert_eq!(a.header(LOCATION.as_str()), "/console/clusters");
        let page = self.get("/console/").await;
        assert_eq!(page.status, 200, "{}", page.body);
        self.csrf = csrf_in(&page.body);
        assert!(self.csrf.is_some(), "no CSRF token in {}", page.body);
    }

    fn with_cookie(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.session {
            Some(s) => rb.header(COOKIE, format!("skyhost_session={s}")),
            None => rb,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        let rb = self.http.get(format!("{}{path}", self.base));
        Answer::of(self.with_cookie(rb).send().await.unwrap()).await
    }

    /// Posts a form, adding the session's CSRF token when `with_csrf`.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)], with_csrf: bool) -> Answer {
        let mut fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if with_csrf {
            fields.push(("csrf_token".into(), self.csrf.clone().unwrap()));
        }
        let rb = self.http.post(format!("{}{path}", self.base)).form(&fields);
        Answer::of(self.with_cookie(rb).send().await.unwrap()).await
    }
}
