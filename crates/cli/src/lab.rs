//! `updraft lab`.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use updraft_server::Enqueuer;

use std::io::Write;
use updraft_feed::{BUNDLED_FEED, LookupResponse};
use updraft_lab::{
    AlertKind, ExternalServer, ExternalStatus, Lab, LabConfig, LabServer, LabStats, ServerProfile,
};

use crate::output::{print, table};

#[derive(Args)]
pub struct LabArgs {
    /// Devices in the simulated fleet.
    #[arg(long, default_value_t = 300)]
    devices: usize,
    /// Seed: the same seed gives the same fleet, faults and report.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// A saved lookup-service response; default: the bundled capture.
    #[arg(long)]
    feed: Option<PathBuf>,
    /// Share of devices with a fault (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    failure_rate: f64,
    /// Keep the databases here instead of a temporary folder.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
    /// Roll out in three rings (IT 10% on day 0, pilot 30% on day 2, everyone on day 4), each
    /// starting when the one before has 90% updated; more than 5% failed halts the rest.
    #[arg(long)]
    rings: bool,
    /// Replay the feed's history from this day (YYYY-MM-DD): the lab starts with the releases
    /// posted by then, each later one appears on its posting date, and a release policy per
    /// platform starts it in the rings above (offsets halved when SOFA lists an exploited CVE).
    #[arg(long, value_name = "DATE")]
    replay_from: Option<chrono::NaiveDate>,
    #[command(flatten)]
    external: ExternalArgs,
}

/// A real server instead of the embedded one: the fleet enrolls into it, the console follows it.
#[derive(Args)]
struct ExternalArgs {
    /// The devices' MDM URL (NanoHUB: http://host:9004/mdm; updraft serve: http://host/mdm).
    #[arg(long, requires = "ddm_api")]
    mdm_url: Option<String>,
    /// The KMFDDM admin API's root (NanoHUB: http://host:9004/api/v1/ddm; KMFDDM and
    /// updraft serve: http://host/v1); its key in UPDRAFT_API_KEY.
    #[arg(long, requires = "mdm_url")]
    ddm_api: Option<String>,
    /// The admin API's HTTP Basic user (NanoHUB: nanohub; KMFDDM and updraft serve: kmfddm).
    #[arg(long, default_value = "kmfddm")]
    api_user: String,
    /// A private CA (PEM) that signed the server's TLS certificate, trusted beside the system's.
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// The CA (PEM) whose certificates the server takes as device identities (NanoHUB's -ca).
    #[arg(long, requires = "identity_ca_key")]
    identity_ca: Option<PathBuf>,
    /// That CA's private key (PEM), to issue each simulated device its identity.
    #[arg(long, requires = "identity_ca")]
    identity_ca_key: Option<PathBuf>,
    /// Read status from a webhook companion listening here (NanoHUB started with
    /// -webhook-url http://ADDR/webhook).
    #[arg(long, conflicts_with = "poll_interval")]
    webhook_listen: Option<std::net::SocketAddr>,
    /// NanoHUB's -webhook-hmac-key (also UPDRAFT_WEBHOOK_HMAC_KEY).
    #[arg(long, env = "UPDRAFT_WEBHOOK_HMAC_KEY", hide_env_values = true)]
    webhook_hmac_key: Option<String>,
    /// NanoMDM's API, to ask devices their name and zone (default: beside --ddm-api when it
    /// ends in /api/v1/ddm); same user and key as --ddm-api.
    #[arg(long)]
    nanomdm_api: Option<String>,
    /// Read status by polling the server's status-report, every this many simulated minutes.
    #[arg(long)]
    poll_interval: Option<i64>,
    /// Simulated minutes between a device's own connections (the server cannot push here).
    #[arg(long, default_value_t = 60)]
    connect_every: i64,
}

impl ExternalArgs {
    fn server(&self) -> anyhow::Result<LabServer> {
        let (Some(mdm_url), Some(ddm_api)) = (&self.mdm_url, &self.ddm_api) else {
            return Ok(LabServer::Embedded);
        };
        let api_key = std::env::var("UPDRAFT_API_KEY").map_err(|_| {
            anyhow::anyhow!("--ddm-api: set the admin API's key in UPDRAFT_API_KEY")
        })?;
        let read = |path: &PathBuf, flag: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("{flag} {}: cannot read it", path.display()))
        };
        let profile = ServerProfile {
            base_url: ddm_api.trim_end_matches('/').to_owned(),
            api_prefix: String::new(),
            api_user: self.api_user.clone(),
            api_key: api_key.clone(),
            extra_ca_pem: match &self.server_ca {
                Some(path) => Some(read(path, "--server-ca")?.into_bytes()),
                None => None,
            },
        };
        let identity_ca = match (&self.identity_ca, &self.identity_ca_key) {
            (Some(certificate), Some(key)) => Some((
                read(certificate, "--identity-ca")?,
                read(key, "--identity-ca-key")?,
            )),
            _ => None,
        };
        let status = match (self.webhook_listen, self.poll_interval) {
            (Some(listen), _) => {
                let nanomdm = self.nanomdm_api.clone().or_else(|| {
                    ddm_api
                        .trim_end_matches('/')
                        .strip_suffix("/api/v1/ddm")
                        .map(|base| format!("{base}/api/v1/nanomdm"))
                });
                ExternalStatus::Webhook {
                    listen,
                    hmac_key: self.webhook_hmac_key.clone().map(String::into_bytes),
                    enqueue: nanomdm.map(|url| Enqueuer {
                        url: format!("{}/enqueue", url.trim_end_matches('/')),
                        user: self.api_user.clone(),
                        key: api_key.clone(),
                    }),
                }
            }
            (None, Some(minutes)) if minutes > 0 => ExternalStatus::Poll {
                every: chrono::Duration::minutes(minutes),
            },
            (None, Some(minutes)) => {
                anyhow::bail!("--poll-interval {minutes}: give minutes above 0")
            }
            (None, None) => ExternalStatus::Feed,
        };
        if self.connect_every <= 0 {
            anyhow::bail!(
                "--connect-every {}: give minutes above 0",
                self.connect_every
            );
        }
        Ok(LabServer::External(Box::new(ExternalServer {
            mdm_url: mdm_url.clone(),
            ddm_api: profile,
            identity_ca,
            status,
            connect_every: chrono::Duration::minutes(self.connect_every),
        })))
    }
}

pub fn lab(args: LabArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.failure_rate) {
        anyhow::bail!(
            "--failure-rate {} is not between 0 and 1",
            args.failure_rate
        );
    }
    if args.devices == 0 {
        anyhow::bail!("--devices must be at least 1");
    }
    let (name, bytes) = match &args.feed {
        Some(path) => (
            path.display().to_string(),
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => ("the bundled feed".into(), BUNDLED_FEED.as_bytes().to_vec()),
    };
    let (feed, _) = LookupResponse::parse_saved(&bytes).with_context(|| name.clone())?;
    let feed = feed.require_entries().with_context(|| name)?;
    let temporary = match &args.dir {
        Some(_) => None,
        None => Some(tempdir()?),
    };
    let dir = args
        .dir
        .clone()
        .or_else(|| temporary.clone())
        .expect("a folder");
    let mut config = LabConfig::new(args.devices, args.seed, feed, dir);
    config.failure_rate = args.failure_rate;
    config.server = args.external.server()?;
    match args.replay_from {
        Some(from) => {
            let capture = config.feed.clone();
            if from >= *capture.posting_dates().last().unwrap_or(&from) {
                anyhow::bail!(
                    "--replay-from {from}: the feed's newest release was posted before then, so none would appear; give an earlier day"
                );
            }
            config.replay(&capture, from, updraft_lab::standard_rings());
        }
        None => config.rings = args.rings.then(updraft_lab::standard_rings),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let (lab, stats) = Lab::run(&config).await?;
        if !stats.device_errors.is_empty() {
            eprintln!(
                "warning: {} device requests failed; first: {}",
                stats.device_errors.len(),
                stats.device_errors[0]
            );
        }
        if args.json {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            lab.write_report_json(&mut out).await?;
            return Ok(out.flush()?);
        }
        print(&summary_text(&lab, &stats, args.seed).await?)
    });
    if let Some(dir) = temporary {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

async fn summary_text(lab: &Lab, stats: &LabStats, seed: u64) -> anyhow::Result<String> {
    let summary = lab.report_devices(|_| Ok(())).await?;
    let mut text = format!(
        "lab: {} devices, seed {seed}, started {}\n",
        lab.specs.len(),
        lab.report_started_at()
    );
    for release in lab.report_releases() {
        text.push_str(&format!(
            "rollout: {} {} ({})\n",
            release.platform,
            release.product_version,
            release.builds.join(", ")
        ));
    }
    for alert in lab.report_alerts().await? {
        if alert.kind == AlertKind::RolloutDrafted {
            text.push_str(&format!("policy, {}: {}\n", alert.at, alert.detail));
        }
    }
    for ring in lab.report_rings().await? {
        text.push_str(&format!(
            "  {} wave {}{} by {}: {}, {} devices, {} updated, {} failed{}\n",
            ring.platform,
            ring.wave,
            ring.ring.map(|r| format!(" ({r})")).unwrap_or_default(),
            ring.deadline,
            ring.state,
            ring.devices,
            ring.updated,
            ring.failed,
            ring.halt_reason
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
    }
    text.push_str(&format!(
        "ran {} steps to {}; {} device requests, {} pushes\n",
        stats.steps, stats.ended_at, stats.device_requests, stats.pushes
    ));
    let seconds: Vec<String> = stats
        .seconds
        .iter()
        .map(|(part, secs)| format!("{part} {secs:.1} s"))
        .collect();
    text.push_str(&format!("wall time: {}\n\n", seconds.join(", ")));
    let rows: Vec<Vec<String>> = summary
        .iter()
        .map(|(state, count)| vec![state.clone(), count.to_string()])
        .collect();
    text.push_str(&table(&["STATE", "DEVICES"], &rows));
    text.push_str(&format!(
        "\n{} alerts; run with --json for every device's timeline\n",
        lab.report_alerts().await?.len()
    ));
    Ok(text)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("updraft-lab-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
