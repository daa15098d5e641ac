//! The Tauri shell: commands that forward to [`updraft_app::Session`], the lab's clock loop,
//! events to the UI and desktop notices. Nothing here decides anything; `updraft-app` does.

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

/// Simulated minutes per real second the lab's clock runs at on a first start.
const DEFAULT_SPEED: i64 = 15;
/// How often the clock loop runs.
const TICK: Duration = Duration::from_millis(500);
/// How often the console reads a real server's changes.
const SERVER_REFRESH: Duration = Duration::from_secs(30);
/// How often the console asks Apple's lookup service for releases (Apple updates it a few times a
/// week; the client sends the saved etag, so an unchanged answer costs nothing).
const FEED_POLL: Duration = Duration::from_secs(6 * 3600);

/// What the commands share.
pub struct Shell {
    session: OnceCell<Arc<Session>>,
    start: Start,
    settings_file: PathBuf,
    /// Simulated minutes per real second; 0 stops the clock.
    speed: AtomicI64,
}

impl Shell {
    /// The session, starting the lab on first use. Every caller waits for the same start.
    pub async fn session(&self) -> Result<Arc<Session>, String> {
        self.session
            .get_or_try_init(|| async {
                match &self.start {
                    Start::Lab { dir, devices } => {
                        Session::lab(dir, *devices, updraft_app::LAB_SEED)
                            .await
                            .map_err(|e| format!("the lab could not start: {e}"))
                    }
                    Start::Server { db, url, api_key } => open_server(db, url, api_key)
                        .await
                        .map_err(|e| format!("the console could not open {}: {e:#}", db.display())),
                    Start::Failed(reason) => Err(reason.clone()),
                }
                .map(Arc::new)
            })
            .await
            .cloned()
    }
}

/// What the console opens on.
enum Start {
    /// The lab, started over in `dir`.
    Lab { dir: PathBuf, devices: usize },
    /// The cache at `db`, following the KMFDDM-compatible server at `url`.
    Server {
        db: PathBuf,
        url: String,
        api_key: String,
    },
    /// The settings name a server the console cannot open (the UI says why; Settings can go
    /// back to the lab).
    Failed(String),
}

/// The saved lookup-service answer, beside the console's cache.
fn feed_file(db: &std::path::Path) -> PathBuf {
    db.with_file_name("feed.json")
}

/// Polls Apple's lookup service into the saved copy (kept when Apple answers empty or broken) and
/// gives the session a newer answer.
async fn poll_feed(session: &Session, db: &std::path::Path) -> anyhow::Result<()> {
    let client = updraft_feed::FeedClient::new()?;
    if let updraft_feed::RefreshOutcome::Updated { response, .. } =
        updraft_feed::client::refresh_saved(&client, &feed_file(db)).await?
    {
        session.update_feed(&response).await?;
    }
    Ok(())
}

/// API keys in the OS keychain: Keychain on macOS, Credential Manager on Windows, the Secret
/// Service on Linux. One entry per server address.
pub struct Keychain;

const KEYCHAIN_SERVICE: &str = "com.updraft.console";

impl SecretStore for Keychain {
    fn api_key(&self, url: &str) -> Result<Option<String>, String> {
        let entry = keyring::Entry::new(KEYCHAIN_SERVICE, url).map_err(|e| e.to_string())?;
        match entry.get_password() {
            Ok(key) => Ok(Some(key)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }

    fn set_api_key(&self, url: &str, api_key: &str) -> Result<(), String> {
        keyring::Entry::new(KEYCHAIN_SERVICE, url)
            .and_then(|entry| entry.set_password(api_key))
            .map_err(|e| e.to_string())
    }
}

async fn open_server(db: &std::path::Path, url: &str, api_key: &str) -> anyhow::Result<Session> {
    // The last good lookup-service answer, else the bundled capture until the first poll.
    let saved = std::fs::read(feed_file(db))
        .ok()
        .and_then(|bytes| updraft_feed::LookupResponse::parse_saved(&bytes).ok())
        .map(|(feed, _)| feed);
    let feed = match saved {
        Some(feed) => feed,
        None => updraft_feed::LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes())?,
    };
    let client = updraft_mdm::KmfddmClient::updraft(url, api_key)?;
    let clock: updraft_clock::SharedClock = Arc::new(updraft_clock::SystemClock);
    Ok(Session::server(db, Arc::new(client), clock, &feed).await?)
}

fn env_number(name: &str) -> Option<i64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Starts the app.
pub fn run() {
    tauri::Builder::default()
        .setup(|app| {
            // The app data folder holds the console's cache; UPDRAFT_DATA_DIR moves it (tests).
            let data = match std::env::var_os("UPDRAFT_DATA_DIR") {
                Some(dir) => PathBuf::from(dir),
                None => app.path().app_data_dir()?,
            };
            std::fs::create_dir_all(&data)?;
            #[cfg(target_os = "linux")]
            draw_without_compositing_when_no_gpu(app);
            let settings_file = data.join("settings.json");
            let lab = Start::Lab {
                dir: data.join("lab"),
                devices: env_number("UPDRAFT_LAB_DEVICES")
                    .map_or(updraft_app::LAB_DEVICES, |n| n.clamp(1, 200_000) as usize),
            };
            // UPDRAFT_CONSOLE_DB opens an existing cache (the benchmark's 100,000 devices),
            // following the server at UPDRAFT_MDM_URL; otherwise the settings decide.
            let start = if let Some(db) = std::env::var_os("UPDRAFT_CONSOLE_DB") {
                Start::Server {
                    db: PathBuf::from(db),
                    url: std::env::var("UPDRAFT_MDM_URL")
                        .unwrap_or_else(|_| "http://127.0.0.1:9".into()),
                    api_key: String::new(),
                }
            } else {
                match Settings::load(&settings_file) {
                    Ok(Settings::Server { url }) => match Keychain.api_key(&url) {
                        Ok(Some(api_key)) => Start::Server {
                            db: data.join("console.db"),
                            url,
                            api_key,
                        },
                        Ok(None) => Start::Failed(format!(
                            "no API key for {url} in the keychain: enter it again in Settings"
                        )),
                        Err(error) => Start::Failed(format!("the keychain: {error}")),
                    },
                    Ok(Settings::Lab) => lab,
                    Err(error) => Start::Failed(error.to_string()),
                }
            };
            let shell = Arc::new(Shell {
                session: OnceCell::new(),
                start,
                settings_file,
                speed: AtomicI64::new(env_number("UPDRAFT_LAB_SPEED").unwrap_or(DEFAULT_SPEED)),
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
            commands::export_rollout_csv,
            commands::alerts,
            commands::audit,
            commands::clock,
            commands::set_speed,
            commands::advance_clock,
            commands::settings,
            commands::use_server,
            commands::use_lab,
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

/// Runs the lab's clock at the chosen speed, tells the UI when the fleet moved, and shows new
/// alerts as grouped desktop notices.
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
    let mut last_alert = session.last_alert_id().await.unwrap_or(0);
    let mut interval = tokio::time::interval(TICK);
    let mut since_refresh = std::time::Instant::now();
    let mut alerts_seen: u64 = 0;
    let mut since_feed: Option<std::time::Instant> = None;
    loop {
        interval.tick().await;
        let speed = shell.speed.load(Ordering::Relaxed);
        if let Start::Server { db, .. } = &shell.start
            && since_feed.is_none_or(|at| at.elapsed() >= FEED_POLL)
        {
            since_feed = Some(std::time::Instant::now());
            // New releases arrive as alerts, shown below with the rest.
            if let Err(error) = poll_feed(&session, db).await {
                tracing::warn!("polling the lookup service: {error:#}");
            }
        }
        if !session.is_lab() {
            if since_refresh.elapsed() >= SERVER_REFRESH {
                since_refresh = std::time::Instant::now();
                match session.refresh().await {
                    Ok(()) => {
                        warm(&session);
                        let _ = app.emit("fleet-changed", session.now().to_rfc3339());
                    }
                    Err(error) => tracing::warn!("following the DDM server: {error}"),
                }
            }
        } else if speed > 0 {
            let minutes = (speed * TICK.as_millis() as i64 / 1000).max(1);
            match session.advance(minutes).await {
                Ok(now) => {
                    let _ = app.emit("fleet-changed", now.to_rfc3339());
                }
                Err(error) => tracing::error!("the lab's clock stopped: {error}"),
            }
        }
        match session.notices_after(last_alert).await {
            Ok((notices, last)) => {
                if last > last_alert {
                    alerts_seen += (last - last_alert) as u64;
                    if let Some(tray) = app.tray_by_id(TRAY) {
                        let _ = tray.set_tooltip(Some(format!(
                            "Updraft: {alerts_seen} alerts since it started"
                        )));
                    }
                }
                last_alert = last;
                for notice in notices {
                    show(notice).await;
                }
            }
            Err(error) => tracing::error!("reading alerts: {error}"),
        }
    }
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

/// Shows a desktop notice. notify-rust blocks on D-Bus (Linux), so it runs off the async threads;
/// a desktop without a notification service only loses the pop-up, not the alert.
async fn show(notice: Notice) {
    let shown = tauri::async_runtime::spawn_blocking(move || {
        notify_rust::Notification::new()
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
