// Every command the UI may call is declared here, so Tauri generates an allow-<command>
// permission for it and the capability file can grant exactly these.
fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(&COMMANDS)),
    )
    .expect("failed to run the Tauri build script");
}

const COMMANDS: [&str; 42] = [
    "dashboard",
    "releases",
    "devices",
    "device_facets",
    "device",
    "preview_rollout",
    "start_rollout",
    "rollouts",
    "rollout",
    "retry_failed",
    "pause_rollout",
    "resume_rollout",
    "cancel_rollout",
    "promote_ring",
    "hold_device",
    "lift_hold",
    "export_rollout_csv",
    "alerts",
    "audit",
    "clock",
    "set_speed",
    "hold_lab_clock",
    "advance_clock",
    "settings",
    "try_server",
    "sync_health",
    "use_server",
    "use_lab",
    "ring_plans",
    "ring_plan_template",
    "save_ring_plan",
    "delete_ring_plan",
    "policies",
    "save_policy",
    "delete_policy",
    "start_draft",
    "dismiss_draft",
    "compliance",
    "export_compliance_csv",
    "pins",
    "save_pin",
    "delete_pin",
];
