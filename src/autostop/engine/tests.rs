use super::*;
use crate::cluster::Cluster;
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn row(c: Cluster) -> ClusterRow {
    ClusterRow {
        cluster: c,
        hourly_cost: None,
        total_cost: None,
        first_seen: t(NOW - 7200),
        last_seen: t(NOW - 5),
        last_changed: t(NOW - 7200),
        gone_at: None,
        price_source: None,
    }
}

/// An UP AWS cluster launched two hours ago, autostop off.
fn up(name: &str) -> Cluster {
    Cluster {
        cloud: Some("AWS".into()),
        user_name: Some("alice".into()),
        user_hash: Some("a1b2".into()),
        launched_at: Some(t(NOW - 7200)),
        ..Cluster::bare(name, ClusterStatus::Up)
    }
}

fn fresh() -> DataAge {
    DataAge {
        last_ok_poll: Some(t(NOW - 5)),
        last_poll_error: None,
        interval_secs: 30.0,
    }
}

fn policy(f: impl FnOnce(&mut AutostopConfig)) -> Policy {
    let mut c = AutostopConfig::default();
    f(&mut c);
    Policy::new(&c)
}

fn one(p: &Policy, c: Cluster) -> Decision {
    decide(p, &[row(c)], &fresh(), &HashMap::new(), t(NOW))
        .pop()
        .unwrap()
}

#[test]
fn cancelled_autostop_is_reasserted_with_a_reason() {
    let d = one(&policy(|_| {}), up("a"));
    assert_eq!(
        d.verdict,
        Verdict::Act(Action::Autostop {
            minutes: 60,
            down: false
        })
    );
    assert!(d.reason.contains("autostop is off"), "{}", d.reason);
    assert!(d.reason.contains("cancelled"), "{}", d.reason);
    assert!(d.reason.contains("60m"), "{}", d.reason);
}

#[test]
fn larger_autostop_is_lowered_and_keeps_the_users_down() {
    let d = one(
        &policy(|_| {}),
        Cluster {
            autostop_minutes: 240,
            autostop_to_down: true,
            ..up("a")
        },
    );
    assert_eq!(
        d.verdict,
        Verdict::Act(Action::Autostop {
            minutes: 60,
            down: true
        })
    );
    assert!(
        d.reason.contains("240m, above the policy's 60m"),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("autodown"), "{}", d.reason);
}

#[test]
fn compliant_cluster_needs_nothing() {
    let d = one(
        &policy(|_| {}),
        Cluster {
            autostop_minutes: 30,
            ..up("a")
        },
    );
    assert_eq!(d.verdict, Verdict::Skip);
    assert_eq!(
        d.reason,
        "compliant: autostop 30m (stop) is within the policy's 60m"
    );
}

#[test]
fn kubernetes_gets_autodown_or_is_left_alone() {
    let k8s = Cluster {
        cloud: Some("Kubernetes".into()),
        ..up("k")
    };
    let d = one(&policy(|_| {}), k8s.clone());
    assert_eq!(
        d.verdict,
        Verdict::Act(Action::Autostop {
            minutes: 60,
            down: true
        })
    );
    // A stop-autostop within the limit is turned into autodown, keeping its minutes.
    let d = one(
        &policy(|_| {}),
        Cluster {
            autostop_minutes: 20,
            ..k8s.clone()
        },
    );
    assert_eq!(
        d.verdict,
        Verdict::Act(Action::Autostop {
            minutes: 20,
            down: true
        })
    );
    assert!(d.reason.contains("Kubernetes cannot stop"), "{}", d.reason);
    let d = one(
        &policy(|_| {}),
        Cluster {
            autostop_minutes: 20,
            autostop_to_down: true,
            ..k8s.clone()
        },
    );
    assert_eq!(d.verdict, Verdict::Skip);
    let d = one(&policy(|c| c.down_when_cannot_stop = false), k8s);
    assert_eq!(d.verdict, Verdict::Skip);
    assert!(
        d.reason.contains("down_when_cannot_stop is false"),
        "{}",
        d.reason
    );
}

#[test]
fn enforce_down_wants_autodown() {
    let p = policy(|c| c.enforce = Enforce::Down);
    let d = one(
        &p,
        Cluster {
            autostop_minutes: 10,
            ..up("a")
        },
    );
    assert_eq!(
        d.verdict,
        Verdict::Act(Action::Autostop {
            minutes: 10,
            down: true
        })
    );
    assert!(d.reason.contains("enforce is \"down\""), "{}", d.reason);
}

#[test]
fn lifetime_backstop_stops_or_downs() {
    let p = policy(|c| {
        c.enforce = Enforce::Stop;
        c.max_lifetime_hours = Some(1);
    });
    let d = one(
        &p,
        Cluster {
            autostop_minutes: 30,
            ..up("a")
        },
    );
    assert_eq!(d.verdict, Verdict::Act(Action::Stop));
    assert!(d.reason.contains("UP for 2h since launch"), "{}", d.reason);
    assert!(d.reason.contains("max_lifetime_hours (1h)"), "{}", d.reason);
    let d = one(
        &p,
        Cluster {
            cloud: Some("kubernetes".into()),
            ..up("k")
        },
    );
    assert_eq!(d.verdict, Verdict::Act(Action::Down));
    assert!(d.reason.contains("cannot stop"), "{}", d.reason);
}

#[test]
fn reasons_for_holding_and_skipping() {
    let p = policy(|c| {
        c.exempt_names = vec!["keep-*".into()];
        c.exempt_workspaces = vec!["research".into()];
        c.exempt_users = vec!["bob".into()];
    });
    let cases: Vec<(Cluster, Verdict, &str)> = vec![
        (up("keep-me"), Verdict::Skip, "exempt_names \"keep-*\""),
        (
            Cluster {
                workspace: "research".into(),
                ..up("w")
            },
            Verdict::Skip,
            "workspace \"research\"",
        ),
        (
            Cluster {
                user_name: Some("bob".into()),
                ..up("u")
            },
            Verdict::Skip,
            "user \"bob\"",
        ),
        (
            Cluster {
                status: ClusterStatus::Init,
                ..up("i")
            },
            Verdict::Hold,
            "in transition (INIT",
        ),
        (
            Cluster {
                status: ClusterStatus::Stopped,
                ..up("s")
            },
            Verdict::Skip,
            "not running",
        ),
        (
            Cluster {
                status: ClusterStatus::Gone,
                ..up("g")
            },
            Verdict::Skip,
            "status unknown",
        ),
        (
            Cluster {
                launched_at: Some(t(NOW - 120)),
                ..up("new")
            },
            Verdict::Hold,
            "launched 2m ago, within the grace period of 10m",
        ),
        (
            up("sky-jobs-controller-1a2b"),
            Verdict::Skip,
            "SkyPilot's own controller",
        ),
        (
            Cluster {
                is_managed: true,
                ..up("m")
            },
            Verdict::Skip,
            "jobs controller",
        ),
    ];
    for (c, verdict, part) in cases {
        let name = c.name.clone();
        let d = one(&p, c);
        assert_eq!(d.verdict, verdict, "{name}: {}", d.reason);
        assert!(
            d.reason.contains(part),
            "{name}: {:?} lacks {part:?}",
            d.reason
        );
    }
}

#[test]
fn a_stretched_interval_keeps_the_enforcer_acting() {
    // At 10,000 clusters the load budget stretched a configured 30 s to 164 s: data
    // 200 s old is fresh (3 × 164 s), for the enforcer as for `status` and the console.
    let p = policy(|_| {});
    let rows = [row(up("a"))];
    let none = HashMap::new();
    let stretched = DataAge {
        last_ok_poll: Some(t(NOW - 200)),
        interval_secs: 164.0,
        ..fresh()
    };
    assert_eq!(stretched.stale_reason(t(NOW)), None);
    assert!(matches!(
        decide(&p, &rows, &stretched, &none, t(NOW))[0].verdict,
        Verdict::Act(_)
    ));
    let older = DataAge {
        last_ok_poll: Some(t(NOW - 493)),
        ..stretched
    };
    let why = older.stale_reason(t(NOW)).unwrap();
    assert!(why.contains("(3 × the 2m poll interval)"), "{why}");
}

#[test]
fn stale_data_holds_everything_back_with_the_reason() {
    let p = policy(|_| {});
    let rows = [row(up("a"))];
    let none = HashMap::new();
    let old = DataAge {
        last_ok_poll: Some(t(NOW - 91)),
        ..fresh()
    };
    let d = &decide(&p, &rows, &old, &none, t(NOW))[0];
    assert_eq!(d.verdict, Verdict::Hold);
    assert!(
        d.reason
            .contains("1m old, older than 1m (3 × the 30s poll interval)"),
        "{}",
        d.reason
    );
    let ok = DataAge {
        last_ok_poll: Some(t(NOW - 90)),
        ..fresh()
    };
    assert!(matches!(
        decide(&p, &rows, &ok, &none, t(NOW))[0].verdict,
        Verdict::Act(_)
    ));
    let failed = DataAge {
        last_poll_error: Some("connection refused".into()),
        ..fresh()
    };
    let d = &decide(&p, &rows, &failed, &none, t(NOW))[0];
    assert_eq!(d.verdict, Verdict::Hold);
    assert!(
        d.reason.contains("last poll failed (connection refused)"),
        "{}",
        d.reason
    );
    let never = DataAge {
        last_ok_poll: None,
        ..fresh()
    };
    let d = &decide(&p, &rows, &never, &none, t(NOW))[0];
    assert!(d.reason.contains("no successful poll"), "{}", d.reason);
}

#[test]
fn failures_back_off_exponentially_up_to_the_maximum() {
    let p = policy(|c| {
        c.retry_base_secs = 60;
        c.retry_max_secs = 600;
    });
    assert_eq!(
        (1..=6).map(|n| p.backoff_secs(n)).collect::<Vec<_>>(),
        [60, 120, 240, 480, 600, 600]
    );
    assert_eq!(p.backoff_secs(u32::MAX), 600);
    let rows = [row(up("a"))];
    let mut f = HashMap::new();
    f.insert(
        "a".to_string(),
        Failures {
            count: 2,
            last_at: t(NOW - 100),
            last_ok_at: None,
        },
    );
    let d = &decide(&p, &rows, &fresh(), &f, t(NOW))[0];
    assert_eq!(d.verdict, Verdict::Hold);
    assert!(
        d.reason
            .contains("failed 1m ago (2 in a row): next try in 20s (back-off 2m)"),
        "{}",
        d.reason
    );
    let d = &decide(&p, &rows, &fresh(), &f, t(NOW + 20))[0];
    assert!(matches!(d.verdict, Verdict::Act(_)), "{}", d.reason);
}

#[test]
fn failures_are_counted_from_the_audit_until_a_success() {
    use crate::store::{AuditAction, AuditEntry, AuditOutcome};
    let e = |at: i64, actor: &str, cluster: &str, outcome| AuditEntry {
        at: t(at),
        actor: actor.into(),
        action: AuditAction::Autostop,
        cluster: Some(cluster.into()),
        outcome,
        detail: None,
    };
    let entries = [
        e(1, "autostop", "a", AuditOutcome::Error),
        e(2, "autostop", "a", AuditOutcome::Ok),
        e(3, "autostop", "a", AuditOutcome::Error),
        e(4, "web-ui:bob", "a", AuditOutcome::Error),
        e(5, "autostop", "a", AuditOutcome::Error),
        e(6, "autostop", "b", AuditOutcome::Error),
        e(7, "autostop", "b", AuditOutcome::Ok),
        e(8, "autostop", "c", AuditOutcome::DryRun),
    ];
    let f = failures_from_audit(&entries, "autostop");
    assert_eq!(
        f.get("a"),
        Some(&Failures {
            count: 2,
            last_at: t(5),
            last_ok_at: Some(t(2)),
        })
    );
    assert_eq!(
        f.get("b"),
        Some(&Failures {
            count: 0,
            last_at: t(7),
            last_ok_at: Some(t(7)),
        })
    );
    assert_eq!(f.len(), 2, "{f:?}");
}

#[test]
fn a_success_not_yet_polled_is_not_repeated() {
    let p = policy(|_| {});
    let rows = [row(up("a"))];
    let mut f = HashMap::new();
    f.insert(
        "a".to_string(),
        Failures {
            count: 0,
            last_at: t(NOW - 2),
            last_ok_at: Some(t(NOW - 2)),
        },
    );
    let d = &decide(&p, &rows, &fresh(), &f, t(NOW))[0];
    assert_eq!(d.verdict, Verdict::Hold);
    assert!(
        d.reason
            .contains("after the last poll: waiting for the cluster manager"),
        "{}",
        d.reason
    );
    // Polled since: the data shows autostop still off, so it is set again.
    let later = DataAge {
        last_ok_poll: Some(t(NOW - 1)),
        ..fresh()
    };
    assert!(matches!(
        decide(&p, &rows, &later, &f, t(NOW))[0].verdict,
        Verdict::Act(_)
    ));
}

#[test]
fn globs() {
    for (p, n, m) in [
        ("*", "", true),
        ("dev-*", "dev-1", true),
        ("dev-*", "prod-1", false),
        ("*-gpu-?", "train-gpu-8", true),
        ("*-gpu-?", "train-gpu-16", false),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ] {
        assert_eq!(glob_match(p, n), m, "{p} vs {n}");
    }
}

#[test]
fn decisions_serialise_for_the_web_ui() {
    let d = one(&policy(|_| {}), up("a"));
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["cluster"], "a");
    assert_eq!(v["verdict"], "act");
    assert_eq!(v["action"]["kind"], "autostop");
    assert_eq!(v["action"]["minutes"], 60);
    assert_eq!(v["action"]["down"], false);
    assert!(v["reason"].as_str().unwrap().contains("autostop is off"));
    let s = serde_json::to_value(one(
        &policy(|_| {}),
        Cluster::bare("s", ClusterStatus::Stopped),
    ))
    .unwrap();
    assert_eq!(s["verdict"], "skip");
    assert!(s.get("action").is_none(), "{s}");
}

// ------------------------------------------------------------------- properties

fn status() -> impl Strategy<Value = ClusterStatus> {
    prop_oneof![
        Just(ClusterStatus::Up),
        Just(ClusterStatus::Init),
        Just(ClusterStatus::Stopped),
        Just(ClusterStatus::Gone),
    ]
}

prop_compose! {
    fn cluster_row()(
        i in 0u32..1000,
        prefix in prop_oneof![Just("dev"), Just("keep"), Just("sky-jobs-controller"), Just("train")],
        status in status(),
        cloud in prop_oneof![Just(None), Just(Some("AWS")), Just(Some("Kubernetes")), Just(Some("GCP")), Just(Some("lambda"))],
        autostop in prop_oneof![Just(-1i64), 0i64..200, Just(100_000)],
        to_down in any::<bool>(),
        launched_ago in prop_oneof![Just(None), (0i64..400_000).prop_map(Some)],
        workspace in prop_oneof![Just("default"), Just("research")],
        user in prop_oneof![Just("alice"), Just("bob")],
        managed in any::<bool>(),
    ) -> ClusterRow {
        row(Cluster {
            cloud: cloud.map(String::from),
            autostop_minutes: autostop,
            autostop_to_down: to_down,
            launched_at: launched_ago.map(|a| t(NOW - a)),
            workspace: workspace.into(),
            user_name: Some(user.into()),
            is_managed: managed,
            ..Cluster::bare(&format!("{prefix}-{i}"), status)
        })
    }
}

prop_compose! {
    fn config()(
        idle in 1u32..300,
        enforce in prop_oneof![Just(Enforce::Autostop), Just(Enforce::Stop), Just(Enforce::Down)],
        down_when_cannot_stop in any::<bool>(),
        grace in 0u32..120,
        lifetime in prop_oneof![Just(None), (1u32..100).prop_map(Some)],
        exempt in any::<bool>(),
    ) -> AutostopConfig {
        AutostopConfig {
            idle_minutes: idle,
            enforce,
            down_when_cannot_stop,
            grace_minutes: grace,
            max_lifetime_hours: if enforce == Enforce::Autostop { None } else { lifetime },
            exempt_names: if exempt { vec!["keep-*".into()] } else { vec![] },
            exempt_workspaces: if exempt { vec!["research".into()] } else { vec![] },
            exempt_users: if exempt { vec!["bob".into()] } else { vec![] },
            ..AutostopConfig::default()
        }
    }
}

prop_compose! {
    fn data_age()(
        ok_ago in prop_oneof![Just(None), (0i64..600).prop_map(Some)],
        failed in prop_oneof![4 => Just(None), 1 => Just(Some("refused".to_string()))],
        interval in 1u64..120,
    ) -> DataAge {
        DataAge {
            last_ok_poll: ok_ago.map(|a| t(NOW - a)),
            last_poll_error: failed,
            interval_secs: interval as f64,
        }
    }
}

fn failures_for(rows: &[ClusterRow], seed: u32) -> HashMap<String, Failures> {
    rows.iter()
        .enumerate()
        .filter(|(i, _)| (*i as u32 + seed) % 3 == 0)
        .map(|(i, r)| {
            (
                r.cluster.name.clone(),
                Failures {
                    count: 1 + (i as u32 % 5),
                    last_at: t(NOW - i64::from(seed % 4000)),
                    last_ok_at: None,
                },
            )
        })
        .collect()
}

fn is_exempt(c: &AutostopConfig, r: &ClusterRow) -> bool {
    let x = &r.cluster;
    c.exempt_names.iter().any(|g| glob_match(g, &x.name))
        || c.exempt_workspaces.contains(&x.workspace)
        || x.user_name
            .as_ref()
            .is_some_and(|u| c.exempt_users.contains(u))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never acts on an exempt, stale, unknown-status, in-transition, stopped, in-grace
    /// or backing-off cluster; every action is on an UP cluster past its grace period.
    #[test]
    fn acts_only_where_allowed(
        cfg in config(),
        rows in proptest::collection::vec(cluster_row(), 0..30),
        age in data_age(),
        seed in 0u32..10_000,
    ) {
        let now = t(NOW);
        let failures = failures_for(&rows, seed);
        let p = Policy::new(&cfg);
        let ds = decide(&p, &rows, &age, &failures, now);
        prop_assert_eq!(ds.len(), rows.len());
        let stale = age.stale_reason(now).is_some();
        for (d, r) in ds.iter().zip(&rows) {
            prop_assert_eq!(&d.cluster, &r.cluster.name);
            prop_assert!(!d.reason.is_empty());
            let Some(action) = d.action() else { continue };
            prop_assert!(!stale, "acted on stale data: {:?}", d);
            prop_assert!(!is_exempt(&cfg, r), "acted on an exempt cluster: {:?}", d);
            prop_assert_eq!(r.cluster.status, ClusterStatus::Up, "acted on a cluster not UP: {:?}", d);
            prop_assert!(!r.cluster.is_managed && !r.cluster.name.starts_with("sky-jobs-controller-"));
            let launched = r.cluster.launched_at.unwrap_or(r.first_seen);
            prop_assert!(now.secs_since(launched) >= f64::from(cfg.grace_minutes) * 60.0, "acted in grace: {:?}", d);
            if let Some(f) = failures.get(&r.cluster.name) {
                prop_assert!(now.secs_since(f.last_at) >= p.backoff_secs(f.count) as f64, "acted during back-off: {:?}", d);
            }
            if let Action::Autostop { minutes, down } = action {
                prop_assert!(minutes <= cfg.idle_minutes);
                if cfg.enforce == Enforce::Down { prop_assert!(down); }
                if p.cannot_stop(r.cluster.cloud.as_deref()) { prop_assert!(down && cfg.down_when_cannot_stop); }
            }
            if action == Action::Stop {
                prop_assert!(cfg.enforce == Enforce::Stop && !p.cannot_stop(r.cluster.cloud.as_deref()));
            }
            if matches!(action, Action::Stop | Action::Down) {
                prop_assert!(cfg.max_lifetime_hours.is_some());
            }
        }
    }

    /// The same input gives the same decisions; and once an autostop decision is applied
    /// and the compliant state read back, nothing more is done to that cluster.
    #[test]
    fn stable_and_idempotent(
        cfg in config(),
        rows in proptest::collection::vec(cluster_row(), 0..30),
        age in data_age(),
    ) {
        let now = t(NOW);
        let none = HashMap::new();
        let p = Policy::new(&cfg);
        let first = decide(&p, &rows, &age, &none, now);
        prop_assert_eq!(&first, &decide(&p, &rows, &age, &none, now));
        let applied: Vec<ClusterRow> = rows.iter().zip(&first).map(|(r, d)| {
            let mut r = r.clone();
            if let Some(Action::Autostop { minutes, down }) = d.action() {
                r.cluster.autostop_minutes = i64::from(minutes);
                r.cluster.autostop_to_down = down;
            }
            r
        }).collect();
        let second = decide(&p, &applied, &age, &none, now);
        for (a, b) in first.iter().zip(&second) {
            if matches!(a.action(), Some(Action::Autostop { .. })) {
                prop_assert_eq!(b.verdict, Verdict::Skip, "{:?} then {:?}", a, b);
                prop_assert!(b.reason.starts_with("compliant"), "{:?}", b);
            }
        }
    }
}
