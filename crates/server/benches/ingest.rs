//! Status reports ingested per second over HTTP: 64 keep-alive connections PUT ~2 KB reports to
//! `/ddm/status` (NanoMDM's forwarding form); each 200 is sent only after the report is committed.
//! Target on the 2-core machines: 16,000 reports per second, half of what a bare axum handler that
//! only inserts the body into SQLite reaches (`../shared/tools/limits http-sqlite --ack commit`;
//! pass its figure as LIMITS_INGEST_RPS to print the ratio). Memory is sampled every 10 s.
//!
//! `cargo bench -p updraft-server --bench ingest -- [--secs 20] [--conns 64] [--enrollments 10000]`

// The allocator the `updraft` binary runs on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use updraft_server::{AppState, Db, Limits, NoPusher, SealingKey, ServerConfig};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A report shaped like a Mac's during an enforced update (about 2 KB).
fn report(n: u64) -> Vec<u8> {
    let declarations: Vec<_> = (0..12)
        .map(|i| json!({"identifier": format!("com.updraft.decl.{i}"), "server-token": format!("{:040x}", i * 7919 + n), "active": true, "valid": "valid"}))
        .collect();
    let state = ["waiting", "downloading", "prepared", "installing"][(n % 4) as usize];
    serde_json::to_vec(&json!({
        "StatusItems": {
            "softwareupdate": {
                "install-state": state,
                "pending-version": {"os-version": "26.4.1", "build-version": "25E253", "target-local-date-time": "2026-04-15T17:00:00"},
                "failure-reason": {"count": 0},
                "install-reason": {"reason": ["declaration"], "declaration-id": "com.updraft.su.r1.w1"},
                "device-id": "J314sAP", "beta-enrollment": ""
            },
            "device": {
                "identifier": {"serial-number": format!("C02BENCH{n:06}"), "udid": format!("BENCH-{n:08}")},
                "model": {"family": "Mac", "identifier": "MacBookPro18,3", "marketing-name": "MacBook Pro (14-inch, 2021)"},
                "operating-system": {"family": "macOS", "version": "26.3", "build-version": "25D125", "marketing-name": "macOS Tahoe"}
            },
            "management": {"declarations": {"activations": declarations[..2], "configurations": declarations[2..], "assets": [], "management": []}}
        },
        "Errors": []
    }))
    .unwrap()
}

const BUCKET_US: usize = 100;
const BUCKETS: usize = 20_000;

/// The database files' size: what a long run leaves on disk.
fn disk_mib(dir: &std::path::Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0) as f64
        / (1024.0 * 1024.0)
}

fn main() {
    let secs = arg("--secs", 20);
    let conns = arg("--conns", 64) as usize;
    let enrollments = arg("--enrollments", 10_000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("server.db")).await.unwrap();
        let state = AppState::new(ServerConfig {
            db,
            clock: Arc::new(updraft_clock::SystemClock),
            pusher: Arc::new(NoPusher),
            sealing_key: SealingKey::from_bytes(&[3; 32]),
            api_key: None,
            // Reports arrive as a NanoMDM in front forwards them; identity checks are the
            // check-in path's cost, measured by the attack tests, not here.
            forwarding: updraft_server::DdmForwarding::Unsigned,
            device_trust: None,
            push_certificate: None,
            webhook: None,
            limits: Limits::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener_address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, updraft_server::app(state)).await });

        let bodies: Arc<Vec<Bytes>> = Arc::new((0..64).map(|n| Bytes::from(report(n))).collect());
        let average = bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len();
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        // Latencies in 100-us buckets up to 2 s: a fixed histogram, so a long run's memory stays flat.
        let latencies = Arc::new(std::sync::Mutex::new(vec![0u64; BUCKETS]));
        let mut tasks = Vec::new();
        let address = listener_address;
        for worker in 0..conns {
            let (bodies, done, failed, measuring, stop, latencies) =
                (bodies.clone(), done.clone(), failed.clone(), measuring.clone(), stop.clone(), latencies.clone());
            tasks.push(tokio::spawn(async move {
                // The same lean client as `limits`' load generator: it shares the two cores with
                // the server, so a heavier client would lower the ratio for reasons of its own.
                let stream = tokio::net::TcpStream::connect(address).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                tokio::spawn(connection);
                let host = HeaderValue::from_str(&address.to_string()).unwrap();
                let ids: Vec<HeaderValue> = (0..enrollments.div_ceil(conns))
                    .map(|k| HeaderValue::from_str(&format!("BENCH-{:08}", (worker + k * conns) % enrollments)).unwrap())
                    .collect();
                let mut n = 0usize;
                let mut own = vec![0u64; BUCKETS];
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let mut request = Request::new(Full::new(bodies[n % bodies.len()].clone()));
                    *request.method_mut() = Method::PUT;
                    *request.uri_mut() = Uri::from_static("/ddm/status");
                    let headers = request.headers_mut();
                    headers.insert(HOST, host.clone());
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    headers.insert("x-enrollment-id", ids[n % ids.len()].clone());
                    let ok = match sender.ready().await {
                        Ok(()) => match sender.send_request(request).await {
                            Ok(response) => {
                                let status = response.status();
                                response.into_body().collect().await.is_ok() && status == 200
                            }
                            Err(_) => false,
                        },
                        Err(_) => false,
                    };
                    if measuring.load(Ordering::Relaxed) {
                        if ok {
                            done.fetch_add(1, Ordering::Relaxed);
                            own[(started.elapsed().as_micros() as usize / BUCKET_US).min(BUCKETS - 1)] += 1;
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if !ok {
                        break;
                    }
                }
                for (total, count) in latencies.lock().unwrap().iter_mut().zip(own) {
                    *total += count;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        measuring.store(true, Ordering::Relaxed);
        let start = Instant::now();
        let mut samples = Vec::new();
        while start.elapsed() < Duration::from_secs(secs) {
            tokio::time::sleep(Duration::from_secs(secs.min(10))).await;
            samples.push((start.elapsed().as_secs(), done.load(Ordering::Relaxed), rss_mib(), disk_mib(dir.path())));
        }
        let elapsed = start.elapsed().as_secs_f64();
        measuring.store(false, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            let _ = task.await;
        }
        let total = done.load(Ordering::Relaxed);
        let latencies = latencies.lock().unwrap().clone();
        let counted: u64 = latencies.iter().sum();
        let percentile = |p: f64| {
            let wanted = (counted as f64 * p) as u64;
            let mut seen = 0;
            let bucket = latencies.iter().position(|count| {
                seen += count;
                seen > wanted
            });
            bucket.unwrap_or(0) * BUCKET_US + BUCKET_US / 2
        };
        let rate = total as f64 / elapsed;
        println!("== updraft status ingest benchmark ==");
        println!("{conns} connections, {average}-byte reports, {enrollments} enrollments, {secs} s (after 2 s warm-up)");
        println!("reports committed: {total} ({} failed)", failed.load(Ordering::Relaxed));
        println!("throughput: {rate:.0} reports/s (target >= 16,000)");
        println!("latency: p50 {} us, p99 {} us", percentile(0.5), percentile(0.99));
        for (at, count, rss, disk) in &samples {
            println!("  t={at:>4} s: {count:>9} reports, RSS {rss:.0} MiB, database and WAL {disk:.0} MiB");
        }
        if let Some(limit) = std::env::var("LIMITS_INGEST_RPS").ok().and_then(|v| v.parse::<f64>().ok()) {
            println!("ratio to limits http-sqlite (ack after commit) measured this sitting ({limit:.0} req/s): {:.2}", rate / limit);
        }
    });
}
