//! Crash safety under load, against the real `updraft serve` process: enrolls 200 signed
//! devices, sends 20,000 status reports over 64 connections, kills the server with SIGKILL at a
//! random moment, starts it again on the same database, and checks that every report it
//! answered 200 is there (each device's merged status at least at its last acknowledged
//! report, and that report among its kept raw reports). `scripts/crash-safety` runs it.
//!
//!   cargo run -p updraft-server --example crash_safety -- UPDRAFT_BINARY [RUNS] [SEED]

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use updraft_ddm::checkin::{
    Authenticate, CheckinMessage, DeclarativeManagementCheckin, EnrollmentKeys, TokenUpdate,
};
use updraft_sim::{DeviceIdentity, IdentityIssuer};

const DEVICES: usize = 200;
const REPORTS: usize = 20_000;
const CONNECTIONS: usize = 64;
const API_KEY: &str = "crash-key";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `updraft serve` on `db`, returning it and its address once it listens.
fn start(binary: &Path, db: &Path, ca: &Path) -> (Server, String) {
    let mut child = Command::new(binary)
        .args(["serve", "--db"])
        .arg(db)
        .args(["--listen", "127.0.0.1:0", "--device-ca"])
        .arg(ca)
        .env("UPDRAFT_API_KEY", API_KEY)
        .env("RUST_LOG", "error")
        .stderr(Stdio::piped())
        .spawn()
        .expect("updraft serve starts");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let address = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("stderr") == 0 {
            panic!("updraft serve ended before listening");
        }
        if let Some(rest) = line
            .trim()
            .strip_prefix("updraft serve: listening on http://")
        {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (Server(child), address)
}

fn keys(device: &str) -> EnrollmentKeys {
    EnrollmentKeys {
        udid: Some(device.into()),
        ..Default::default()
    }
}

fn device_name(n: usize) -> String {
    format!("CRASH-{n:04}")
}

/// One signed check-in; true when answered 200.
async fn checkin(
    client: &reqwest::Client,
    address: &str,
    identity: &DeviceIdentity,
    message: CheckinMessage,
) -> bool {
    let body = message.to_xml();
    let Ok(signature) = identity.sign(&body) else {
        return false;
    };
    matches!(
        client
            .put(format!("http://{address}/mdm/checkin"))
            .header("content-type", "application/x-apple-aspen-mdm-checkin")
            .header("mdm-signature", signature)
            .body(body)
            .send()
            .await,
        Ok(response) if response.status() == 200
    )
}

fn report(sequence: u64) -> Vec<u8> {
    json!({"StatusItems": {
        "device": {"operating-system": {"version": "15.1", "build-version": "24B83"}},
        "crash-test": {"sequence": sequence},
    }, "Errors": []})
    .to_string()
    .into_bytes()
}

/// What one run saw: per device, the sequences answered 200.
struct Acknowledged(Mutex<BTreeMap<String, Vec<u64>>>);

async fn enroll(address: &str, identities: &[DeviceIdentity]) {
    let client = reqwest::Client::new();
    for (n, identity) in identities.iter().enumerate() {
        let device = device_name(n);
        let authenticated = checkin(
            &client,
            address,
            identity,
            CheckinMessage::Authenticate(Authenticate {
                enrollment: keys(&device),
                topic: "com.apple.mgmt.External.crash".into(),
                ..Default::default()
            }),
        )
        .await;
        let updated = checkin(
            &client,
            address,
            identity,
            CheckinMessage::TokenUpdate(TokenUpdate {
                enrollment: keys(&device),
                topic: "com.apple.mgmt.External.crash".into(),
                token: vec![1; 32],
                push_magic: format!("magic-{n}"),
                ..Default::default()
            }),
        )
        .await;
        assert!(authenticated && updated, "{device} did not enroll");
    }
}

/// Sends the reports over `CONNECTIONS` connections until all are sent or the server is gone.
async fn load(address: String, identities: Arc<Vec<DeviceIdentity>>, seen: Arc<Acknowledged>) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let (address, identities, seen, next) = (
            address.clone(),
            identities.clone(),
            seen.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            // Each connection owns the devices n ≡ connection (mod 64), so a device's reports
            // go in order, one at a time, as a real device sends them.
            let own: Vec<usize> = (connection..DEVICES).step_by(CONNECTIONS).collect();
            let mut turn = 0;
            loop {
                let sequence = next.fetch_add(1, Ordering::Relaxed);
                if sequence >= REPORTS as u64 {
                    return;
                }
                let n = own[turn % own.len()];
                turn += 1;
                let device = device_name(n);
                let message = CheckinMessage::DeclarativeManagement(DeclarativeManagementCheckin {
                    enrollment: keys(&device),
                    endpoint: "status".into(),
                    data: Some(report(sequence)),
                });
                if checkin(&client, &address, &identities[n], message).await {
                    seen.0
                        .lock()
                        .expect("lock")
                        .entry(device)
                        .or_default()
                        .push(sequence);
                } else if sequence > 0 {
                    // The server is gone: stop this connection.
                    return;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn admin(address: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{address}/v1{path}"))
        .basic_auth("kmfddm", Some(API_KEY))
        .send()
        .await
        .expect("admin API answers")
        .json()
        .await
        .expect("admin API answers JSON")
}

/// Checks every acknowledged report after the restart; returns the problems found.
async fn verify(address: &str, seen: &Acknowledged) -> Vec<String> {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = admin(
            address,
            &format!("/x-updraft/status-changes?after={after}&limit=500"),
        )
        .await;
        let changes = page["changes"].as_array().cloned().unwrap_or_default();
        for change in &changes {
            if let (Some(id), Some(sequence)) = (
                change["enrollment"]["id"].as_str(),
                change["status"]["StatusItems"]["crash-test"]["sequence"].as_u64(),
            ) {
                merged.insert(id.to_owned(), sequence);
            }
        }
        let next = page["next"].as_i64().unwrap_or(after);
        if changes.is_empty() || next == after {
            break;
        }
        after = next;
    }
    let mut problems = Vec::new();
    let acknowledged = seen.0.lock().expect("lock").clone();
    for (device, sequences) in &acknowledged {
        let last = *sequences.iter().max().expect("one at least");
        match merged.get(device) {
            None => problems.push(format!(
                "{device}: no merged status (last acknowledged {last})"
            )),
            Some(&sequence) if sequence < last => problems.push(format!(
                "{device}: merged status at report {sequence}, but {last} was acknowledged"
            )),
            Some(_) => {}
        }
        let newest = admin(address, &format!("/status-report/{device}?index=0")).await;
        let raw = newest["StatusItems"]["crash-test"]["sequence"].as_u64();
        if raw.is_none_or(|raw| raw < last) {
            problems.push(format!(
                "{device}: newest raw report {raw:?}, but {last} was acknowledged"
            ));
        }
    }
    problems
}

fn main() {
    let mut args = std::env::args().skip(1);
    let binary = PathBuf::from(
        args.next()
            .expect("usage: crash_safety UPDRAFT_BINARY [RUNS] [SEED]"),
    );
    let runs: usize = args.next().map_or(10, |r| r.parse().expect("RUNS"));
    let seed: u64 = args.next().map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        },
        |s| s.parse().expect("SEED"),
    );
    println!(
        "crash safety: {runs} runs, seed {seed} ({DEVICES} devices, {REPORTS} reports, {CONNECTIONS} connections)"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut failed = 0;
    for run in 1..=runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let issuer = IdentityIssuer::generate("crash-safety device CA").expect("CA");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, issuer.ca_pem()).expect("CA file");
        let db = dir.path().join("server.db");
        let identities: Arc<Vec<DeviceIdentity>> = Arc::new(
            (0..DEVICES)
                .map(|n| issuer.issue(&device_name(n)).expect("identity"))
                .collect(),
        );
        let (server, address) = start(&binary, &db, &ca);
        runtime.block_on(enroll(&address, &identities));
        let seen = Arc::new(Acknowledged(Mutex::default()));
        // A moment within the load (20,000 reports take 10 to 30 s on two cores).
        let kill_after = Duration::from_millis(rng.random_range(300..15_000));
        let started = Instant::now();
        let load = runtime.spawn(load(address.clone(), identities.clone(), seen.clone()));
        std::thread::sleep(kill_after);
        let mut server = server;
        // SIGKILL: no chance to finish anything.
        server.0.kill().expect("SIGKILL");
        let killed_at = started.elapsed();
        let _ = server.0.wait();
        let _ = runtime.block_on(load);
        let acknowledged: usize = seen.0.lock().expect("lock").values().map(Vec::len).sum();
        let (_restarted, address) = start(&binary, &db, &ca);
        let problems = runtime.block_on(verify(&address, &seen));
        println!(
            "run {run:2}: killed after {:5} ms with {acknowledged:5} reports acknowledged; after the restart {}",
            killed_at.as_millis(),
            if problems.is_empty() {
                "every one is there".to_owned()
            } else {
                format!("{} problems: {}", problems.len(), problems.join("; "))
            }
        );
        if !problems.is_empty() {
            failed += 1;
        }
    }
    println!("crash safety: {failed} of {runs} runs lost an acknowledged report");
    if failed > 0 {
        std::process::exit(1);
    }
}
