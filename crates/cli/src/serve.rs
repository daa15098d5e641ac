//! `updraft serve`: the DDM server for real devices, and `updraft serve profile`, the
//! enrollment profile they install.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use updraft_ddm::StatusBounds;
use updraft_server::listen::TlsSettings;
use updraft_server::profile::{IdentitySource, ProfileSettings};
use updraft_server::push_certificate::PushCertificate;
use updraft_server::{
    ApnsPusher, AppState, Db, DdmForwarding, DeviceTrust, Enqueuer, Limits, NoPusher, Pusher,
    SealingKey, ServerConfig, WebhookConfig,
};

#[derive(Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_long_help = FIXED_LIMITS
)]
pub struct ServeArgs {
    #[command(subcommand)]
    action: Option<ServeAction>,
    /// The server's SQLite database (created if absent). The bootstrap-token key goes beside it.
    #[arg(long, required = true)]
    db: Option<PathBuf>,
    /// Address to listen on. Plain HTTP is served on loopback only, unless --insecure-http:
    /// elsewhere give --tls-cert, or put a TLS proxy in front on the same host.
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: SocketAddr,
    /// The admin API key (HTTP Basic user `kmfddm`). Also read from UPDRAFT_API_KEY.
    #[arg(long, env = "UPDRAFT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(flatten)]
    devices: DeviceArgs,
    #[command(flatten)]
    push: PushArgs,
    /// Serve /ddm/* to a NanoMDM in front (its -dm URL), requiring its X-Hmac-Signature made
    /// with this key. Also read from UPDRAFT_DDM_HMAC_KEY.
    #[arg(long, env = "UPDRAFT_DDM_HMAC_KEY", hide_env_values = true)]
    hmac_key: Option<String>,
    /// Serve /ddm/* without the HMAC: whoever reaches it can speak for any device. Only behind
    /// a NanoMDM on a private link.
    #[arg(long, conflicts_with = "hmac_key")]
    insecure_ddm_forwarding: bool,
    /// Serve plain HTTP on an address other than loopback (devices' traffic unencrypted).
    #[arg(long)]
    insecure_http: bool,
    #[command(flatten)]
    companion: CompanionArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

const FIXED_LIMITS: &str = "Fixed limits: property lists nest at most 64 levels of arrays and \
dictionaries and expand to at most twice their bytes in elements; JSON nests at most 128 levels.";

#[derive(Subcommand)]
enum ServeAction {
    /// Write the enrollment profile (.mobileconfig) devices install to enroll into this server.
    Profile(Box<ProfileArgs>),
    /// Create a device CA (certificate and key, PEM) for --device-ca and --device-ca-key, when
    /// there is no SCEP or ACME CA to use.
    DeviceCa(DeviceCaArgs),
}

#[derive(Args)]
struct DeviceCaArgs {
    /// Where to write the CA certificate (PEM): give it to `updraft serve --device-ca`.
    #[arg(long)]
    cert_out: PathBuf,
    /// Where to write its private key (PEM, readable by its owner only): keep it off the server.
    #[arg(long)]
    key_out: PathBuf,
    /// The CA's name.
    #[arg(long, default_value = "Updraft device CA")]
    name: String,
    /// Years the CA is valid.
    #[arg(long, default_value_t = 10)]
    years: i64,
}

#[derive(Args)]
struct DeviceArgs {
    /// The CA (PEM) that issues device identities (SCEP, ACME or --device-ca-key); repeat for
    /// several. Every device request must prove an identity from one of them.
    #[arg(long = "device-ca")]
    device_ca: Vec<PathBuf>,
    /// Take the device's certificate from this header, set by a TLS proxy in front that asks
    /// devices for client certificates (nginx: $ssl_client_escaped_cert). Only when the proxy
    /// is the sole way in and overwrites the header.
    #[arg(long)]
    cert_header: Option<String>,
    /// This server's TLS certificate chain (PEM): serve HTTPS. With --device-ca, devices are
    /// asked for their client certificate too (optional: Mdm-Signature also proves them).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Args)]
struct PushArgs {
    /// The MDM push certificate and its key in one PEM file.
    #[arg(long, conflicts_with = "apns_p12")]
    apns_identity: Option<PathBuf>,
    /// The MDM push certificate as Keychain Access exports it (.p12); its password in
    /// UPDRAFT_APNS_P12_PASSWORD.
    #[arg(long)]
    apns_p12: Option<PathBuf>,
    /// Use APNs' sandbox instead of production.
    #[arg(long)]
    apns_sandbox: bool,
    /// Push through this APNs-shaped HTTP gateway instead (a simulator's).
    #[arg(long, conflicts_with_all = ["apns_identity", "apns_p12"])]
    push_gateway: Option<String>,
}

#[derive(Args)]
struct CompanionArgs {
    /// Take NanoMDM's webhook events at POST /webhook (`nanohub -webhook-url .../webhook`):
    /// this server then keeps enrollments, statuses and the status-changes feed for a NanoHUB.
    #[arg(long)]
    companion: bool,
    /// NanoMDM's -webhook-hmac-key: events must carry its X-Hmac-Signature.
    #[arg(
        long,
        env = "UPDRAFT_WEBHOOK_HMAC_KEY",
        hide_env_values = true,
        requires = "companion"
    )]
    webhook_hmac_key: Option<String>,
    /// NanoMDM's API (`https://hub/api/v1/nanomdm`), to ask new enrollments their name and time
    /// zone (DeviceInformation); its key in UPDRAFT_NANOMDM_API_KEY.
    #[arg(long, requires = "companion")]
    nanomdm_api: Option<String>,
    /// The HTTP Basic user of --nanomdm-api.
    #[arg(long, default_value = "nanohub")]
    nanomdm_user: String,
}

/// Every bound of `Limits`, with its default.
#[derive(Args)]
struct LimitArgs {
    /// Largest check-in or command-report body, bytes.
    #[arg(long, default_value_t = Limits::default().max_checkin_bytes)]
    max_checkin_bytes: usize,
    /// Largest status report, bytes.
    #[arg(long, default_value_t = Limits::default().max_status_bytes)]
    max_status_bytes: usize,
    /// Largest admin API body, bytes.
    #[arg(long, default_value_t = Limits::default().max_admin_bytes)]
    max_admin_bytes: usize,
    /// Status items of names Updraft does not read kept per device; more are refused and
    /// listed in status-errors.
    #[arg(long, default_value_t = StatusBounds::default().max_unknown_items)]
    max_unknown_status_items: usize,
    /// Their total size per device, bytes.
    #[arg(long, default_value_t = StatusBounds::default().max_unknown_bytes)]
    max_unknown_status_bytes: usize,
    /// Nesting of a status item (dotted name parts plus its value's depth).
    #[arg(long, default_value_t = StatusBounds::default().max_name_parts)]
    max_status_item_depth: usize,
    /// Status errors kept per device.
    #[arg(long, default_value_t = StatusBounds::default().max_errors)]
    max_status_errors: usize,
    /// Seconds for a request's head to arrive; also how long an idle connection stays open.
    #[arg(long, default_value_t = Limits::default().header_timeout.as_secs())]
    header_timeout: u64,
    /// Seconds for a whole request, body and answer (408 after).
    #[arg(long, default_value_t = Limits::default().request_timeout.as_secs())]
    request_timeout: u64,
    /// Connections served at once (default: the descriptor limit less 128, at most 4096);
    /// more wait in the listen queue.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_checkin_bytes: self.max_checkin_bytes,
            max_status_bytes: self.max_status_bytes,
            max_admin_bytes: self.max_admin_bytes,
            status: StatusBounds {
                max_name_parts: self.max_status_item_depth,
                max_unknown_items: self.max_unknown_status_items,
                max_unknown_bytes: self.max_unknown_status_bytes,
                max_errors: self.max_status_errors,
            },
            header_timeout: Duration::from_secs(self.header_timeout.max(1)),
            request_timeout: Duration::from_secs(self.request_timeout.max(1)),
            max_connections: self.max_connections.max(1),
            ..Limits::default()
        }
    }
}

#[derive(Args)]
struct ProfileArgs {
    /// The server's public base URL, as devices reach it (`https://mdm.example.com`).
    #[arg(long)]
    url: String,
    /// The push certificate (PEM, with or without its key), to read its topic.
    #[arg(long, conflicts_with_all = ["apns_p12", "topic"])]
    apns_identity: Option<PathBuf>,
    /// The push certificate as a .p12; its password in UPDRAFT_APNS_P12_PASSWORD.
    #[arg(long, conflicts_with = "topic")]
    apns_p12: Option<PathBuf>,
    /// The push topic itself (`com.apple.mgmt.External.…`), instead of a certificate.
    #[arg(long)]
    topic: Option<String>,
    /// Devices get their identity from this SCEP server.
    #[arg(long, conflicts_with_all = ["acme_url", "device_ca_key"])]
    scep_url: Option<String>,
    /// The SCEP challenge; also read from UPDRAFT_SCEP_CHALLENGE.
    #[arg(long, env = "UPDRAFT_SCEP_CHALLENGE", hide_env_values = true)]
    scep_challenge: Option<String>,
    /// Devices get their identity from this ACME directory (hardware-bound key).
    #[arg(long, conflicts_with = "device_ca_key", requires = "acme_client_id")]
    acme_url: Option<String>,
    /// The ACME client identifier.
    #[arg(long)]
    acme_client_id: Option<String>,
    /// The device CA (PEM): with --device-ca-key, an identity is issued into the profile
    /// (tests and small deployments: whoever has the profile has the identity). With
    /// --scep-url, its fingerprint is pinned.
    #[arg(long)]
    device_ca: Option<PathBuf>,
    /// The device CA's private key (PEM). The identity is bound to the first device that
    /// enrolls with it: write one profile per device.
    #[arg(long, requires = "device_ca")]
    device_ca_key: Option<PathBuf>,
    /// The issued identity's common name.
    #[arg(long, default_value = "Updraft device")]
    identity_name: String,
    /// Days the issued identity is valid.
    #[arg(long, default_value_t = 825)]
    identity_days: i64,
    /// The server's private TLS CA (PEM), installed as a trusted root.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The organization shown on the device.
    #[arg(long, default_value = "Updraft")]
    organization: String,
    /// Reverse-DNS prefix of the payload identifiers.
    #[arg(long, default_value = "com.updraft.enrollment")]
    identifier: String,
    /// A development push certificate (APNs sandbox).
    #[arg(long)]
    apns_sandbox: bool,
    /// Where to write the profile.
    #[arg(long)]
    out: PathBuf,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn push_certificate(
    identity: Option<&Path>,
    p12: Option<&Path>,
) -> anyhow::Result<Option<PushCertificate>> {
    let loaded = match (identity, p12) {
        (Some(path), _) => PushCertificate::from_pem(&read(path)?)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--apns-identity {}", path.display()))?,
        (None, Some(path)) => {
            let password = std::env::var("UPDRAFT_APNS_P12_PASSWORD").unwrap_or_default();
            PushCertificate::from_p12(&read(path)?, &password)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--apns-p12 {}", path.display()))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(loaded))
}

/// The webhook companion's settings, if `--companion`.
fn companion(args: &CompanionArgs) -> anyhow::Result<Option<WebhookConfig>> {
    if !args.companion {
        return Ok(None);
    }
    if args.webhook_hmac_key.is_none() {
        eprintln!(
            "warning: no --webhook-hmac-key: anyone who can reach /webhook can forge a device's status"
        );
    }
    let enqueue = match &args.nanomdm_api {
        Some(url) => Some(Enqueuer {
            url: format!("{}/enqueue", url.trim_end_matches('/')),
            user: args.nanomdm_user.clone(),
            key: std::env::var("UPDRAFT_NANOMDM_API_KEY").map_err(|_| {
                anyhow::anyhow!("--nanomdm-api: set its key in UPDRAFT_NANOMDM_API_KEY")
            })?,
        }),
        None => {
            eprintln!("warning: no --nanomdm-api: devices' names and time zones will not be asked");
            None
        }
    };
    Ok(Some(WebhookConfig {
        hmac_key: args.webhook_hmac_key.clone().map(String::into_bytes),
        enqueue,
    }))
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
    match &args.action {
        Some(ServeAction::Profile(profile)) => return write_profile(profile),
        Some(ServeAction::DeviceCa(ca)) => return write_device_ca(ca),
        None => {}
    }
    let db_path = args.db.clone().context("--db is required")?;
    let tls_files = match (&args.devices.tls_cert, &args.devices.tls_key) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        _ => None,
    };
    if tls_files.is_none() && !args.listen.ip().is_loopback() && !args.insecure_http {
        anyhow::bail!(
            "--listen {}: plain HTTP is served on loopback only; give --tls-cert and --tls-key, \
             put a TLS proxy in front on this host (listen on 127.0.0.1), or pass --insecure-http",
            args.listen
        );
    }
    let device_trust = if args.devices.device_ca.is_empty() {
        eprintln!(
            "warning: no --device-ca: every device request is refused (devices cannot prove who they are)"
        );
        None
    } else {
        let pems = args
            .devices
            .device_ca
            .iter()
            .map(|path| read(path))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Some(
            DeviceTrust::from_pem(&pems, args.devices.cert_header.as_deref())
                .map_err(anyhow::Error::msg)
                .context("--device-ca")?,
        )
    };
    let tls = match &tls_files {
        Some((cert, key)) => Some(
            TlsSettings::from_pem(
                cert,
                key,
                device_trust
                    .as_ref()
                    .map(DeviceTrust::certificates)
                    .unwrap_or_default(),
            )
            .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let forwarding = match (&args.hmac_key, args.insecure_ddm_forwarding) {
        (Some(key), _) => DdmForwarding::Signed(key.clone().into_bytes()),
        (None, true) => {
            eprintln!(
                "warning: --insecure-ddm-forwarding: whoever reaches /ddm/* can speak for any device"
            );
            DdmForwarding::Unsigned
        }
        (None, false) => DdmForwarding::Off,
    };
    let push_certificate = push_certificate(
        args.push.apns_identity.as_deref(),
        args.push.apns_p12.as_deref(),
    )?;
    let limits = args.limits.limits();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = Db::open(&db_path).await?;
        let key_path = db_path.with_extension("key");
        let sealing_key = SealingKey::load_or_create(&key_path)
            .with_context(|| format!("bootstrap-token key {}", key_path.display()))?;
        let pusher: Arc<dyn Pusher> = match (&push_certificate, &args.push.push_gateway) {
            (Some(certificate), _) => {
                let info = &certificate.info;
                let days = (info.not_after - chrono::Utc::now()).num_days();
                eprintln!(
                    "updraft serve: push topic {}, certificate expires {} ({days} days)",
                    info.topic,
                    info.not_after.format("%Y-%m-%d")
                );
                if days < 30 {
                    eprintln!(
                        "warning: the push certificate expires in {days} days: renew it at \
                         identity.apple.com with the same Apple ID, or every device must enroll again"
                    );
                }
                let host = if args.push.apns_sandbox {
                    updraft_server::push::APNS_SANDBOX
                } else {
                    updraft_server::push::APNS_PRODUCTION
                };
                Arc::new(ApnsPusher::apple(host, &certificate.identity_pem)?)
            }
            (None, Some(url)) => Arc::new(ApnsPusher::gateway(url)?),
            (None, None) => {
                eprintln!("warning: no --apns-identity or --apns-p12: devices will not be pushed");
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
            forwarding,
            device_trust,
            push_certificate: push_certificate.map(|certificate| certificate.info),
            webhook: companion(&args.companion)?,
            limits,
        });
        let listener = updraft_server::listen::bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!(
            "updraft serve: listening on {scheme}://{} (at most {} connections)",
            listener.local_addr()?,
            limits.max_connections
        );
        updraft_server::listen::serve(
            listener,
            updraft_server::app(state.clone()),
            tls,
            limits,
            shutdown_requested(),
        )
        .await?;
        state
            .shut_down()
            .await
            .map_err(|error| anyhow::anyhow!("stopping the server's writer: {error}"))?;
        eprintln!("updraft serve: stopped");
        Ok(())
    })
}

fn write_profile(args: &ProfileArgs) -> anyhow::Result<()> {
    let topic = match (&args.topic, &args.apns_identity, &args.apns_p12) {
        (Some(topic), _, _) => topic.clone(),
        (None, identity, p12) => {
            let certificate =
                match identity {
                    Some(path) => {
                        updraft_server::push_certificate::PushCertificateInfo::from_certificate_pem(
                            &read(path)?,
                        )
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("--apns-identity {}", path.display()))?
                    }
                    None => push_certificate(None, p12.as_deref())?
                        .context(
                            "give the push certificate (--apns-identity or --apns-p12) or --topic",
                        )?
                        .info,
                };
            certificate.topic
        }
    };
    if !topic.starts_with("com.apple.mgmt.") {
        anyhow::bail!(
            "the push topic {topic:?} does not start with com.apple.mgmt.: is it an MDM push certificate?"
        );
    }
    let device_ca = args.device_ca.as_deref().map(read).transpose()?;
    let identity = if let Some(url) = &args.scep_url {
        IdentitySource::Scep {
            url: url.clone(),
            challenge: args.scep_challenge.clone(),
            ca_fingerprint: device_ca
                .as_deref()
                .map(updraft_server::profile::certificate_fingerprint)
                .transpose()
                .map_err(anyhow::Error::msg)?,
        }
    } else if let Some(url) = &args.acme_url {
        IdentitySource::Acme {
            directory_url: url.clone(),
            client_identifier: args.acme_client_id.clone().unwrap_or_default(),
        }
    } else if let (Some(ca), Some(key)) = (&device_ca, &args.device_ca_key) {
        let password = random_password();
        let p12 = updraft_server::profile::issue_pkcs12(
            &String::from_utf8_lossy(ca),
            &String::from_utf8_lossy(&read(key)?),
            &args.identity_name,
            args.identity_days,
            &password,
        )
        .map_err(anyhow::Error::msg)?;
        IdentitySource::Pkcs12 { p12, password }
    } else {
        anyhow::bail!(
            "say where devices get their identity: --scep-url, --acme-url, or --device-ca with --device-ca-key"
        );
    };
    let tls_anchor = args
        .tls_ca
        .as_deref()
        .map(|path| {
            updraft_server::profile::certificate_der(&read(path)?)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--tls-ca {}", path.display()))
        })
        .transpose()?;
    let settings = ProfileSettings {
        base_url: args.url.clone(),
        topic,
        identifier: args.identifier.clone(),
        organization: args.organization.clone(),
        identity,
        tls_anchor,
        development_apns: args.apns_sandbox,
    };
    let profile = updraft_server::profile::enrollment_profile(&settings, &mut || {
        updraft_server::db::new_uuid().to_uppercase()
    });
    std::fs::write(&args.out, profile)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    // A profile with the identity in it is that device's key: its owner only may read it.
    #[cfg(unix)]
    if matches!(settings.identity, IdentitySource::Pkcs12 { .. }) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&args.out, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", args.out.display()))?;
    }
    eprintln!(
        "updraft serve profile: wrote {} (devices check in at {}/mdm/checkin)",
        args.out.display(),
        args.url.trim_end_matches('/')
    );
    Ok(())
}

fn write_device_ca(args: &DeviceCaArgs) -> anyhow::Result<()> {
    if args.years < 1 {
        anyhow::bail!("--years {} must be at least 1", args.years);
    }
    let (certificate, key) = updraft_server::profile::new_device_ca(&args.name, args.years)
        .map_err(anyhow::Error::msg)?;
    write_new(&args.key_out, key.as_bytes(), true)?;
    write_new(&args.cert_out, certificate.as_bytes(), false)?;
    eprintln!(
        "updraft serve device-ca: wrote {} and its key {}",
        args.cert_out.display(),
        args.key_out.display()
    );
    Ok(())
}

/// Writes a file that must not exist yet (a CA is never overwritten by mistake); a secret
/// one is readable by its owner only.
fn write_new(path: &Path, contents: &[u8], secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).with_context(|| {
        format!(
            "cannot create {} (an existing file is never overwritten)",
            path.display()
        )
    })?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn random_password() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(b"abcdefghjkmnpqrstuvwxyz23456789"[rng.random_range(0..31)]))
        .collect()
}
