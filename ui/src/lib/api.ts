// Every call the UI makes to the Rust backend goes through this module, typed as the backend's
// views (crates/app/src/view.rs) serialize them. Nothing else imports @tauri-apps/api.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

export interface OsCount { platform: string; version: string; count: number }
export interface Compliance { platform: string; newest: string; current: number; devices: number }
export interface ReleaseBanner { release: string; platform: string; label: string; daysAgo: number; appliesTo: number }
export interface RolloutSummary {
  id: number; wave: number; platform: string; label: string; deadline: string; state: string;
  total: number; updated: number; failed: number; excluded: number; inProgress: number;
}
export interface AlertView {
  id: number; at: string; kind: string; device: string | null; deviceName: string | null;
  rollout: number | null; detail: string;
}
export interface Dashboard {
  now: string; lab: boolean; devices: number; byOs: OsCount[]; compliance: Compliance[];
  banners: ReleaseBanner[]; rollouts: RolloutSummary[]; alerts: AlertView[];
}
export interface ReleaseView {
  key: string; platform: string; version: string; extra: string | null; build: string | null;
  prerequisiteBuild: string | null; posted: string; expires: string | null; available: boolean;
  managementOnly: boolean; supportedDeviceIds: number; appliesTo: number; current: number;
}
export interface DeviceRow {
  id: string; name: string; serial: string; model: string; platform: string; os: string;
  build: string; state: string; rollout: number | null; lastReport: string | null;
}
export interface DeviceQuery {
  search?: string; model?: string | null; os?: string | null; state?: string | null;
  rollout?: number | null; sort?: string | null; descending?: boolean; offset: number; limit: number;
}
export interface DevicePage { total: number; offset: number; rows: DeviceRow[] }
export interface DeviceFacets { models: string[]; os: string[]; states: string[]; rollouts: number[] }
export interface TimelineEntry { at: string; kind: string; detail: string; rollout: number | null; sincePrevious: string | null }
export interface DeviceEnforcement {
  rollout: number; target: string; phase: string; deadline: string; declaration: string;
  failureReason: string | null; failureCount: number; exclusionReason: string | null;
  invalidReason: string | null; pastDeadline: boolean; stale: boolean; stuck: boolean;
}
export interface DeviceDetail {
  row: DeviceRow; family: string | null; deviceId: string | null; deviceIdSource: string | null;
  supplementalBuild: string | null; timeZone: string | null; bootstrapTokenEscrowed: boolean;
  bootstrapTokenRequestedAt: string | null; declarationsAssigned: string[];
  enforcements: DeviceEnforcement[]; timeline: TimelineEntry[];
}
export type Selection =
  | { mode: "all" }
  | { mode: "models"; values: string[] }
  | { mode: "osVersions"; values: string[] }
  | { mode: "devices"; values: string[] };
export interface WavePlan { percent: number; deadline: string }
export interface RolloutPlan { release: string; selection: Selection; waves: WavePlan[]; detailsUrl: string | null }
export interface PreviewDevice {
  id: string; name: string; model: string; os: string; wave: number | null;
  localDeadline: string | null; exclusion: string | null; warnings: string[];
}
export interface PreviewWave { wave: number; deadline: string; devices: number; warnings: string[] }
export interface Preview {
  errors: string[]; waves: PreviewWave[]; included: number; excluded: number; warned: number;
  devices: PreviewDevice[];
}
export interface FunnelStep { phase: string; count: number }
export interface FailureGroup { reason: string; devices: string[] }
export interface RolloutDetail {
  summary: RolloutSummary; detailsUrl: string | null; scoped: boolean; funnel: FunnelStep[];
  failures: FailureGroup[]; exclusions: FailureGroup[];
}
export interface AuditView { at: string; actor: string; action: string; detail: string }
export interface ClockView { now: string; speed: number; lab: boolean; held: boolean }
export type Preset = "nanoHub" | "kmfddm" | "updraft";
export type StatusChoice =
  | { source: "serverFeed" }
  | { source: "companion"; url: string }
  | { source: "polling"; enrollments: string; everyMinutes: number };
/** A DDM server as Settings keeps it; its API keys are in the keychain, never here. */
export interface ServerSettings {
  url: string; preset: Preset; apiPrefix?: string | null; apiUser?: string | null; caPem?: string | null;
  status: StatusChoice;
}
/** The API key itself never reaches the UI: only whether the keychain holds one. */
export interface SettingsView {
  backend: "lab" | "server"; server: ServerSettings | null; apiKeyStored: boolean; running: "lab" | "server";
  logFile: string | null;
}
/** One thing Settings tried on a server, and what came of it. */
export interface CheckLine { what: string; ok: boolean; detail: string }
export interface ServerTried { view: SettingsView; checks: CheckLine[] }
/** Whether the console's view of the server is current. */
export interface SyncHealth { lastGood: string | null; lastFailure: { at: string; reason: string } | null }

/** An error as the backend sends it. */
export interface BackendError { code: "not_found" | "invalid" | "backend" | "starting"; message: string }

/** The message of anything a call threw. */
export function messageOf(error: unknown): string {
  if (error && typeof error === "object" && "message" in error) {
    return String((error as BackendError).message);
  }
  return String(error);
}

export const api = {
  dashboard: () => invoke<Dashboard>("dashboard"),
  releases: () => invoke<ReleaseView[]>("releases"),
  devices: (query: DeviceQuery) => invoke<DevicePage>("devices", { query }),
  deviceFacets: () => invoke<DeviceFacets>("device_facets"),
  device: (id: string) => invoke<DeviceDetail>("device", { id }),
  previewRollout: (plan: RolloutPlan) => invoke<Preview>("preview_rollout", { plan }),
  startRollout: (plan: RolloutPlan) => invoke<number[]>("start_rollout", { plan }),
  rollouts: () => invoke<RolloutSummary[]>("rollouts"),
  rollout: (id: number) => invoke<RolloutDetail>("rollout", { id }),
  retryFailed: (id: number) => invoke<number>("retry_failed", { id }),
  pauseRollout: (id: number) => invoke<void>("pause_rollout", { id }),
  resumeRollout: (id: number) => invoke<void>("resume_rollout", { id }),
  cancelRollout: (id: number) => invoke<void>("cancel_rollout", { id }),
  exportRolloutCsv: (id: number) => invoke<string>("export_rollout_csv", { id }),
  alerts: (limit: number) => invoke<AlertView[]>("alerts", { limit }),
  audit: (limit: number) => invoke<AuditView[]>("audit", { limit }),
  clock: () => invoke<ClockView>("clock"),
  setSpeed: (speed: number) => invoke<number>("set_speed", { speed }),
  holdLabClock: (held: boolean) => invoke<void>("hold_lab_clock", { held }),
  advanceClock: (minutes: number) => invoke<string>("advance_clock", { minutes }),
  settings: () => invoke<SettingsView>("settings"),
  tryServer: (server: ServerSettings, apiKey: string, companionKey: string | null) =>
    invoke<CheckLine[]>("try_server", { server, apiKey, companionKey }),
  useServer: (server: ServerSettings, apiKey: string, companionKey: string | null) =>
    invoke<ServerTried>("use_server", { server, apiKey, companionKey }),
  syncHealth: () => invoke<SyncHealth>("sync_health"),
  useLab: () => invoke<SettingsView>("use_lab"),
};

/** Calls `handler` whenever the fleet moved (the lab's clock, or an admin's action). */
export function onFleetChanged(handler: (now: string) => void): Promise<UnlistenFn> {
  return listen<string>("fleet-changed", (event) => handler(event.payload));
}

/** Calls `handler` if the lab could not start. */
export function onLabFailed(handler: (message: string) => void): Promise<UnlistenFn> {
  return listen<string>("lab-failed", (event) => handler(event.payload));
}

/** Calls `handler` when syncing with the server fails, or works again after failing. */
export function onSyncHealth(handler: (health: SyncHealth) => void): Promise<UnlistenFn> {
  return listen<SyncHealth>("sync-health", (event) => handler(event.payload));
}
