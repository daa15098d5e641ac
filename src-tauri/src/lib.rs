//! The Tauri shell: commands that forward to [`updraft_app::Session`], the lab's clock loop,
//! events to the UI and desktop notices. Nothing here decides anything; `updraft-app` does.

#[cfg(test)]
mod bindings;
mod commands;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tauri::{Emitter, Manager};
use tokio::sync::OnceCell;

use updraft_app::Session;
use updraft_app::notices::Notice;
use updraft_app::settings::{SecretStore, Settings};
use updraft_runtime::{Cadence, Event as RuntimeEvent};

/// Simulated minutes per real second the lab's clock runs at on a first start.
const DEFAULT_SPEED: i64 = 15;
/// How often the clock loop runs.
const TICK: Duration = Duration::from_millis(500);

/// What the commands share.
pub struct Shell {
    session: OnceCell<Arc<Session>>,
    start: Start,
    settings_file: PathBuf,
    /// The log file of today (a new one each day, the last 7 kept), which Settings shows.
    log_file: PathBuf,
    /// Simulated minutes per real second; 0 stops the clock.
    speed: AtomicI64,
    /// The rollout wizard holds the lab's clock while it is open, so the deadline it proposed at
    /// its first step is still ahead at its last.
    clock_held: std::sync::atomic::AtomicBool,
    /// Flushes the log file's writer when the app ends.
    _log_guard: Option<tracing_appender::non_blocking::WorkerGuard>,
    /// Whether the last sync with the server worked, for a window that asks.
    health: std::sync::Mutex<updraft_runtime::SyncHealth>,
}

impl Shell {
    /// The session, starting the lab on first use. Every caller waits for the same start.
    pub async fn session(&self) -> Result<Arc<Session>, String> {
        self.session
            .get_or_try_init(|| async {
                match &self.start {
                    Start::Lab {
                        dir,
                        devices,
                        failure_rate,
                    } => Session::lab_with_faults(
                        dir,
                        *devices,
                        updraft_app::LAB_SEED,
                        *failure_rate,
                    )
                    .await
                    .map_err(|e| format!("the lab could not start: {e}")),
                    Start::Server { db, backend } => open_server(db, backend.clone())
                        .await
                        .map_err(|e| format!("the console could not open {}: {e:#}", db.display())),
                    Start::Failed(reason) => Err(reason.clone()),
                }
                .map(|session| Arc::new(session.acting_as(&updraft_app::os_account())))
            })
            .await
            .cloned()
    }
}

/// What the console opens on.
enum Start {
    /// The lab, started over in `dir`.
    Lab {
        dir: PathBuf,
        devices: usize,
        failure_rate: f64,
    },
    /// The cache at `db`, following a KMFDDM-compatible server.
    Server {
        db: PathBuf,
        backend: Arc<updraft_mdm::Deployment>,
    },
    /// The settings name a server the console cannot open (the UI says why; Settings can go
    /// back to the lab).
    Failed(String),
}

/// The saved lookup-service answer, beside the console's cache.
fn feed_file(db: &std::path::Path) -> PathBuf {
    db.with_file_name("feed.json")
}

/// API keys in the OS keychain: Keychain on macOS, Credential Manager on Windows, the Secret
/// Service on Linux. One entry per server address.
pub struct Keychain;

const KEYCHAIN_SERVICE: &str = "com.updraft.console";

/// Runs a keychain call on a thread of its own: the Secret Service client (zbus) blocks on a
/// runtime of its own, which panics on a thread that drives tokio's tasks (an async command).
fn off_runtime<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(call)
        .join()
        .map_err(|_| "the keychain call failed".to_owned())?
}

impl SecretStore for Keychain {
    fn api_key(&self, url: &str) -> Result<Option<String>, String> {
        let url = url.to_owned();
        off_runtime(move || {
            let entry = keyring::Entry::new(KEYCHAIN_SERVICE, &url).map_err(|e| e.to_string())?;
            match entry.get_password() {
                Ok(key) => Ok(Some(key)),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(error) => Err(error.to_string()),
            }
        })
    }

    fn set_api_key(&self, url: &str, api_key: &str) -> Result<(), String> {
        let (url, api_key) = (url.to_owned(), api_key.to_owned());
        off_runtime(move || {
            keyring::Entry::new(KEYCHAIN_SERVICE, &url)
                .and_then(|entry| entry.set_password(&api_key))
                .map_err(|e| e.to_string())
        })
    }
}

async fn open_server(
    db: &std::path::Path,
    backend: Arc<updraft_mdm::Deployment>,
) -> anyhow::Result<Session> {
    // The last good lookup-service answer, else the bundled capture until the first poll.
    let saved = std::fs::read(feed_file(db))
        .ok()
        .and_then(|bytes| updraft_feed::LookupResponse::parse_saved(&bytes).ok())
        .map(|(feed, _)| feed);
    let feed = match saved {
        Some(feed) => feed,
        None => updraft_feed::LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes())?,
    };
    let clock: updraft_clock::SharedClock = Arc::new(updraft_clock::SystemClock);
    // Likewise SOFA's last good feeds, beside it.
    let sofa = saved_sofa(db.parent().unwrap_or(std::path::Path::new(".")))?;
    Ok(Session::server(db, backend, clock, &feed)
        .await?
        .with_sofa(sofa))
}

/// Logs to a file a day in `folder` (the last 7 kept), at `info` unless `RUST_LOG` says
/// otherwise, and to stderr; returns today's file, for Settings to show.
fn install_logging(
    folder: &std::path::Path,
) -> (PathBuf, Option<tracing_appender::non_blocking::WorkerGuard>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let today = folder.join(format!(
        "updraft.log.{}",
        chrono::Utc::now().format("%Y-%m-%d")
    ));
    let _ = std::fs::create_dir_all(folder);
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("updraft.log")
        .max_log_files(7)
        .build(folder);
    let (file_layer, guard) = match appender {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(writer),
                ),
                Some(guard),
            )
        }
        Err(error) => {
            eprintln!("updraft: no log file in {}: {error}", folder.display());
            (None, None)
        }
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();
    (today, guard)
}

fn env_number(name: &str) -> Option<i64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Starts the app.
pub fn run() {
    // notify-rust names the sender by bundle identifier on macOS and by AppUserModelID on Windows;
    // left alone, Updraft's notices would come from Terminal or PowerShell.
    #[cfg(target_os = "macos")]
    let _ = notify_rust::set_application(APP_IDENTIFIER);
    tauri::Builder::default()
        .setup(|app| {
            // The app data folder holds the console's cache; UPDRAFT_DATA_DIR moves it (tests).
            let data = match std::env::var_os("UPDRAFT_DATA_DIR") {
                Some(dir) => PathBuf::from(dir),
                None => app.path().app_data_dir()?,
            };
            std::fs::create_dir_all(&data)?;
            let (log_file, log_guard) = install_logging(&data.join("logs"));
            #[cfg(target_os = "linux")]
            draw_without_compositing_when_no_gpu(app);
            let settings_file = data.join("settings.json");
            let lab = Start::Lab {
                dir: data.join("lab"),
                devices: env_number("UPDRAFT_LAB_DEVICES")
                    .map_or(updraft_app::LAB_DEVICES, |n| n.clamp(1, 200_000) as usize),
                failure_rate: env_number("UPDRAFT_LAB_FAILURE_PERCENT")
                    .map_or(updraft_app::LAB_FAILURE_RATE, |n| {
                        n.clamp(0, 100) as f64 / 100.0
                    }),
            };
            // UPDRAFT_CONSOLE_DB opens an existing cache (the benchmark's 100,000 devices),
            // following the server at UPDRAFT_MDM_URL; otherwise the settings decide.
            let clock: updraft_clock::SharedClock = Arc::new(updraft_clock::SystemClock);
            let start = if let Some(db) = std::env::var_os("UPDRAFT_CONSOLE_DB") {
                let url = std::env::var("UPDRAFT_MDM_URL")
                    .unwrap_or_else(|_| "http://127.0.0.1:9".into());
                let client = Arc::new(updraft_mdm::KmfddmClient::updraft(&url, "")?);
                Start::Server {
                    db: PathBuf::from(db),
                    backend: Arc::new(updraft_mdm::Deployment::single(client)),
                }
            } else {
                match Settings::load(&settings_file) {
                    Ok(Settings::Server(server)) => match server.backend(&Keychain, clock) {
                        Ok(backend) => Start::Server {
                            db: data.join("console.db"),
                            backend,
                        },
                        Err(error) => Start::Failed(error.to_string()),
                    },
                    Ok(Settings::Lab) => lab,
                    Err(error) => Start::Failed(error.to_string()),
                }
            };
            let shell = Arc::new(Shell {
                session: OnceCell::new(),
                start,
                settings_file,
                log_file,
                _log_guard: log_guard,
                health: std::sync::Mutex::default(),
                speed: AtomicI64::new(env_number("UPDRAFT_LAB_SPEED").unwrap_or(DEFAULT_SPEED)),
                clock_held: std::sync::atomic::AtomicBool::new(false),
            });
            app.manage(shell.clone());
            // A desktop without a tray host (or without libayatana-appindicator) still gets the
            // window and the notices.
            if let Err(error) = tray(app) {
                tracing::warn!("no tray icon: {error}");
            }
            tauri::async_runtime::spawn(clock_loop(app.handle().clone(), shell));
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::dashboard,
            commands::releases,
            commands::devices,
            commands::device_facets,
            commands::device,
            commands::preview_rollout,
            commands::start_rollout,
            commands::rollouts,
            commands::rollout,
            commands::retry_failed,
            commands::pause_rollout,
            commands::resume_rollout,
            commands::cancel_rollout,
            commands::promote_ring,
            commands::hold_device,
            commands::lift_hold,
            commands::export_rollout_csv,
            commands::alerts,
            commands::audit,
            commands::clock,
            commands::set_speed,
            commands::hold_lab_clock,
            commands::advance_clock,
            commands::settings,
            commands::try_server,
            commands::sync_health,
            commands::use_server,
            commands::use_lab,
            commands::ring_plans,
            commands::ring_plan_template,
            commands::save_ring_plan,
            commands::delete_ring_plan,
            commands::policies,
            commands::save_policy,
            commands::delete_policy,
            commands::start_draft,
            commands::dismiss_draft,
            commands::compliance,
            commands::export_compliance_csv,
            commands::pins,
            commands::save_pin,
            commands::delete_pin,
        ])
        .run(tauri::generate_context!())
        .expect("the Updraft window could not start");
}

/// WebKitGTK composites pages with OpenGL. Without a GPU (a VM, a remote desktop, Xvfb) that GL
/// runs in software and every frame costs about 50 ms: scrolling the devices table stuttered at
/// 20 frames a second. Drawn without compositing, the same scroll holds 60. A machine with a
/// render node keeps compositing; WEBKIT_DISABLE_COMPOSITING_MODE, when set, decides instead.
#[cfg(target_os = "linux")]
fn draw_without_compositing_when_no_gpu(app: &tauri::App) {
    let has_render_node = std::fs::read_dir("/dev/dri").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().starts_with("renderD"))
    });
    if has_render_node || std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_some() {
        return;
    }
    let Some(window) = app.get_webview_window("main") else {
        return;
    };
    let changed = window.with_webview(|webview| {
        use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
        if let Some(settings) = webview.inner().settings() {
            settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
        }
    });
    match changed {
        Ok(()) => tracing::info!("no GPU render node: drawing the window without compositing"),
        Err(error) => tracing::warn!("could not turn compositing off: {error}"),
    }
}

/// The tray icon: open the window, quit; its tooltip counts alerts since the app started.
fn tray(app: &tauri::App) -> tauri::Result<()> {
    use tauri::menu::{Menu, MenuItem};
    use tauri::tray::TrayIconBuilder;
    let open = MenuItem::with_id(app, "open", "Open Updraft", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Updraft", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&open, &quit])?;
    let mut builder = TrayIconBuilder::with_id(TRAY)
        .tooltip("Updraft")
        .menu(&menu)
        .on_menu_event(|app, event| match event.id.as_ref() {
            "open" => {
                if let Some(window) = app.get_webview_window("main") {
                    let _ = window.show();
                    let _ = window.set_focus();
                }
            }
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(())
}

const TRAY: &str = "updraft";

/// Runs the console's runtime: every turn it follows the server or moves the lab's clock, and
/// the shell forwards what happened to the window, the tray and the desktop's notices.
async fn clock_loop(app: tauri::AppHandle, shell: Arc<Shell>) {
    let session = match shell.session().await {
        Ok(session) => session,
        Err(error) => {
            tracing::error!("{error}");
            let _ = app.emit("lab-failed", error);
            return;
        }
    };
    let _ = app.emit("fleet-changed", session.now().to_rfc3339());
    warm(&session);
    let feed: Option<Box<dyn updraft_runtime::FeedSource>> = match &shell.start {
        Start::Server { db, .. } => Some(Box::new(AppleFeed(feed_file(db)))),
        _ => None,
    };
    let wall: updraft_clock::SharedClock = Arc::new(updraft_clock::SystemClock);
    // UPDRAFT_SYNC_SECONDS shortens the wait between two reads of the server (tests).
    let mut cadence = Cadence::default();
    if let Some(seconds) = env_number("UPDRAFT_SYNC_SECONDS") {
        cadence.server_refresh = chrono::Duration::seconds(seconds.clamp(1, 3600));
    }
    let mut runtime = updraft_runtime::Runtime::new(session.clone(), wall, cadence, feed).await;
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let speed = if shell.clock_held.load(Ordering::Relaxed) {
            0
        } else {
            shell.speed.load(Ordering::Relaxed)
        };
        let lab_minutes = (speed * TICK.as_millis() as i64 / 1000).max(i64::from(speed > 0));
        for event in runtime.turn(lab_minutes).await {
            match event {
                RuntimeEvent::FleetChanged(now) => {
                    if !session.is_lab() {
                        warm(&session);
                    }
                    let _ = app.emit("fleet-changed", now);
                }
                RuntimeEvent::Notice(notice) => show(notice).await,
                RuntimeEvent::AlertCount(count) => {
                    if let Some(tray) = app.tray_by_id(TRAY) {
                        let _ = tray
                            .set_tooltip(Some(format!("Updraft: {count} alerts since it started")));
                    }
                }
                RuntimeEvent::Health(health) => {
                    if let Ok(mut shared) = shell.health.lock() {
                        *shared = health.clone();
                    }
                    let _ = app.emit("sync-health", health);
                }
            }
        }
    }
}

/// Apple's lookup service, polled into the saved copy beside the console's cache (kept when
/// Apple answers empty or broken).
struct AppleFeed(PathBuf);

#[async_trait::async_trait]
impl updraft_runtime::FeedSource for AppleFeed {
    async fn poll(&self) -> anyhow::Result<Option<updraft_feed::LookupResponse>> {
        let client = updraft_feed::FeedClient::new()?;
        Ok(
            match updraft_feed::client::refresh_saved(&client, &self.0).await? {
                updraft_feed::RefreshOutcome::Updated { response, .. } => Some(response),
                _ => None,
            },
        )
    }

    /// SOFA's feeds, each saved beside the lookup service's; one that fails keeps its copy.
    async fn poll_sofa(&self) -> anyhow::Result<Option<Vec<updraft_feed::sofa::SofaFeed>>> {
        let dir = self.0.parent().unwrap_or(std::path::Path::new("."));
        let mut changed = false;
        for (platform, url, file) in updraft_feed::client::SOFA_FEEDS {
            let client =
                updraft_feed::FeedClient::with_options(updraft_feed::ClientOptions::sofa(url))?;
            match updraft_feed::client::refresh_sofa(&client, &dir.join(file), platform).await {
                Ok(fetched) => changed |= fetched.is_some(),
                Err(error) => tracing::warn!("polling SOFA's {platform} feed: {error}"),
            }
        }
        if !changed {
            return Ok(None);
        }
        Ok(Some(saved_sofa(dir)?))
    }
}

/// SOFA's feeds saved in `dir`, or the ones Updraft ships; a damaged copy is logged.
fn saved_sofa(dir: &std::path::Path) -> anyhow::Result<Vec<updraft_feed::sofa::SofaFeed>> {
    let (feeds, unreadable) = updraft_feed::client::saved_or_bundled_sofa(dir)?;
    for problem in unreadable {
        tracing::warn!("{problem}; using the copy Updraft ships");
    }
    Ok(feeds)
}

/// Builds the devices table in the background, so opening it does not wait for a read of every
/// device.
fn warm(session: &Arc<Session>) {
    let session = session.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(error) = session.warm().await {
            tracing::warn!("building the devices table: {error}");
        }
    });
}

/// tauri.conf.json's `identifier`: the macOS bundle id and the Windows installer's AppUserModelID.
#[cfg(any(target_os = "macos", target_os = "windows"))]
const APP_IDENTIFIER: &str = "com.updraft.console";

/// Shows a desktop notice. notify-rust blocks on D-Bus (Linux), so it runs off the async threads;
/// a desktop without a notification service only loses the pop-up, not the alert.
async fn show(notice: Notice) {
    let shown = tauri::async_runtime::spawn_blocking(move || {
        let mut notice_builder = notify_rust::Notification::new();
        #[cfg(target_os = "windows")]
        notice_builder.app_id(APP_IDENTIFIER);
        notice_builder
            .appname("Updraft")
            .summary(&as_text(&notice.summary))
            .body(&as_text(&notice.body))
            .show()
            .map(|_| ())
    })
    .await;
    match shown {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!("desktop notice not shown: {error}"),
        Err(error) => tracing::warn!("desktop notice not shown: {error}"),
    }
}

/// Freedesktop notification servers read the body as markup; device names and Apple's reasons are
/// text. macOS and Windows show the text as it is.
fn as_text(text: &str) -> String {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return text.to_owned();
    }
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
