//! `updraft console`: the console without its window, following a real server with the same
//! runtime as the desktop (`updraft-runtime`) and printing what the desktop would show, one JSON
//! line an event: for a terminal, a service manager's journal, or a script.

use anyhow::Context;
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use updraft_app::Session;
use updraft_app::settings::{MemorySecrets, SecretStore, ServerSettings, StatusChoice};
use updraft_clock::SharedClock;
use updraft_feed::{BUNDLED_FEED, LookupResponse};
use updraft_mdm::Preset;
use updraft_runtime::{Cadence, Event, Runtime};

#[derive(Args)]
pub struct ConsoleArgs {
    /// The console's cache (created if missing).
    #[arg(long)]
    db: PathBuf,
    /// The server's address; its API key in UPDRAFT_API_KEY.
    #[arg(long)]
    server: String,
    /// What the server is: nanohub, kmfddm or updraft (its API prefix and user).
    #[arg(long, default_value = "updraft", value_parser = ["nanohub", "kmfddm", "updraft"])]
    preset: String,
    /// A private CA (PEM) the server's TLS certificate chains to.
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// Status from an `updraft serve --companion` at this address (key in
    /// UPDRAFT_COMPANION_API_KEY) instead of the server's own feed.
    #[arg(long, conflicts_with = "poll_list")]
    companion: Option<String>,
    /// Status by polling the server for the enrollments in this list (CSV: id, name, time zone).
    #[arg(long)]
    poll_list: Option<PathBuf>,
    /// Minutes between polls.
    #[arg(long, default_value_t = 5)]
    poll_interval: u32,
    /// Seconds between two reads of the server.
    #[arg(long, default_value_t = 30)]
    sync_seconds: i64,
    /// Stop after this many turns of half a second (default: run until Ctrl-C).
    #[arg(long)]
    turns: Option<u64>,
}

pub fn console(args: ConsoleArgs) -> anyhow::Result<()> {
    let api_key = std::env::var("UPDRAFT_API_KEY")
        .map_err(|_| anyhow::anyhow!("--server: set its API key in UPDRAFT_API_KEY"))?;
    let secrets = MemorySecrets::default();
    let mut server = ServerSettings::updraft(&args.server);
    server.preset = match args.preset.as_str() {
        "nanohub" => Preset::NanoHub,
        "kmfddm" => Preset::Kmfddm,
        _ => Preset::Updraft,
    };
    if let Some(path) = &args.server_ca {
        server.ca_pem = Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--server-ca {}", path.display()))?,
        );
    }
    if let Some(url) = &args.companion {
        let key = std::env::var("UPDRAFT_COMPANION_API_KEY").map_err(|_| {
            anyhow::anyhow!("--companion: set its API key in UPDRAFT_COMPANION_API_KEY")
        })?;
        secrets.set_api_key(url, &key).map_err(anyhow::Error::msg)?;
        server.status = StatusChoice::Companion { url: url.clone() };
    }
    if let Some(path) = &args.poll_list {
        server.status = StatusChoice::Polling {
            enrollments: std::fs::read_to_string(path)
                .with_context(|| format!("--poll-list {}", path.display()))?,
            every_minutes: args.poll_interval,
        };
    }
    secrets
        .set_api_key(&server.url, &api_key)
        .map_err(anyhow::Error::msg)?;
    let clock: SharedClock = Arc::new(updraft_clock::SystemClock);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let backend = server.backend(&secrets, clock.clone())?;
        let feed = LookupResponse::parse(BUNDLED_FEED.as_bytes()).context("the bundled feed")?;
        let session = Session::server(&args.db, backend, clock.clone(), &feed)
            .await?
            .acting_as(&updraft_app::os_account());
        let cadence = Cadence {
            server_refresh: chrono::Duration::seconds(args.sync_seconds.max(1)),
            ..Cadence::default()
        };
        let mut runtime = Runtime::new(Arc::new(session), clock, cadence, None).await;
        let mut out = std::io::stdout().lock();
        let mut turns = 0;
        while args.turns.is_none_or(|limit| turns < limit) {
            turns += 1;
            for event in runtime.turn(0).await {
                let line = match event {
                    Event::FleetChanged(at) => json!({"event": "fleet_changed", "at": at}),
                    Event::Notice(notice) => json!({"event": "notice", "notice": notice}),
                    Event::AlertCount(count) => json!({"event": "alerts", "count": count}),
                    Event::Health(health) => json!({"event": "sync_health", "health": health}),
                };
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            }
        }
        anyhow::Ok(())
    })
}
