//! Feed benchmarks: parsing the largest lookup-service capture beside a bare serde parse of the
//! same bytes (the ceiling), and the targets of 100,000 devices against it.
//!
//! Targets on the 2-core machines: parsing within 1.5x of the ceiling; 100,000 devices' targets
//! under 30 ms. After criterion's own report the bench prints the figures and the ratios. When
//! `LIMITS_PARSE_MS` / `LIMITS_MATCH_MS` hold the figures `../shared/tools/limits` measured in the
//! same sitting (scripts/bench-feed does that), the ratios to them are printed too.

use chrono::NaiveDate;
use criterion::Criterion;
use serde::Deserialize;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;
use updraft_ddm::{OsVersion, VersionExtra};
use updraft_feed::{DeviceFacts, FeedIndex, LookupResponse, Platform};

const LARGEST: &str = "pmv_2024-09-28_sofa-cache-wrapper_xrOS_RSRkey.json";
const CAPTURE_DAY: (i32, u32, u32) = (2024, 9, 28);
/// The capture `../shared/tools/limits match` runs on, for a like-for-like ratio.
const LIMITS_CAPTURE: &str = "pmv_2026-04-11_raw.json";
const LIMITS_CAPTURE_DAY: (i32, u32, u32) = (2026, 4, 11);
const DEVICES: usize = 100_000;

/// The ceiling: the same JSON into the plainest structs serde can fill.
#[allow(dead_code)]
#[derive(Deserialize)]
struct BareWrapper {
    etag: Option<String>,
    data: BareResponse,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct BareResponse {
    #[serde(rename = "PublicAssetSets", default)]
    public: HashMap<String, Vec<BareEntry>>,
    #[serde(rename = "AssetSets", default)]
    all: HashMap<String, Vec<BareEntry>>,
    #[serde(rename = "PublicBackgroundSecurityImprovements", default)]
    bsi: HashMap<String, Vec<BareEntry>>,
    #[serde(rename = "PublicRapidSecurityResponses", default)]
    rsr: HashMap<String, Vec<BareEntry>>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BareEntry {
    product_version: String,
    product_version_extra: Option<String>,
    build: Option<String>,
    prerequisite_build: Option<String>,
    posting_date: String,
    expiration_date: Option<String>,
    #[serde(default)]
    supported_devices: Vec<String>,
}

struct Device {
    platform: Platform,
    device_id: String,
    os_version: OsVersion,
    build: String,
    extra: VersionExtra,
}

/// A deterministic fleet drawn from the feed itself: real device ids, on versions and builds
/// that the feed lists for their platform, so most devices have work to do.
fn fleet(response: &LookupResponse, count: usize) -> Vec<Device> {
    let mut pairs: Vec<(Platform, String)> = Vec::new();
    let mut versions: HashMap<Platform, Vec<(String, String)>> = HashMap::new();
    for located in response.entries() {
        let Some(platform) = Platform::from_feed_key(located.platform) else {
            continue;
        };
        for device in &located.entry.supported_devices {
            pairs.push((platform, device.clone()));
        }
        versions.entry(platform).or_default().push((
            located.entry.product_version.clone(),
            located.entry.build.clone().unwrap_or_default(),
        ));
    }
    pairs.sort();
    pairs.dedup();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let (platform, device_id) = pairs[next() as usize % pairs.len()].clone();
            let choices = &versions[&platform];
            let (version, build) = &choices[next() as usize % choices.len()];
            // Vary the case as real sources do (Mist upper-cases, gdmf mixes).
            let device_id = if next() % 4 == 0 {
                device_id.to_ascii_uppercase()
            } else {
                device_id
            };
            Device {
                platform,
                device_id,
                os_version: OsVersion::parse(version)
                    .unwrap_or_else(|_| OsVersion::parse("1").unwrap()),
                build: build.clone(),
                extra: VersionExtra::NONE,
            }
        })
        .collect()
}

fn targets_for_fleet(index: &FeedIndex, fleet: &[Device], day: NaiveDate) -> usize {
    fleet
        .iter()
        .map(|device| {
            let facts = DeviceFacts {
                platform: device.platform,
                device_id: &device.device_id,
                os_version: &device.os_version,
                build: &device.build,
                extra: &device.extra,
            };
            index.targets(&facts, day).len()
        })
        .sum()
}

/// The machine is a shared VM whose speed drifts by tens of percent between criterion groups, so
/// the parse ratio is also measured interleaved: rounds alternate ceiling and Updraft, and the
/// median of the per-round ratios is reported beside criterion's figures.
fn interleaved_ratio(bytes: &[u8], rounds: usize, iterations: usize) -> (f64, f64, f64) {
    let time = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            f();
        }
        start.elapsed().as_secs_f64() * 1e3 / iterations as f64
    };
    let mut ceiling = Vec::new();
    let mut ours = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let c = time(&|| {
            black_box(serde_json::from_slice::<BareWrapper>(black_box(bytes)).unwrap());
        });
        let u = time(&|| {
            black_box(LookupResponse::parse_saved(black_box(bytes)).unwrap());
        });
        ceiling.push(c);
        ours.push(u);
        ratios.push(u / c);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    (median(&mut ceiling), median(&mut ours), median(&mut ratios))
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("criterion")
}

fn mean_ms(group: &str, name: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    // Criterion reports the slope when it sampled linearly, else the mean; print the same.
    let estimate = estimates["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| estimates["mean"]["point_estimate"].as_f64())?;
    Some(estimate / 1e6)
}

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gdmf")
        .join(LARGEST);
    let bytes = std::fs::read(&path).expect("the largest capture");
    let (response, _) = LookupResponse::parse_saved(&bytes).expect("the capture parses");
    let index = FeedIndex::new(&response);
    let day = NaiveDate::from_ymd_opt(CAPTURE_DAY.0, CAPTURE_DAY.1, CAPTURE_DAY.2).unwrap();
    let devices = fleet(&response, DEVICES);
    let with_targets = devices
        .iter()
        .filter(|d| {
            let facts = DeviceFacts {
                platform: d.platform,
                device_id: &d.device_id,
                os_version: &d.os_version,
                build: &d.build,
                extra: &d.extra,
            };
            !index.targets(&facts, day).is_empty()
        })
        .count();

    let limits_bytes =
        std::fs::read(path.with_file_name(LIMITS_CAPTURE)).expect("the limits capture");
    let (limits_response, _) = LookupResponse::parse_saved(&limits_bytes).expect("it parses");
    let limits_index = FeedIndex::new(&limits_response);
    let limits_devices = fleet(&limits_response, DEVICES);
    let limits_day = NaiveDate::from_ymd_opt(
        LIMITS_CAPTURE_DAY.0,
        LIMITS_CAPTURE_DAY.1,
        LIMITS_CAPTURE_DAY.2,
    )
    .unwrap();

    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir())
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("feed_parse");
        group.throughput(criterion::Throughput::Bytes(bytes.len() as u64));
        group.bench_function("bare_serde_ceiling", |b| {
            b.iter(|| serde_json::from_slice::<BareWrapper>(black_box(&bytes)).unwrap())
        });
        group.bench_function("updraft", |b| {
            b.iter(|| LookupResponse::parse_saved(black_box(&bytes)).unwrap())
        });
        group.bench_function("updraft_index", |b| {
            b.iter(|| FeedIndex::new(black_box(&response)))
        });
        group.bench_function("updraft_2026-04-11", |b| {
            b.iter(|| LookupResponse::parse_saved(black_box(&limits_bytes)).unwrap())
        });
        group.finish();
    }
    {
        let mut group = criterion.benchmark_group("feed_targets");
        group.sample_size(20);
        group.bench_function("devices_100000", |b| {
            b.iter(|| targets_for_fleet(black_box(&index), black_box(&devices), day))
        });
        group.bench_function("devices_100000_2026-04-11", |b| {
            b.iter(|| {
                targets_for_fleet(
                    black_box(&limits_index),
                    black_box(&limits_devices),
                    limits_day,
                )
            })
        });
        group.finish();
    }
    criterion.final_summary();

    let (
        Some(ceiling),
        Some(parse),
        Some(index_ms),
        Some(targets),
        Some(targets_2026),
        Some(parse_2026),
    ) = (
        mean_ms("feed_parse", "bare_serde_ceiling"),
        mean_ms("feed_parse", "updraft"),
        mean_ms("feed_parse", "updraft_index"),
        mean_ms("feed_targets", "devices_100000"),
        mean_ms("feed_targets", "devices_100000_2026-04-11"),
        mean_ms("feed_parse", "updraft_2026-04-11"),
    )
    else {
        println!(
            "(no criterion estimates found under {}; run with `cargo bench`)",
            criterion_dir().display()
        );
        return;
    };
    println!();
    println!("== updraft feed benchmark summary ==");
    println!(
        "capture: {LARGEST} ({} bytes, {} entries)",
        bytes.len(),
        response.entry_count()
    );
    println!("parse, bare serde ceiling: {ceiling:.3} ms");
    println!(
        "parse, updraft:            {parse:.3} ms  = {:.2}x the ceiling (target <= 1.5x)",
        parse / ceiling
    );
    let (ceiling_i, ours_i, ratio_i) = interleaved_ratio(&bytes, 21, 200);
    println!(
        "parse, interleaved (21 rounds x 200): ceiling {ceiling_i:.3} ms, updraft {ours_i:.3} ms, median ratio {ratio_i:.2}x"
    );
    println!("index build:               {index_ms:.3} ms (once per feed)");
    println!(
        "targets, {DEVICES} devices:  {targets:.2} ms  = {:.0} ns/device (target < 30 ms); {with_targets} devices have a target on {day}",
        targets * 1e6 / DEVICES as f64
    );
    println!("parse, updraft, {LIMITS_CAPTURE}: {parse_2026:.3} ms");
    println!("targets, {DEVICES} devices on {LIMITS_CAPTURE}: {targets_2026:.2} ms");
    for (variable, label, ours) in [
        (
            "LIMITS_PARSE_MS",
            "limits `parse` typed structs, 2026-04-11",
            parse_2026,
        ),
        (
            "LIMITS_MATCH_MS",
            "limits `match`, 100,000 devices on 2026-04-11",
            targets_2026,
        ),
    ] {
        if let Some(limit) = std::env::var(variable)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
        {
            println!(
                "ratio to {label} measured this sitting ({limit:.3} ms): {:.2}x",
                ours / limit
            );
        }
    }
}
