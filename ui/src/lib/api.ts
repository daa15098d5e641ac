// Every call the UI makes to the Rust backend goes through this module, typed as the backend's
// views serialize them. Nothing else imports @tauri-apps/api.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

import type {
  AlertView, AuditView, BackendError, CheckLine, ClockView, ComplianceReport, Dashboard, DeviceDetail,
  DeviceFacets, DevicePage, DeviceQuery, DraftView, PinView, PolicyView, Preview, ReleaseView, RingPlanView,
  RolloutDetail, RolloutPlan, RolloutSummary, ServerSettings, ServerTried, SettingsView, SyncHealth,
} from "./bindings";

// The types are generated from the Rust types (src-tauri/src/bindings.rs); screens import them
// from here with the calls.
export type * from "./bindings";

/** A devices-table query: the window is required, every filter optional. */
export type DeviceRequest = Partial<DeviceQuery> & Pick<DeviceQuery, "offset" | "limit">;

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
  devices: (query: DeviceRequest) => invoke<DevicePage>("devices", { query }),
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
  promoteRing: (id: number) => invoke<void>("promote_ring", { id }),
  holdDevice: (id: string, reason: string, until: string | null) => invoke<void>("hold_device", { id, reason, until }),
  liftHold: (id: string) => invoke<void>("lift_hold", { id }),
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
  ringPlans: () => invoke<RingPlanView[]>("ring_plans"),
  ringPlanTemplate: () => invoke<RingPlanView>("ring_plan_template"),
  saveRingPlan: (plan: RingPlanView) => invoke<void>("save_ring_plan", { plan }),
  deleteRingPlan: (name: string) => invoke<void>("delete_ring_plan", { name }),
  policies: () => invoke<PolicyView[]>("policies"),
  savePolicy: (policy: PolicyView) => invoke<DraftView[]>("save_policy", { policy }),
  deletePolicy: (platform: string) => invoke<void>("delete_policy", { platform }),
  startDraft: (id: number, baseDate: string | null, detailsUrl: string | null) =>
    invoke<number[]>("start_draft", { id, baseDate, detailsUrl }),
  dismissDraft: (id: number) => invoke<void>("dismiss_draft", { id }),
  compliance: (platform: string, release: string | null) => invoke<ComplianceReport>("compliance", { platform, release }),
  exportComplianceCsv: (platform: string, release: string | null) =>
    invoke<string[]>("export_compliance_csv", { platform, release }),
  pins: () => invoke<PinView[]>("pins"),
  savePin: (pin: PinView) => invoke<void>("save_pin", { pin }),
  deletePin: (name: string) => invoke<void>("delete_pin", { name }),
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
