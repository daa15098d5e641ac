//! `updraft fleet`: a simulated fleet on its own, enrolled into a DDM server started elsewhere,
//! on a clock that runs fast: for trying a console (the desktop's, or any KMFDDM console) on a
//! server without Apple devices.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

use updraft_clock::{Clock, ManualClock, SharedClock};
use updraft_feed::{BUNDLED_FEED, LookupResponse};
use updraft_sim::{Endpoints, Fleet, FleetPlan, IdentityIssuer};

#[derive(Args)]
pub struct FleetArgs {
    /// The server's MDM URL (one endpoint for check-ins and commands, as NanoMDM's `/mdm`).
    #[arg(long)]
    mdm_url: String,
    /// Devices in the fleet.
    #[arg(long, default_value_t = 30)]
    devices: usize,
    /// Seed: the same seed gives the same fleet and faults.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Share of devices with a fault (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    failure_rate: f64,
    /// Simulated minutes per real second (the fleet's clock starts now).
    #[arg(long, default_value_t = 60)]
    speed: i64,
    /// Take APNs-shaped pushes here (start the server with --push-gateway http://ADDR).
    #[arg(long)]
    gateway_listen: Option<std::net::SocketAddr>,
    /// Simulated minutes between a device's own connections, pushed or not.
    #[arg(long, default_value_t = 60)]
    connect_every: i64,
    /// The CA (PEM) the server takes device identities from, and its key: devices then sign.
    #[arg(long, requires = "identity_ca_key")]
    identity_ca: Option<PathBuf>,
    /// That CA's key (PEM).
    #[arg(long, requires = "identity_ca")]
    identity_ca_key: Option<PathBuf>,
}

pub fn fleet(args: FleetArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.failure_rate) {
        anyhow::bail!(
            "--failure-rate {} is not between 0 and 1",
            args.failure_rate
        );
    }
    if args.speed <= 0 || args.connect_every <= 0 || args.devices == 0 {
        anyhow::bail!("--speed, --connect-every and --devices must be above 0");
    }
    let identities = match (&args.identity_ca, &args.identity_ca_key) {
        (Some(certificate), Some(key)) => {
            let read = |path: &PathBuf| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            Some(Arc::new(
                IdentityIssuer::from_pem(&read(certificate)?, &read(key)?)
                    .context("--identity-ca")?,
            ))
        }
        _ => None,
    };
    let feed = LookupResponse::parse(BUNDLED_FEED.as_bytes()).context("the bundled feed")?;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let shared: SharedClock = clock.clone();
    let specs = updraft_sim::generate(
        &FleetPlan {
            devices: args.devices,
            seed: args.seed,
            failure_rate: args.failure_rate,
            start: clock.now().date_naive(),
        },
        &feed,
    );
    let endpoints = Endpoints {
        checkin_url: args.mdm_url.clone(),
        connect_url: args.mdm_url.clone(),
        identities,
        connect_every: Some(chrono::Duration::minutes(args.connect_every)),
        software: Arc::new(updraft_sim::SoftwareCatalog::from_feed(&feed)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let fleet = Fleet::with_endpoints(specs, endpoints, shared)?;
        if let Some(address) = args.gateway_listen {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("--gateway-listen {address}"))?;
            let gateway = fleet.gateway();
            tokio::spawn(async move { axum::serve(listener, gateway).await });
        }
        eprintln!(
            "updraft fleet: {} devices against {}, {} simulated minutes a second",
            args.devices, args.mdm_url, args.speed
        );
        let step = std::time::Duration::from_millis(250);
        let mut reported = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                () = tokio::time::sleep(step) => {}
            }
            clock.advance(chrono::Duration::seconds(args.speed * 60 / 4));
            fleet.tick().await;
            let errors = fleet.errors();
            for error in &errors[reported..] {
                eprintln!("updraft fleet: {error}");
            }
            reported = errors.len();
        }
    })
}
