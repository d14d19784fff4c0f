//! The restore drill, against the real SkyPilot 0.14.1 API server (a server of the test's
//! own), with its state in SQLite and in the throwaway PostgreSQL of scripts/test.sh:
//!
//! a fleet made through SkyPilot's own API (clusters with autostop, a STOPPED one, a
//! managed job's record, two people with roles and SkyPilot's SSH key pair of each), the
//! cluster manager polling `/status` every second, then `skypilot-host backup` while it
//! does; the restore refused while the server runs and for a backup with one flipped
//! byte (nothing touched); the state destroyed (files deleted, the database dropped),
//! restored, SkyPilot started again: the same clusters with the same handles and owners,
//! the same jobs, byte-identical SSH keys, the same roles, and the cluster manager
//! recorded no transition (nothing disappeared).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::postgres::{Postgres, POSTGRES};
use crate::support::host::{bin, cluster, open_db, Host};
use crate::support::real::{unique, OwnServer};

/// SkyPilot's id of a name from its identity header: md5(name)[:8], as the gateway
/// computes it (src/web_ui/ownership.rs).
fn user_id(name: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(name.as_bytes()))[..8].to_string()
}

fn curl_json(args: &[&str]) -> Value {
    let out = Command::new("curl")
        .arg("-fsS")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each person's role in SkyPilot (`GET /users`, asked on loopback).
fn roles(server: &OwnServer, names: &[&str]) -> BTreeMap<String, String> {
    let users = curl_json(&[&format!("{}/users", server.url)]);
    users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| names.contains(&u["name"].as_str().unwrap_or_default()))
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                u["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What a restore must bring back: skyctl.py's dump, the users limited to `people` (the
/// server names its own local user anew at each start).
fn state(server: &OwnServer, people: &[&str]) -> Value {
    let mut v: Value = serde_json::from_str(&server.skyctl_output(&["dump"])).unwrap();
    let users: Vec<Value> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| people.contains(&u[1].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    v["users"] = Value::Array(users);
    v
}

/// The files of SkyPilot's SSH key pairs under the server's HOME, by path.
fn ssh_keys(server: &OwnServer) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut keys = BTreeMap::new();
    let clients = server.dir().join("home/.sky/clients");
    for who in std::fs::read_dir(&clients).unwrap() {
        let ssh = who.unwrap().path().join("ssh");
        for f in std::fs::read_dir(&ssh).into_iter().flatten() {
            let p = f.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("sky-key")
            {
                keys.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    keys
}

fn transitions(host: &Host) -> Vec<(String, Option<String>, String)> {
    let db = open_db(&host.db);
    let mut q = db
        .prepare("SELECT cluster, from_status, to_status FROM transitions ORDER BY id")
        .unwrap();
    let rows = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

/// `skypilot-host ARGS --config host.toml`: (success, stdout, stderr).
fn run(host: &Host, args: &[&str]) -> (bool, String, String) {
    let out = bin()
        .args(args)
        .arg("--config")
        .arg(&host.config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SHA-256 of every file below `dir` (what "touches nothing" is checked against).
fn digests(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                use sha2::Digest as _;
                let bytes = std::fs::read(&p).unwrap_or_default();
                out.insert(p, hex::encode(sha2::Sha256::digest(&bytes)));
            }
        }
    }
    out
}

/// A copy of backup `dir` whose largest SQLite part has one byte flipped.
fn damaged_copy(dir: &Path, to: &Path) -> String {
    std::fs::create_dir_all(to).unwrap();
    let mut largest = (0u64, String::new());
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::copy(&p, to.join(&name)).unwrap();
        let size = std::fs::metadata(&p).unwrap().len();
        if name.ends_with(".db") && size > largest.0 {
            largest = (size, name);
        }
    }
    let victim = to.join(&largest.1);
    let mut bytes = std::fs::read(&victim).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    largest.1
}

/// The drill on `server`; `destroy` deletes the state (and drops the database).
fn drill(mut server: OwnServer, backup_extra: &str, destroy: impl FnOnce(&OwnServer)) {
    let alice = unique("alice");
    let bob = unique("bob");
    let people = [alice.as_str(), bob.as_str()];
    let mut clusters = Vec::new();
    for i in 0..3 {
        let name = unique(&format!("bk{i}"));
        server.skyctl(&["create", &name, "--user", &alice, "--autostop", "30"]);
        clusters.push(name);
    }
    let stopped = unique("bk-stopped");
    server.skyctl(&["create", &stopped, "--user", &bob, "--status", "STOPPED"]);
    clusters.push(stopped);
    for who in &people {
        server.skyctl(&["keys", who]);
    }
    server.skyctl(&["job", &unique("train"), "--user", &alice]);
    // Roles set through SkyPilot's own API (a person without one gets SkyPilot's
    // default role when the server starts, so both are set).
    for (who, role) in [(&alice, "viewer"), (&bob, "admin")] {
        curl_json(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &format!(
                "{{\"user_id\": \"{}\", \"role\": \"{role}\"}}",
                user_id(who)
            ),
            &format!("{}/users/update", server.url),
        ]);
    }

    // The host: the cluster manager polling every second, and the backup's section.
    let host = Host::new(&server.url, 1, 300);
    let backups = host.dir.path().join("backups");
    let d = server.dir();
    let mut text = std::fs::read_to_string(&host.config).unwrap();
    text.push_str(&format!(
        "[backup]\ndirectory = {:?}\nkeep = 3\nskypilot_version = \"0.14.1\"\n\
         sky_home = {:?}\nsky_runtime_dir = {:?}\nsky_config_file = {:?}\n{backup_extra}",
        backups.to_str().unwrap(),
        d.join("home").to_str().unwrap(),
        d.join("runtime").to_str().unwrap(),
        d.join("config.yaml").to_str().unwrap(),
    ));
    std::fs::write(&host.config, text).unwrap();
    let manager = host.spawn_manager();
    let all = |s: &Value| {
        s["state"]["stale"] == false && clusters.iter().all(|c| cluster(s, c).is_some())
    };
    host.wait_status("the drill's fleet recorded", Duration::from_secs(120), all);
    let before = state(&server, &people);
    assert_eq!(before["clusters"].as_array().unwrap().len(), clusters.len());
    assert_eq!(before["jobs"].as_array().unwrap().len(), 1, "{before}");
    let keys_before = ssh_keys(&server);
    assert_eq!(keys_before.len(), 4, "two key pairs: {keys_before:?}");
    let roles_before = roles(&server, &people);
    assert_eq!(
        roles_before.get(bob.as_str()).map(String::as_str),
        Some("admin")
    );
    assert_eq!(
        roles_before.get(alice.as_str()).map(String::as_str),
        Some("viewer")
    );

    // The backup, while the cluster manager polls /status every second.
    let (ok, out, err) = run(&host, &["backup"]);
    assert!(ok, "backup: {out}{err}");
    let taken = out
        .lines()
        .next()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let taken = PathBuf::from(taken);
    assert!(taken.join("manifest.json").is_file(), "{out}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(taken.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["skypilot_version"], "0.14.1");
    for f in std::fs::read_dir(&taken).unwrap() {
        let m = f.unwrap().metadata().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "every file 0600");
    }

    // Refused while the server runs.
    let (ok, _, err) = run(&host, &["restore", taken.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("SkyPilot's API server answers at") && err.contains("nothing was restored"),
        "{err}"
    );
    let mut manager = manager;
    let transitions_before = transitions(&host);
    manager = {
        manager.terminate();
        server = server.kill();
        host.spawn_manager()
    };
    // The cluster manager runs again (its polls fail): the restore names it.
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _, err) = run(&host, &["restore", taken.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("the state is in use") && err.contains("host.db"),
        "{err}"
    );
    manager.terminate();

    // A flipped byte: refused before anything is touched.
    let untouched = digests(server.dir());
    let damaged = host.dir.path().join("damaged");
    let victim = damaged_copy(&taken, &damaged);
    let (ok, _, err) = run(&host, &["restore", damaged.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("the backup is damaged") && err.contains(&victim),
        "{err}"
    );
    assert_eq!(digests(server.dir()), untouched, "nothing touched");

    // The state destroyed, then restored.
    destroy(&server);
    std::fs::remove_dir_all(server.dir().join("home/.sky/clients")).unwrap();
    let (ok, out, err) = run(&host, &["restore", "--dry-run", taken.to_str().unwrap()]);
    assert!(
        ok && out.contains("dry run: nothing was changed"),
        "{out}{err}"
    );
    assert!(!server.dir().join("home/.sky/clients").exists());
    let (ok, out, err) = run(&host, &["restore", taken.to_str().unwrap()]);
    assert!(ok, "restore: {out}{err}");
    assert!(out.contains("restored "), "{out}");

    // SkyPilot again: everything back, and nothing disappeared on the way.
    server = server.restart();
    let manager = host.spawn_manager();
    host.wait_status("the fleet after the restore", Duration::from_secs(120), all);
    assert_eq!(state(&server, &people), before);
    assert_eq!(ssh_keys(&server), keys_before, "SSH keys byte-identical");
    assert_eq!(roles(&server, &people), roles_before);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        transitions(&host),
        transitions_before,
        "no transition recorded"
    );
    manager.terminate();
    drop(server);
}

#[test]
fn restore_drill_sqlite() {
    drill(OwnServer::start(), "", |server| {
        let sky = server.dir().join("runtime/.sky");
        for e in std::fs::read_dir(&sky).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if name.contains(".db") {
                std::fs::remove_file(&p).unwrap();
            }
        }
        std::fs::remove_dir_all(sky.join("serve")).unwrap();
    });
}

#[test]
fn restore_drill_postgresql() {
    let _serial = POSTGRES.lock().unwrap_or_else(|e| e.into_inner());
    let pg = Postgres::from_env();
    let (db, uri) = pg.new_database();
    let server = OwnServer::start_with(&[("SKYPILOT_DB_CONNECTION_URI", uri.as_str())]);
    let extra = format!(
        "database_uri = {uri:?}\npg_dump = {:?}\npg_restore = {:?}\n",
        pg.bin.join("pg_dump").to_str().unwrap(),
        pg.bin.join("pg_restore").to_str().unwrap()
    );
    drill(server, &extra, |server| {
        // The database dropped and made anew, empty (as the module's PostgreSQL would at
        // its next start), and SkyPilot's local files gone.
        pg.psql("skypilot", &format!("DROP DATABASE {db} WITH (FORCE)"));
        pg.psql("skypilot", &format!("CREATE DATABASE {db}"));
        let sky = server.dir().join("runtime/.sky");
        for e in std::fs::read_dir(&sky).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_str().unwrap().contains(".db") {
                std::fs::remove_file(&p).unwrap();
            }
        }
    });
}
