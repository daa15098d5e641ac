//! `updraft lab` against `updraft serve` started as a separate process, as an admin would run
//! them: the fleet enrolls through the server's MDM endpoint and connects on its own schedule
//! (the server has no push certificate), the console follows the server's admin API only.

use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};

mod common;
use common::device_ca;

/// A running `updraft serve`, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `updraft lab` against the server in `dir`: its devices take identities from the server's
/// device CA, as enrolled devices would from SCEP.
fn lab(dir: &std::path::Path, address: &str, api_key: &str) -> Command {
    let (certificate, key) = device_ca(dir);
    let mut command = Command::new(env!("CARGO_BIN_EXE_updraft"));
    command
        .args(["lab", "--json", "--seed", "7", "--dir"])
        .arg(dir.join("lab"))
        .args(["--mdm-url", &format!("http://{address}/mdm")])
        .args(["--ddm-api", &format!("http://{address}/v1")])
        .arg("--identity-ca")
        .arg(certificate)
        .arg("--identity-ca-key")
        .arg(key)
        .env("UPDRAFT_API_KEY", api_key);
    command
}

fn serve(dir: &std::path::Path, api_key: &str) -> (Serve, String) {
    let (device_ca, _) = device_ca(dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["serve", "--db"])
        .arg(dir.join("server.db"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--device-ca")
        .arg(device_ca)
        .env("UPDRAFT_API_KEY", api_key)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let address = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve ended early"
        );
        if let Some(address) = line
            .trim()
            .strip_prefix("updraft serve: listening on http://")
            .and_then(|rest| rest.split_whitespace().next())
        {
            break address.to_owned();
        }
    };
    // Keep reading, so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (Serve(child), address)
}

#[test]
fn the_lab_runs_its_fleet_and_console_against_a_separate_updraft_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, address) = serve(dir.path(), "separate-key");
    let output = lab(dir.path(), &address, "separate-key")
        .args(["--devices", "200"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 200);
    for device in devices {
        let state = device["state"].as_str().unwrap();
        match state {
            "cleaned_up" => assert!(
                device["declarations_assigned"]
                    .as_array()
                    .unwrap()
                    .is_empty(),
                "an updated device keeps a declaration: {device}"
            ),
            "failed" => assert!(device["failure_reason"].is_string(), "{device}"),
            "excluded" => assert!(device["exclusion_reason"].is_string(), "{device}"),
            other => panic!("{} ended {other}: {device}", device["id"]),
        }
        // Learnt from the server (the device's answer to DeviceInformation), not the simulator.
        assert!(
            device["time_zone"].as_str().unwrap().contains('/'),
            "{device}"
        );
    }
    assert!(report["summary"]["cleaned_up"].as_u64().unwrap() > 150);
    // The server has no push certificate: no timeline claims a push, and the console says so.
    assert!(
        devices
            .iter()
            .flat_map(|d| d["events"].as_array().unwrap())
            .all(|e| e["kind"] != "push_sent")
    );
    let push_failed = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "push_failed")
        .expect("a push_failed alert");
    assert!(
        push_failed["detail"]
            .as_str()
            .unwrap()
            .contains("no push certificate"),
        "{push_failed}"
    );
}

/// The real path for rings and policies: the feed's history replayed from before 26.4.1, each
/// platform's policy starting it in three rings as it appears, against `updraft serve` started
/// on its own.
#[test]
fn the_lab_rolls_out_in_rings_against_a_separate_updraft_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, address) = serve(dir.path(), "rings-key");
    let output = lab(dir.path(), &address, "rings-key")
        .args([
            "--devices",
            "120",
            "--replay-from",
            "2026-04-07",
            "--failure-rate",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rings = report["rings"].as_array().expect("the rings in the report");
    // Three rings a platform, each promoted by its gate once the one before had updated.
    assert_eq!(rings.len(), 6, "{rings:#?}");
    for ring in rings {
        assert_eq!(ring["state"], "active", "{rings:#?}");
        assert!(ring["updated"].as_u64().unwrap() > 0, "{rings:#?}");
    }
    let devices = report["devices"].as_array().unwrap();
    assert!(
        devices.iter().all(|d| d["state"] != "not_planned"),
        "every ring ran"
    );
    // Both releases appeared after the start, and a policy started each.
    let drafted: Vec<&Value> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "rollout_drafted")
        .collect();
    assert_eq!(drafted.len(), 2, "{drafted:#?}");
    let started = report["started_at"].as_str().unwrap();
    assert_eq!(started, "2026-04-07T09:00:00Z");
    assert!(
        drafted.iter().all(|a| a["at"].as_str().unwrap() > started
            && a["detail"].as_str().unwrap().contains("started in 3 rings")),
        "{drafted:#?}"
    );
}

#[test]
fn the_lab_follows_a_separate_updraft_serve_by_polling_status_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, address) = serve(dir.path(), "poll-key");
    let output = lab(dir.path(), &address, "poll-key")
        .args(["--devices", "40", "--poll-interval", "30"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    for device in report["devices"].as_array().unwrap() {
        let state = device["state"].as_str().unwrap();
        assert!(
            ["cleaned_up", "failed", "excluded"].contains(&state),
            "{device}"
        );
        if state == "cleaned_up" {
            assert!(
                device["declarations_assigned"]
                    .as_array()
                    .unwrap()
                    .is_empty()
            );
        }
    }
    assert!(report["summary"]["cleaned_up"].as_u64().unwrap() > 25);
    // Polling cannot see bootstrap-token escrow, so it raises no alert about it.
    assert!(
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] != "bootstrap_token_missing")
    );
}

/// `updraft console --turns N`: the lines it printed.
fn console_lines(dir: &std::path::Path, server: &str, turns: &str) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["console", "--db"])
        .arg(dir.join("console.db"))
        .args(["--server", server, "--sync-seconds", "1", "--turns", turns])
        .env("UPDRAFT_API_KEY", "console-key")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn the_headless_console_follows_a_server_and_says_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let (server, address) = serve(dir.path(), "console-key");
    let lines = console_lines(dir.path(), &format!("http://{address}/"), "3");
    assert!(
        lines.iter().any(|l| l["event"] == "fleet_changed"),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| l["event"] != "sync_health"),
        "{lines:?}"
    );

    // The server is gone: the same cache, and the console says why it is behind.
    drop(server);
    let lines = console_lines(dir.path(), &format!("http://{address}/"), "2");
    let health = lines
        .iter()
        .find(|l| l["event"] == "sync_health")
        .expect("a sync_health line");
    let reason = health["health"]["lastFailure"]["reason"].as_str().unwrap();
    assert!(reason.contains("cannot reach"), "{reason}");
}
