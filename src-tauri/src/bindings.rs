//! The UI's types and shared constants, generated from the Rust types the commands take and
//! return, into `ui/src/lib/bindings.ts` (committed). The test below fails when that file is not
//! what these types generate; `UPDRAFT_BLESS=1 cargo test -p updraft-desktop bindings` rewrites it.

use ts_rs::{Config, TS};

use updraft_app::{settings, view, wizard};

use crate::commands;

/// The whole file.
pub fn typescript() -> String {
    // serde writes every integer as a JSON number: no bigint on the UI's side.
    let config = Config::new().with_large_int("number");
    let mut out = String::from(
        "// Generated from the Rust types by src-tauri/src/bindings.rs: do not edit.\n\
         // UPDRAFT_BLESS=1 cargo test -p updraft-desktop bindings rewrites it.\n\n",
    );
    macro_rules! declare {
        ($($type:ty),* $(,)?) => {$(
            out.push_str(&tidy(&format!("export {}", <$type as TS>::decl(&config))));
        )*};
    }
    declare!(
        view::EventKind,
        view::AlertKind,
        view::OsCount,
        view::Compliance,
        view::ReleaseBanner,
        view::RolloutStatus,
        view::RolloutSummary,
        view::AlertView,
        view::Dashboard,
        view::ReleaseBuildView,
        view::ReleaseView,
        view::DeviceRowView,
        view::DeviceQuery,
        view::DevicePage,
        view::DeviceFacets,
        view::Tone,
        view::TimelineEntry,
        view::DeviceEnforcement,
        view::DeviceDetail,
        view::FunnelStep,
        view::FailureGroup,
        view::RolloutDetail,
        view::AuditView,
        view::Weekends,
        view::PolicyAction,
        view::DraftState,
        view::Lag,
        view::MembershipKind,
        view::RingView,
        view::RingPlanView,
        view::PolicyView,
        view::PinView,
        view::DraftRingView,
        view::DraftView,
        view::ComplianceSeriesView,
        view::LagCount,
        view::LaggingDevice,
        view::ComplianceReport,
        wizard::Selection,
        wizard::WavePlan,
        wizard::RolloutPlan,
        wizard::GatePlan,
        view::ExpectedPromptView,
        wizard::PreviewDevice,
        wizard::PreviewWave,
        wizard::Preview,
        updraft_mdm::Preset,
        settings::StatusChoice,
        settings::ServerSettings,
        settings::SettingsView,
        settings::CheckLine,
        commands::ServerTried,
        commands::ClockView,
        commands::ErrorCode,
        commands::CommandError,
        updraft_runtime::SyncHealth,
        updraft_runtime::SyncFailure,
    );
    out.push_str(&format!(
        "\n/** The most waves a rollout has. */\nexport const MAX_WAVES = {};\n\
         /** The longest DetailsURL the wizard takes. */\nexport const MAX_DETAILS_URL = {};\n\
         /** The most rows one devices-table query returns. */\nexport const MAX_DEVICE_ROWS = {};\n\
         /** The lab clock's speeds, in simulated minutes per second (0: stopped). */\n\
         export const LAB_SPEEDS = {:?};\n\
         /** The most rings a ring plan has. */\nexport const MAX_RINGS = {};\n",
        wizard::MAX_WAVES,
        wizard::MAX_DETAILS_URL,
        updraft_app::table::MAX_WINDOW,
        commands::SPEEDS,
        updraft_app::MAX_RINGS,
    ));
    out
}

/// ts-rs writes each field on a line of its own after a three-line doc comment, with trailing
/// spaces: this writes one indented line per field, its doc comment on one line above it.
fn tidy(declaration: &str) -> String {
    let mut out = String::new();
    let mut doc: Vec<&str> = Vec::new();
    let mut in_doc = false;
    for line in declaration.lines().map(str::trim) {
        match line {
            "/**" => in_doc = true,
            "*/" => in_doc = false,
            _ if in_doc => doc.push(line.trim_start_matches('*').trim()),
            _ => {
                let (body, closing) = match line.strip_suffix("};") {
                    Some(body) if line != "};" && line.contains(':') => (body.trim(), true),
                    _ => (line, false),
                };
                let field = body.contains(':') && !body.starts_with("export ");
                let indent = if field { "  " } else { "" };
                if !doc.is_empty() {
                    out.push_str(&format!("{indent}/** {} */\n", doc.join(" ")));
                    doc.clear();
                }
                out.push_str(&format!("{indent}{body}\n"));
                if closing {
                    out.push_str("};\n");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ui/src/lib/bindings.ts");

    #[test]
    fn bindings_match_the_rust_types() {
        let generated = super::typescript();
        if std::env::var_os("UPDRAFT_BLESS").is_some() {
            std::fs::write(FILE, &generated).expect("writing the bindings");
        }
        let committed = std::fs::read_to_string(FILE).unwrap_or_default();
        if committed != generated {
            let line = committed
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .map_or(
                    committed.lines().count().min(generated.lines().count()),
                    |n| n,
                );
            panic!(
                "ui/src/lib/bindings.ts is not what the Rust types generate (first difference at \
                 line {}: {:?} should be {:?}); run UPDRAFT_BLESS=1 cargo test -p updraft-desktop \
                 bindings, then fix what svelte-check finds",
                line + 1,
                committed.lines().nth(line).unwrap_or(""),
                generated.lines().nth(line).unwrap_or(""),
            );
        }
    }
}
