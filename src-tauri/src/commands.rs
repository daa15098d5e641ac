//! The commands the UI calls, one per question or action, each a thin adapter to the session.
//! Errors reach the UI as `{code, message}` so it can tell a refusal from a failure without
//! matching strings.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tauri::{Emitter, Manager, State};

use updraft_app::AppError;
use updraft_app::view::*;
use updraft_app::wizard::{Preview, RolloutPlan};

use crate::{Keychain, Shell};
use updraft_app::settings::{CheckLine, ServerSettings, Settings, SettingsView};

/// The kinds of failure the UI tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// What was asked for does not exist.
    NotFound,
    /// The input was refused; the message says why.
    Invalid,
    /// Something below failed.
    Backend,
    /// The console is still starting.
    Starting,
}

/// An error as the UI receives it.
#[derive(Debug, Serialize, ts_rs::TS)]
#[ts(rename = "BackendError")]
pub struct CommandError {
    /// What kind of failure, for the UI to tell apart.
    code: ErrorCode,
    /// What went wrong, for a person.
    message: String,
}

impl From<AppError> for CommandError {
    fn from(error: AppError) -> Self {
        let code = match &error {
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::Invalid(_) => ErrorCode::Invalid,
            AppError::Backend(_) => ErrorCode::Backend,
        };
        Self {
            code,
            message: error.to_string(),
        }
    }
}

type Reply<T> = Result<T, CommandError>;

async fn session(shell: &State<'_, Arc<Shell>>) -> Reply<Arc<updraft_app::Session>> {
    shell.session().await.map_err(|message| CommandError {
        code: ErrorCode::Starting,
        message,
    })
}

fn changed(app: &tauri::AppHandle, session: &updraft_app::Session) {
    let _ = app.emit("fleet-changed", session.now().to_rfc3339());
}

#[tauri::command]
pub async fn dashboard(shell: State<'_, Arc<Shell>>) -> Reply<Dashboard> {
    Ok(session(&shell).await?.dashboard().await?)
}

#[tauri::command]
pub async fn releases(shell: State<'_, Arc<Shell>>) -> Reply<Vec<ReleaseView>> {
    Ok(session(&shell).await?.releases().await?)
}

#[tauri::command]
pub async fn devices(shell: State<'_, Arc<Shell>>, query: DeviceQuery) -> Reply<DevicePage> {
    Ok(session(&shell).await?.devices(&query).await?)
}

#[tauri::command]
pub async fn device_facets(shell: State<'_, Arc<Shell>>) -> Reply<DeviceFacets> {
    Ok(session(&shell).await?.device_facets().await?)
}

#[tauri::command]
pub async fn device(shell: State<'_, Arc<Shell>>, id: String) -> Reply<DeviceDetail> {
    Ok(session(&shell).await?.device(&id).await?)
}

#[tauri::command]
pub async fn preview_rollout(shell: State<'_, Arc<Shell>>, plan: RolloutPlan) -> Reply<Preview> {
    Ok(session(&shell).await?.preview(&plan).await?)
}

#[tauri::command]
pub async fn start_rollout(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    plan: RolloutPlan,
) -> Reply<Vec<i64>> {
    let session = session(&shell).await?;
    let ids = session.start_rollout(&plan).await?;
    changed(&app, &session);
    Ok(ids)
}

#[tauri::command]
pub async fn rollouts(shell: State<'_, Arc<Shell>>) -> Reply<Vec<RolloutSummary>> {
    Ok(session(&shell).await?.rollouts().await?)
}

#[tauri::command]
pub async fn rollout(shell: State<'_, Arc<Shell>>, id: i64) -> Reply<RolloutDetail> {
    Ok(session(&shell).await?.rollout(id).await?)
}

#[tauri::command]
pub async fn retry_failed(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: i64,
) -> Reply<usize> {
    let session = session(&shell).await?;
    let retried = session.retry_failed(id).await?;
    changed(&app, &session);
    Ok(retried)
}

#[tauri::command]
pub async fn pause_rollout(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: i64,
) -> Reply<()> {
    let session = session(&shell).await?;
    session.pause_rollout(id).await?;
    changed(&app, &session);
    Ok(())
}

#[tauri::command]
pub async fn resume_rollout(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: i64,
) -> Reply<()> {
    let session = session(&shell).await?;
    session.resume_rollout(id).await?;
    changed(&app, &session);
    Ok(())
}

#[tauri::command]
pub async fn cancel_rollout(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: i64,
) -> Reply<()> {
    let session = session(&shell).await?;
    session.cancel_rollout(id).await?;
    changed(&app, &session);
    Ok(())
}

/// Holds a device back from every rollout.
#[tauri::command]
pub async fn hold_device(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: String,
    reason: String,
    until: Option<String>,
) -> Reply<()> {
    let session = session(&shell).await?;
    session.hold_device(&id, &reason, until.as_deref()).await?;
    changed(&app, &session);
    Ok(())
}

/// Lifts a device's hold.
#[tauri::command]
pub async fn lift_hold(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: String,
) -> Reply<()> {
    let session = session(&shell).await?;
    session.lift_hold(&id).await?;
    changed(&app, &session);
    Ok(())
}

/// Starts a wave waiting on its gate (or halted by it) now.
#[tauri::command]
pub async fn promote_ring(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: i64,
) -> Reply<()> {
    let session = session(&shell).await?;
    session.promote_ring(id).await?;
    changed(&app, &session);
    Ok(())
}

/// Writes the rollout's CSV into the Downloads folder; returns the file's path.
/// Where exports go: the Downloads folder, else the app's data folder.
fn export_folder(app: &tauri::AppHandle) -> Reply<std::path::PathBuf> {
    app.path()
        .download_dir()
        .or_else(|_| app.path().app_data_dir())
        .map_err(|e| CommandError {
            code: ErrorCode::Backend,
            message: format!("no folder to save the CSV in: {e}"),
        })
}

#[tauri::command]
pub async fn export_rollout_csv(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: i64,
) -> Reply<String> {
    let folder = export_folder(&app)?;
    let path = session(&shell)
        .await?
        .export_rollout_csv(id, &folder)
        .await?;
    Ok(path.display().to_string())
}

#[tauri::command]
pub async fn alerts(shell: State<'_, Arc<Shell>>, limit: i64) -> Reply<Vec<AlertView>> {
    Ok(session(&shell)
        .await?
        .alerts(limit.clamp(1, 10_000))
        .await?)
}

#[tauri::command]
pub async fn audit(shell: State<'_, Arc<Shell>>, limit: i64) -> Reply<Vec<AuditView>> {
    Ok(session(&shell).await?.audit(limit.clamp(1, 10_000)).await?)
}

/// The lab's clock as the UI shows it.
#[derive(Debug, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ClockView {
    /// The console's clock, RFC 3339.
    now: String,
    /// Simulated minutes per real second; 0 when stopped.
    speed: i64,
    /// Whether this is the lab (only its clock can be moved).
    lab: bool,
    /// Held by the rollout wizard: the clock stands still whatever its speed.
    held: bool,
}

#[tauri::command]
pub async fn clock(shell: State<'_, Arc<Shell>>) -> Reply<ClockView> {
    let session = session(&shell).await?;
    Ok(ClockView {
        now: session.now().to_rfc3339(),
        speed: shell.speed.load(Ordering::Relaxed),
        lab: session.is_lab(),
        held: shell.clock_held.load(Ordering::Relaxed),
    })
}

/// The speeds the UI offers, in simulated minutes per second.
pub const SPEEDS: [i64; 5] = [0, 15, 60, 360, 1440];

#[tauri::command]
pub async fn set_speed(shell: State<'_, Arc<Shell>>, speed: i64) -> Reply<i64> {
    if !SPEEDS.contains(&speed) {
        return Err(CommandError {
            code: ErrorCode::Invalid,
            message: format!("speed {speed} is not one of {SPEEDS:?} simulated minutes per second"),
        });
    }
    shell.speed.store(speed, Ordering::Relaxed);
    Ok(speed)
}

/// Holds the lab's clock (the wizard, while it is open) or lets it run again at its speed.
#[tauri::command]
pub async fn hold_lab_clock(shell: State<'_, Arc<Shell>>, held: bool) -> Reply<()> {
    shell.clock_held.store(held, Ordering::Relaxed);
    Ok(())
}

/// Moves the lab's clock forward at once, by up to a week.
#[tauri::command]
pub async fn advance_clock(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    minutes: i64,
) -> Reply<String> {
    let session = session(&shell).await?;
    let now = session.advance(minutes.clamp(0, 7 * 24 * 60)).await?;
    changed(&app, &session);
    Ok(now.to_rfc3339())
}

fn settings_view(shell: &Shell, settings: &Settings) -> SettingsView {
    let running_lab = matches!(shell.start, crate::Start::Lab { .. });
    settings.view(&Keychain, running_lab, Some(&shell.log_file))
}

/// The settings, with whether an API key is stored (never the key).
#[tauri::command]
pub async fn settings(shell: State<'_, Arc<Shell>>) -> Reply<SettingsView> {
    let settings = Settings::load(&shell.settings_file)?;
    Ok(settings_view(&shell, &settings))
}

/// What trying a server found, and the settings as they are now.
#[derive(serde::Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ServerTried {
    /// The settings as they are now.
    view: SettingsView,
    /// Each check and what came of it.
    checks: Vec<CheckLine>,
}

/// Tries a server as described, without saving anything: what works and what does not.
#[tauri::command]
pub async fn try_server(
    server: ServerSettings,
    api_key: String,
    companion_key: Option<String>,
) -> Reply<Vec<CheckLine>> {
    Ok(updraft_app::settings::try_server(&server, api_key.trim(), companion_key.as_deref()).await)
}

/// Tries a server with its keys; when every check passes, keeps the keys in the keychain and the
/// rest in the settings. Takes effect at the next start.
#[tauri::command]
pub async fn use_server(
    shell: State<'_, Arc<Shell>>,
    server: ServerSettings,
    api_key: String,
    companion_key: Option<String>,
) -> Reply<ServerTried> {
    let (settings, checks) = session(&shell)
        .await?
        .use_server(
            &shell.settings_file,
            &Keychain,
            server,
            &api_key,
            companion_key.as_deref(),
        )
        .await?;
    tracing::info!("settings: the console opens on a DDM server at the next start");
    Ok(ServerTried {
        view: settings_view(&shell, &settings),
        checks,
    })
}

/// Whether the last sync with the server worked: the time of the last good one, and the last
/// failure with its reason until a sync works again.
#[tauri::command]
pub async fn sync_health(shell: State<'_, Arc<Shell>>) -> Reply<updraft_runtime::SyncHealth> {
    Ok(shell
        .health
        .lock()
        .map(|health| health.clone())
        .unwrap_or_default())
}

/// Goes back to the lab at the next start.
#[tauri::command]
pub async fn use_lab(shell: State<'_, Arc<Shell>>) -> Reply<SettingsView> {
    session(&shell).await?.use_lab(&shell.settings_file).await?;
    tracing::info!("settings: the console opens on the lab at the next start");
    Ok(settings_view(&shell, &Settings::Lab))
}

#[tauri::command]
pub async fn ring_plans(shell: State<'_, Arc<Shell>>) -> Reply<Vec<RingPlanView>> {
    Ok(session(&shell).await?.ring_plans().await?)
}

#[tauri::command]
pub async fn ring_plan_template(shell: State<'_, Arc<Shell>>) -> Reply<RingPlanView> {
    Ok(session(&shell).await?.ring_plan_template())
}

/// Saves a ring plan, replacing the one of its name.
#[tauri::command]
pub async fn save_ring_plan(shell: State<'_, Arc<Shell>>, plan: RingPlanView) -> Reply<()> {
    Ok(session(&shell).await?.save_ring_plan(&plan).await?)
}

#[tauri::command]
pub async fn delete_ring_plan(shell: State<'_, Arc<Shell>>, name: String) -> Reply<()> {
    Ok(session(&shell).await?.delete_ring_plan(&name).await?)
}

#[tauri::command]
pub async fn policies(shell: State<'_, Arc<Shell>>) -> Reply<Vec<PolicyView>> {
    Ok(session(&shell).await?.policies().await?)
}

/// Saves a platform's release policy and applies it at once; returns the waiting drafts.
#[tauri::command]
pub async fn save_policy(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    policy: PolicyView,
) -> Reply<Vec<DraftView>> {
    let session = session(&shell).await?;
    let drafts = session.save_policy(&policy).await?;
    changed(&app, &session);
    Ok(drafts)
}

#[tauri::command]
pub async fn delete_policy(shell: State<'_, Arc<Shell>>, platform: String) -> Reply<()> {
    Ok(session(&shell).await?.delete_policy(&platform).await?)
}

/// Starts a drafted rollout; returns its rings' rollouts.
#[tauri::command]
pub async fn start_draft(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: i64,
    base_date: Option<String>,
    details_url: Option<String>,
) -> Reply<Vec<i64>> {
    let session = session(&shell).await?;
    let ids = session
        .start_draft(id, base_date.as_deref(), details_url.as_deref())
        .await?;
    changed(&app, &session);
    Ok(ids)
}

#[tauri::command]
pub async fn dismiss_draft(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    id: i64,
) -> Reply<()> {
    let session = session(&shell).await?;
    session.dismiss_draft(id).await?;
    changed(&app, &session);
    Ok(())
}

#[tauri::command]
pub async fn compliance(
    shell: State<'_, Arc<Shell>>,
    release: Option<String>,
    platform: String,
) -> Reply<ComplianceReport> {
    Ok(session(&shell)
        .await?
        .compliance(release.as_deref(), &platform)
        .await?)
}

/// Writes the compliance CSVs; returns their paths.
#[tauri::command]
pub async fn export_compliance_csv(
    app: tauri::AppHandle,
    shell: State<'_, Arc<Shell>>,
    release: Option<String>,
    platform: String,
) -> Reply<Vec<String>> {
    let folder = export_folder(&app)?;
    let paths = session(&shell)
        .await?
        .export_compliance_csv(release.as_deref(), &platform, &folder)
        .await?;
    Ok(paths.iter().map(|p| p.display().to_string()).collect())
}

#[tauri::command]
pub async fn pins(shell: State<'_, Arc<Shell>>) -> Reply<Vec<PinView>> {
    Ok(session(&shell).await?.pins().await?)
}

/// Saves a pinned group, replacing the one of its name.
#[tauri::command]
pub async fn save_pin(shell: State<'_, Arc<Shell>>, pin: PinView) -> Reply<()> {
    Ok(session(&shell).await?.save_pin(&pin).await?)
}

#[tauri::command]
pub async fn delete_pin(shell: State<'_, Arc<Shell>>, name: String) -> Reply<()> {
    Ok(session(&shell).await?.delete_pin(&name).await?)
}
