//! `updraft lab` and `updraft serve`.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

use std::io::Write;
use updraft_feed::{BUNDLED_FEED, LookupResponse};
use updraft_lab::{Lab, LabConfig, LabStats};
use updraft_server::{
    ApnsPusher, AppState, Db, Limits, NoPusher, Pusher, SealingKey, ServerConfig,
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
            release.build.as_deref().unwrap_or("-")
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

#[derive(Args)]
pub struct ServeArgs {
    /// The server's SQLite database (created if absent). The bootstrap-token key goes beside it.
    #[arg(long)]
    db: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: String,
    /// The admin API key (HTTP Basic user `kmfddm`). Also read from UPDRAFT_API_KEY.
    #[arg(long, env = "UPDRAFT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The MDM push certificate and its key, PEM, for APNs.
    #[arg(long)]
    apns_identity: Option<PathBuf>,
    /// Use APNs' sandbox instead of production.
    #[arg(long)]
    apns_sandbox: bool,
    /// Push through this APNs-shaped HTTP gateway instead (a simulator's).
    #[arg(long, conflicts_with = "apns_identity")]
    push_gateway: Option<String>,
    /// Require NanoMDM's X-Hmac-Signature on forwarded DDM requests, with this key.
    #[arg(long, env = "UPDRAFT_DDM_HMAC_KEY", hide_env_values = true)]
    hmac_key: Option<String>,
    webhook: None,
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one (a service manager's stop).
async fn shutdown_requested() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    eprintln!("updraft serve: stopping (finishing requests in flight, then the writer)");
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = Db::open(&args.db).await?;
        let key_path = args.db.with_extension("key");
        let sealing_key = SealingKey::load_or_create(&key_path)
            .with_context(|| format!("bootstrap-token key {}", key_path.display()))?;
        let pusher: Arc<dyn Pusher> = match (&args.apns_identity, &args.push_gateway) {
            (Some(path), _) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let host = if args.apns_sandbox {
                    updraft_server::push::APNS_SANDBOX
                } else {
                    updraft_server::push::APNS_PRODUCTION
                };
                Arc::new(ApnsPusher::apple(host, &pem)?)
            }
            (None, Some(url)) => Arc::new(ApnsPusher::gateway(url)?),
            (None, None) => {
                eprintln!("warning: no --apns-identity: devices will not be pushed");
                Arc::new(NoPusher)
            }
        };
        if args.api_key.is_none() {
            eprintln!("warning: no --api-key: the admin API answers 403");
        }
        let state = AppState::new(ServerConfig {
            db,
            clock: Arc::new(updraft_clock::SystemClock),
            pusher,
            sealing_key,
            api_key: args.api_key.clone(),
            hmac_key: args.hmac_key.clone().map(String::into_bytes),
            limits: Limits::default(),
        });
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        eprintln!(
            "updraft serve: listening on http://{}",
            listener.local_addr()?
        );
        axum::serve(listener, updraft_server::app(state.clone()))
            .with_graceful_shutdown(shutdown_requested())
            .await?;
        state
            .shut_down()
            .await
            .map_err(|error| anyhow::anyhow!("stopping the server's writer: {error}"))?;
        eprintln!("updraft serve: stopped");
        Ok(())
    })
}
