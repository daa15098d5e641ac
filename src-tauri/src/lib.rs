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

/// Simulated minutes per real second the lab's clock runs at on a first start.
const DEFAULT_SPEED: i64 = 15;
/// How often the clock loop runs.
const TICK: Duration = Duration::from_millis(500);

/// What the commands share.
pub struct Shell {
    session: OnceCell<Arc<Session>>,
    lab_dir: PathBuf,
    lab_devices: usize,
    /// Simulated minutes per real second; 0 stops the clock.
    speed: AtomicI64,
}

impl Shell {
    /// The session, starting the lab on first use. Every caller waits for the same start.
    pub async fn session(&self) -> Result<Arc<Session>, String> {
        self.session
            .get_or_try_init(|| async {
                Session::lab(&self.lab_dir, self.lab_devices, updraft_app::LAB_SEED)
                    .await
                    .map(Arc::new)
                    .map_err(|e| format!("the lab could not start: {e}"))
            })
            .await
            .cloned()
    }
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
            let shell = Arc::new(Shell {
                session: OnceCell::new(),
                lab_dir: data.join("lab"),
                lab_devices: env_number("UPDRAFT_LAB_DEVICES")
                    .map_or(updraft_app::LAB_DEVICES, |n| n.clamp(1, 200_000) as usize),
                speed: AtomicI64::new(env_number("UPDRAFT_LAB_SPEED").unwrap_or(DEFAULT_SPEED)),
            });
            app.manage(shell.clone());
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
        ])
        .run(tauri::generate_context!())
        .expect("the Updraft window could not start");
}

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
    let mut last_alert = session.last_alert_id().await.unwrap_or(0);
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let speed = shell.speed.load(Ordering::Relaxed);
        if speed > 0 {
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
                last_alert = last;
                for notice in notices {
                    show(notice).await;
                }
            }
            Err(error) => tracing::error!("reading alerts: {error}"),
        }
    }
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
