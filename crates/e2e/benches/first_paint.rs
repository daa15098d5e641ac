//! The desktop console with 100,000 devices in its cache: time to first paint of the devices
//! table and of a device's timeline, scrolling frame times, and the app's memory (the app process
//! and its WebKit processes). Targets: table under 0.5 s, timeline under 50 ms, no dropped frames,
//! under 400 MB.
//!
//! The cache is filled the way the console fills it (one `Store::commit` per batch): devices of
//! real models and OS versions from the simulator's generator, one macOS rollout with every Mac
//! in a phase of it, and eight timeline events per Mac. The app then opens that cache
//! (`UPDRAFT_CONSOLE_DB`) in its real window under Xvfb, driven through tauri-driver; times are
//! measured inside the page, from the navigation to the animation frame after the rows exist.
//!
//! `scripts/bench-desktop [DEVICES]` builds the release app and runs this under Xvfb.

use chrono::{Duration, NaiveDateTime, Utc};
use fantoccini::{Client, ClientBuilder};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use updraft_engine::plan::DeviceFacts;
use updraft_engine::{Enforcement, EventKind, Phase, Release};
use updraft_feed::LookupResponse;
use updraft_sim::{DeviceSpec, FleetPlan};
use updraft_store::{Changes, DeviceRow, Note, Store};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PHASES: [Phase; 8] = [
    Phase::CleanedUp,
    Phase::CleanedUp,
    Phase::Waiting,
    Phase::Downloading,
    Phase::Prepared,
    Phase::Installing,
    Phase::Failed,
    Phase::Excluded,
];

async fn seed(db: &Path, devices: usize) -> Result<(String, f64), Box<dyn std::error::Error>> {
    let feed = LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes())?;
    let start = updraft_lab::start_of(&feed);
    let specs: Vec<DeviceSpec> = updraft_sim::generate(
        &FleetPlan {
            devices,
            seed: 1,
            failure_rate: 0.05,
            start: start.date_naive(),
        },
        &feed,
    );
    let store = Store::open(db).await?;
    let release = updraft_lab::newest_releases(&feed, start.date_naive())
        .into_iter()
        .find(|r: &Release| r.platform == updraft_feed::Platform::MacOs)
        .ok_or("no macOS release in the bundled feed")?;
    let deadline = NaiveDateTime::parse_from_str("2026-04-15T17:00:00", "%Y-%m-%dT%H:%M:%S")?;
    let rollout = store
        .create_rollout(
            updraft_store::NewRollout::of(&release, 1, "2026-04-15T17:00:00"),
            start,
        )
        .await?;
    let began = Instant::now();
    let mut sample = String::new();
    for (chunk_index, chunk) in specs.chunks(5000).enumerate() {
        let mut changes = Changes::default();
        for (offset, spec) in chunk.iter().enumerate() {
            let n = chunk_index * 5000 + offset;
            let at = start + Duration::minutes((n % 600) as i64);
            changes.devices.push(DeviceRow {
                facts: DeviceFacts {
                    enrollment_id: spec.udid.clone(),
                    model: Some(spec.model.clone()),
                    model_family: Some(spec.family.clone()),
                    serial_number: Some(spec.serial.clone()),
                    enrolled_at: Some(start.to_rfc3339()),
                    os_version: Some(spec.os_version.clone()),
                    build: Some(spec.build.clone()),
                    reported_device_id: Some(spec.gdmf_id.clone()),
                    bootstrap_token_escrowed: spec.escrows_bootstrap_token,
                    ..Default::default()
                },
                name: Some(spec.name.clone()),
                time_zone: Some(spec.time_zone.clone()),
                utc_offset_minutes: None,
                last_report_at: Some(at.to_rfc3339()),
                bootstrap_token_requested_at: None,
                server_seq: n as i64,
            });
            if spec.family != "Mac" {
                continue;
            }
            if sample.is_empty() {
                sample = spec.udid.clone();
            }
            let phase = PHASES[n % PHASES.len()];
            changes.enforcements.push(Enforcement {
                phase,
                exclusion_reason: (phase == Phase::Excluded)
                    .then(|| "already on 26.4.1 or later".into()),
                failure_reason: (phase == Phase::Failed).then(|| {
                    "The update could not be downloaded because there is not enough free disk space.".into()
                }),
                failure_count: u64::from(phase == Phase::Failed),
                last_report_at: Some(at),
                ..Enforcement::planned(
                    rollout,
                    1,
                    &spec.udid,
                    &release,
                    Some("25E253"),
                    deadline,
                    Some(0),
                    start,
                )
            });
            for (step, (kind, detail)) in [
                (EventKind::DeclarationAssigned, "com.updraft.su.r1.w1"),
                (EventKind::PushSent, "APNs accepted"),
                (EventKind::DeclarationActive, "valid"),
                (EventKind::InstallState, "waiting"),
                (EventKind::InstallState, "downloading"),
                (EventKind::InstallState, "prepared"),
                (EventKind::InstallState, "installing"),
                (EventKind::OsUpdated, "26.4.1 (25E253)"),
            ]
            .into_iter()
            .enumerate()
            {
                changes.events.push(Note::device(
                    &spec.udid,
                    Some(rollout),
                    at + Duration::minutes(47 * step as i64),
                    kind,
                    detail,
                ));
            }
        }
        store.commit(changes, Utc::now()).await?;
    }
    Ok((sample, began.elapsed().as_secs_f64()))
}

/// (RSS, PSS) in KiB. RSS counts every shared library page in full in each process (WebKit's
/// libraries are mapped by all three), so its sum over-counts; PSS splits shared pages among
/// the processes that map them, so PSS adds up.
fn memory_kib(pid: u32) -> (u64, u64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// The app's processes: `updraft-console` and every process below it (WebKit's web and network
/// processes), as (name, (RSS, PSS) in KiB).
fn app_memory() -> Vec<(String, (u64, u64))> {
    let mut parents: Vec<(u32, u32, String)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let name = stat[stat.find('(').map_or(0, |i| i + 1)..close].to_owned();
        let ppid = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        parents.push((pid, ppid, name));
    }
    let mut ours: Vec<u32> = parents
        .iter()
        .filter(|(_, _, name)| name.starts_with("updraft-consol"))
        .map(|(pid, _, _)| *pid)
        .collect();
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid, _) in &parents {
            if ours.contains(ppid) && !ours.contains(pid) {
                ours.push(*pid);
                grew = true;
            }
        }
    }
    parents
        .iter()
        .filter(|(pid, _, _)| ours.contains(pid))
        .map(|(pid, _, name)| (name.clone(), memory_kib(*pid)))
        .collect()
}

async fn in_page(client: &Client, script: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let value = client.execute_async(script, vec![]).await?;
    value
        .as_f64()
        .ok_or_else(|| format!("the page answered {value}").into())
}

/// Navigates and waits for `selector`, then for the next animation frame: the time to first paint.
fn paint_script(hash: &str, selector: &str) -> String {
    format!(
        "const done = arguments[arguments.length - 1];
         const t0 = performance.now();
         window.location.hash = {hash:?};
         (function check() {{
           if (document.querySelector({selector:?})) requestAnimationFrame(() => done(performance.now() - t0));
           else setTimeout(check, 1);
         }})();"
    )
}

/// Scrolls the devices table by `STEP` px every animation frame for 180 frames; the frame times.
const SCROLL_SCRIPT: &str = "const done = arguments[arguments.length - 1];
  const scroller = document.querySelector('[data-testid=device-scroller]');
  scroller.scrollTop = 0;
  const frames = [];
  let last = performance.now();
  let n = 0;
  function frame(now) {
    frames.push(now - last); last = now;
    scroller.scrollTop += STEP;
    if (++n < 180) requestAnimationFrame(frame); else done(JSON.stringify(frames.slice(1)));
  }
  requestAnimationFrame(frame);";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices = arg("--devices", 100_000);
    let dir = tempfile::tempdir()?;
    // `--db FILE` keeps the cache for the next run (seeded only when FILE does not exist yet).
    let db = std::env::args()
        .skip_while(|a| a != "--db")
        .nth(1)
        .map_or_else(|| dir.path().join("console.db"), PathBuf::from);
    let sample = if db.exists() {
        let store = Store::open(&db).await?;
        store
            .device_summaries(None, |first, device| {
                if first.is_none() && device.model_family.as_deref() == Some("Mac") {
                    *first = Some(device.enrollment_id);
                }
            })
            .await?
            .ok_or("the cache holds no Mac")?
    } else {
        let (sample, seed_secs) = seed(&db, devices).await?;
        println!(
            "cache: {devices} devices written in {seed_secs:.1} s ({})",
            db.display()
        );
        sample
    };

    // The backend alone, in this process: what the first page and a timeline cost before any UI.
    {
        let feed = LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes())?;
        let client = updraft_mdm::KmfddmClient::updraft("http://127.0.0.1:9", "")?;
        let clock: updraft_clock::SharedClock = Arc::new(updraft_clock::SystemClock);
        let session = updraft_app::Session::server(&db, Arc::new(client), clock, &feed).await?;
        let began = Instant::now();
        let page = session
            .devices(&updraft_app::view::DeviceQuery {
                limit: 200,
                ..Default::default()
            })
            .await?;
        let cold = began.elapsed();
        let began = Instant::now();
        session
            .devices(&updraft_app::view::DeviceQuery {
                sort: Some("os".into()),
                offset: 50_000,
                limit: 200,
                ..Default::default()
            })
            .await?;
        let sorted = began.elapsed();
        let began = Instant::now();
        let detail = session.device(&sample).await?;
        let timeline = began.elapsed();
        println!(
            "backend: first page of {} rows {:.0} ms (cold: reads every device), sorted by OS at row 50,000 {:.0} ms, a timeline of {} events {:.1} ms",
            page.total,
            cold.as_secs_f64() * 1000.0,
            sorted.as_secs_f64() * 1000.0,
            detail.timeline.len(),
            timeline.as_secs_f64() * 1000.0
        );
    }

    if std::env::args().any(|a| a == "--backend-only") {
        return Ok(());
    }

    // The real window.
    let app = std::env::var_os("UPDRAFT_APP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/updraft-console")
        })
        .canonicalize()?;
    let mut driver = tokio::process::Command::new("tauri-driver")
        .args(["--port", "4444", "--native-port", "4445"])
        .env("UPDRAFT_CONSOLE_DB", &db)
        .env("UPDRAFT_MDM_URL", "http://127.0.0.1:9")
        .env("UPDRAFT_DATA_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), "wry".into());
    capabilities.insert(
        "tauri:options".into(),
        serde_json::json!({ "application": app }),
    );
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let client = loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect("http://127.0.0.1:4444")
            .await
        {
            Ok(client) => break client,
            Err(error) if Instant::now() > deadline => return Err(error.into()),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    };
    // The dashboard first, as an admin opens the app; then the measured navigations.
    client
        .wait()
        .at_most(std::time::Duration::from_secs(120))
        .for_element(fantoccini::Locator::Css("h1"))
        .await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    let table_cold = in_page(&client, &paint_script("#/devices", "[data-device]")).await?;
    in_page(&client, &paint_script("#/dashboard", ".card")).await?;
    let table_warm = in_page(&client, &paint_script("#/devices", "[data-device]")).await?;
    // The floor: frames with nothing changing on the page.
    let idle: Vec<f64> = serde_json::from_str(
        client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const frames = []; let last = performance.now();
                 function frame(now) { frames.push(now - last); last = now;
                   if (frames.length < 61) requestAnimationFrame(frame); else done(JSON.stringify(frames.slice(1))); }
                 requestAnimationFrame(frame);",
                vec![],
            )
            .await?
            .as_str()
            .unwrap_or("[]"),
    )?;
    // A fast fling on a trackpad (about 3,600 px/s), then two screens a frame.
    let mut scrolls = Vec::new();
    for step in [60, 1700] {
        let script = SCROLL_SCRIPT.replace("STEP", &step.to_string());
        let frames: Vec<f64> = serde_json::from_str(
            client
                .execute_async(&script, vec![])
                .await?
                .as_str()
                .unwrap_or("[]"),
        )?;
        scrolls.push((step, frames));
    }
    // What the timeline's first paint is made of: the backend call through Tauri's IPC alone.
    let ipc = in_page(
        &client,
        &format!(
            "const done = arguments[arguments.length - 1];
             const t0 = performance.now();
             window.__TAURI_INTERNALS__.invoke('device', {{ id: {sample:?} }}).then(() => done(performance.now() - t0));"
        ),
    )
    .await?;
    let mut timelines = Vec::new();
    for _ in 0..5 {
        in_page(&client, &paint_script("#/devices", "[data-device]")).await?;
        timelines.push(
            in_page(
                &client,
                &paint_script(&format!("#/device/{sample}"), "[data-testid=timeline] li"),
            )
            .await?,
        );
    }
    let memory = app_memory();
    client.close().await?;
    let _ = driver.kill().await;

    timelines.sort_by(f64::total_cmp);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rss_total = mib(memory.iter().map(|(_, (rss, _))| rss).sum());
    let pss_total = mib(memory.iter().map(|(_, (_, pss))| pss).sum());
    println!(
        "devices table, first paint: {table_cold:.0} ms on first open (target < 500 ms), {table_warm:.0} ms after"
    );
    println!(
        "device timeline, first paint: median {:.0} ms, worst {:.0} ms of 5 (target < 50 ms)",
        timelines[timelines.len() / 2],
        timelines[timelines.len() - 1]
    );
    println!("  of which the device call through Tauri's IPC: {ipc:.1} ms");
    let mut idle = idle;
    idle.sort_by(f64::total_cmp);
    println!(
        "idle frames (nothing changing), for reference: p50 {:.1} ms",
        idle.get(idle.len() / 2).copied().unwrap_or(0.0)
    );
    for (step, frames) in scrolls {
        let mut sorted = frames.clone();
        sorted.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let dropped = frames.iter().filter(|f| **f > 1000.0 / 60.0 * 1.5).count();
        println!(
            "scrolling {} frames, {step} px a frame: frame time p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; {dropped} frames over 25 ms (Xvfb, software rendering)",
            frames.len(),
            pct(0.5),
            pct(0.95),
            pct(1.0)
        );
    }
    println!(
        "memory (PSS, shared pages split): {pss_total:.0} MiB in all (target < 400 MB); RSS summed: {rss_total:.0} MiB; per process PSS/RSS: {}",
        memory
            .iter()
            .map(|(name, (rss, pss))| format!("{name} {:.0}/{:.0} MiB", mib(*pss), mib(*rss)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
