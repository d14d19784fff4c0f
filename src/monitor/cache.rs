//! Scrapes served from the last rendering while the database is unchanged.
//!
//! Every scrape asks the database whether anything was committed since the last read
//! ([`Reader::version`]: SQLite's `data_version` on the same connection, plus the file's
//! identity). When nothing was, the text rendered then is sent again and only the
//! time-dependent series (ages, uptimes, the read duration) are rendered for this scrape.
//! When something was, everything is read again; the per-cluster series are rendered
//! again only when the clusters differ (a poll that changed no cluster reuses them).
//! Either way the body is exactly what a fresh read and rendering would give at this
//! moment.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::collect::{DbVersion, Reader};
use super::metrics::{Exposition, Format, Moment};
use crate::time::Clock;

/// What one scrape did, for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Nothing committed since the last scrape: the rendered text was reused.
    Unchanged,
    /// The database was read again and its clusters were the same: their series were
    /// reused.
    SameClusters,
    /// The database was read and rendered afresh.
    Rendered,
}

/// Serves scrapes of one host database, keeping the last rendering.
pub struct Scraper {
    reader: Reader,
    cached: Option<Cached>,
}

struct Cached {
    version: DbVersion,
    exposition: Exposition,
}

impl Scraper {
    pub fn new(database: &Path) -> Scraper {
        Scraper {
            reader: Reader::new(database),
            cached: None,
        }
    }

    /// The body of one scrape, in pieces to send in order. Never fails on the database
    /// (problems are series); fails only when the text cannot be encoded.
    pub(crate) fn scrape(
        &mut self,
        clock: &dyn Clock,
        format: Format,
    ) -> Result<Vec<Bytes>, fmt::Error> {
        self.scrape_served(clock, format).map(|(body, _)| body)
    }

    /// As [`Scraper::scrape`], also saying how the body was obtained.
    pub fn scrape_served(
        &mut self,
        clock: &dyn Clock,
        format: Format,
    ) -> Result<(Vec<Bytes>, Served), fmt::Error> {
        let started = Instant::now();
        let version = self.reader.version();
        if let (Some(v), Some(cached)) = (version, self.cached.as_mut()) {
            if cached.version == v {
                if cached.exposition.format() != format {
                    let snapshot = cached.exposition.snapshot().clone();
                    cached.exposition = Exposition::new(snapshot, format, None)?;
                }
                let moment = Moment {
                    now: clock.now(),
                    read_seconds: started.elapsed().as_secs_f64(),
                };
                return Ok((cached.exposition.body(moment)?, Served::Unchanged));
            }
        }
        let snapshot = Arc::new(self.reader.collect_since(clock, started));
        let previous = self.cached.take().map(|c| c.exposition);
        let exposition = Exposition::new(snapshot.clone(), format, previous)?;
        let served = if exposition.reused_clusters() {
            Served::SameClusters
        } else {
            Served::Rendered
        };
        let body = exposition.body(snapshot.moment())?;
        // The previous rendering and the read's transient memory are freed by now.
        if served == Served::Rendered {
            crate::memory::release_freed();
        }
        // Only a clean read is kept: after a database-wide error the connection is
        // reopened and everything read again.
        if let Some(version) = version.filter(|_| snapshot.database_up()) {
            self.cached = Some(Cached {
                version,
                exposition,
            });
        }
        Ok((body, served))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::monitor::metrics::render;
    use crate::store::scrape::TestWriter;
    use crate::time::Timestamp;

    const T0: f64 = 1_800_000_000.0;

    struct TestClock(Mutex<Timestamp>);

    impl TestClock {
        fn set(&self, t: f64) {
            *self.0.lock().expect("clock lock") = Timestamp::from(t);
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Timestamp {
            *self.0.lock().expect("clock lock")
        }
    }

    /// A database with two UP clusters, a STOPPED one, a successful poll, an API server
    /// check and an audit entry; and a writer to it.
    fn database(dir: &tempfile::TempDir) -> (std::path::PathBuf, TestWriter) {
        let path = dir.path().join("host.db");
        let writer = TestWriter::create(&path);
        for (name, status, launched) in [
            ("a-up", "UP", T0 - 3600.0),
            ("b-up", "UP", T0 - 60.0),
            ("c-stopped", "STOPPED", T0 - 7200.0),
        ] {
            writer.add_cluster(name, status, launched as i64);
        }
        writer.add_poll(T0 - 30.0);
        writer.set_api_server(T0 - 10.0, 12.5);
        writer.add_audit(T0 - 100.0, "autostop", "ok");
        (path, writer)
    }

    /// The body as text, with the read duration (which differs between any two reads)
    /// masked.
    fn text(pieces: &[Bytes]) -> String {
        let all: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let all = String::from_utf8(all).expect("UTF-8 exposition");
        all.lines()
            .map(|l| {
                if l.starts_with("skypilot_host_database_read_duration_seconds ") {
                    "skypilot_host_database_read_duration_seconds (masked)"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What a fresh reader renders at the clock's time.
    fn fresh(path: &Path, clock: &dyn Clock, format: Format) -> String {
        let body = render(Reader::new(path).collect(clock), format).expect("render");
        text(&[Bytes::from(body)])
    }

    fn value(body: &str, series: &str) -> Option<String> {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_string)
    }

    fn scrape(s: &mut Scraper, clock: &TestClock, format: Format) -> (String, Served) {
        let (body, served) = s.scrape_served(clock, format).expect("scrape");
        (text(&body), served)
    }

    #[test]
    fn unchanged_database_is_served_again_with_the_clock_moving() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, _writer) = database(&dir);
        let clock = TestClock(Mutex::new(Timestamp::from(T0)));
        let mut s = Scraper::new(&path);
        let (first, served) = scrape(&mut s, &clock, Format::Text);
        assert_eq!(served, Served::Rendered);
        assert_eq!(first, fresh(&path, &clock, Format::Text));
        assert_eq!(
            value(&first, r#"skypilot_cluster_uptime_seconds{cluster="a-up"}"#).as_deref(),
            Some("3600.0")
        );

        clock.set(T0 + 100.5);
        let (again, served) = scrape(&mut s, &clock, Format::Text);
        assert_eq!(served, Served::Unchanged);
        assert_eq!(again, fresh(&path, &clock, Format::Text));
        for (series, want) in [
            (
                r#"skypilot_cluster_uptime_seconds{cluster="a-up"}"#,
                "3700.5",
            ),
            (
                r#"skypilot_cluster_uptime_seconds{cluster="b-up"}"#,
                "160.5",
            ),
            ("skypilot_host_state_age_seconds", "130.5"),
            ("skypilot_api_server_last_check_age_seconds", "110.5"),
        ] {
            assert_eq!(value(&again, series).as_deref(), Some(want), "{series}");
        }

        // Another format of the same database, and back.
        for format in [Format::OpenMetrics, Format::Text, Format::OpenMetrics] {
            let (body, served) = scrape(&mut s, &clock, format);
            assert_eq!(served, Served::Unchanged, "{format:?}");
            assert_eq!(body, fresh(&path, &clock, format), "{format:?}");
        }
    }

    #[test]
    fn a_new_cluster_is_seen_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        let clock = TestClock(Mutex::new(Timestamp::from(T0)));
        let mut s = Scraper::new(&path);
        scrape(&mut s, &clock, Format::Text);
        writer.add_cluster("d-new", "UP", (T0 - 5.0) as i64);
        let (body, served) = scrape(&mut s, &clock, Format::Text);
        assert_eq!(served, Served::Rendered);
        assert_eq!(body, fresh(&path, &clock, Format::Text));
        assert_eq!(
            value(&body, r#"skypilot_cluster_uptime_seconds{cluster="d-new"}"#).as_deref(),
            Some("5.0")
        );
        assert_eq!(
            value(&body, r#"skypilot_clusters_by_status{status="UP"}"#).as_deref(),
            Some("3")
        );
        let (_, served) = scrape(&mut s, &clock, Format::Text);
        assert_eq!(served, Served::Unchanged);
    }

    #[test]
    fn a_status_change_is_seen_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        let clock = TestClock(Mutex::new(Timestamp::from(T0)));
        let mut s = Scraper::new(&path);
        for format in [Format::OpenMetrics, Format::Text] {
            scrape(&mut s, &clock, format);
        }
        writer.set_status("a-up", "STOPPED");
        let (body, served) = scrape(&mut s, &clock, Format::Text);
        assert_eq!(served, Served::Rendered);
        assert_eq!(body, fresh(&path, &clock, Format::Text));
        assert_eq!(
            value(&body, r#"skypilot_clusters_by_status{status="STOPPED"}"#).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&body, r#"skypilot_cluster_uptime_seconds{cluster="a-up"}"#),
            None,
            "a stopped cluster has no uptime"
        );
    }

    #[test]
    fn a_new_poll_is_seen_and_the_cluster_series_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        let clock = TestClock(Mutex::new(Timestamp::from(T0)));
        let mut s = Scraper::new(&path);
        let (before, _) = scrape(&mut s, &clock, Format::OpenMetrics);
        assert_eq!(
            value(&before, "skypilot_host_state_age_seconds").as_deref(),
            Some("30.0")
        );
        writer.add_poll(T0 - 2.0);
        writer.set_api_server(T0 - 1.0, 7.0);
        let (body, served) = scrape(&mut s, &clock, Format::OpenMetrics);
        assert_eq!(served, Served::SameClusters);
        assert_eq!(body, fresh(&path, &clock, Format::OpenMetrics));
        for (series, want) in [
            ("skypilot_host_state_age_seconds", "2.0"),
            (
                "skypilot_host_last_successful_poll_timestamp_seconds",
                "1799999998.0",
            ),
            ("skypilot_api_server_last_check_age_seconds", "1.0"),
            ("skypilot_api_server_health_latency_seconds", "0.007"),
        ] {
            assert_eq!(value(&body, series).as_deref(), Some(want), "{series}");
        }
        // A cluster change after that is rendered again.
        writer.set_price("b-up", 2.5);
        let (body, served) = scrape(&mut s, &clock, Format::OpenMetrics);
        assert_eq!(served, Served::Rendered);
        assert_eq!(body, fresh(&path, &clock, Format::OpenMetrics));
        assert_eq!(
            value(
                &body,
                r#"skypilot_cluster_price_dollars_per_hour{cluster="b-up",source="cost_report"}"#
            )
            .as_deref(),
            Some("2.5")
        );
    }

    #[test]
    fn a_replaced_or_removed_file_is_seen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        let clock = TestClock(Mutex::new(Timestamp::from(T0)));
        let mut s = Scraper::new(&path);
        scrape(&mut s, &clock, Format::Text);
        drop(writer);

        let other_dir = tempfile::tempdir().expect("temp dir");
        let (other, other_writer) = database(&other_dir);
        other_writer.add_cluster("only-in-other", "UP", (T0 - 1.0) as i64);
        // Closing the last connection folds the journal into the file.
        drop(other_writer);
        // The old database's journal files must not be taken for the new one's.
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        std::fs::rename(&other, &path).expect("replace the database");
        let (body, served) = scrape(&mut s, &clock, Format::Text);
        assert_eq!(served, Served::Rendered);
        assert!(body.contains("only-in-other"), "{body}");
        assert_eq!(body, fresh(&path, &clock, Format::Text));

        std::fs::remove_file(&path).expect("remove the database");
        let (body, served) = scrape(&mut s, &clock, Format::Text);
        assert_eq!(served, Served::Rendered);
        assert_eq!(
            value(&body, r#"skypilot_host_database_error{kind="missing"}"#).as_deref(),
            Some("1")
        );
        let (_, served) = scrape(&mut s, &clock, Format::Text);
        assert_eq!(served, Served::Rendered, "errors are never cached");
    }
}
