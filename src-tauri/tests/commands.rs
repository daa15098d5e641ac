//! The UI calls commands by name, and Tauri answers only those registered in the handler, declared
//! in build.rs and granted in the capability file. A command missing from any of the four fails
//! at run time with nothing but a refused call: this keeps the four lists the same.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

/// Every `"name"` that follows `marker` in `text`, up to the closing quote.
fn quoted_after(text: &str, marker: &str) -> BTreeSet<String> {
    text.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            let start = rest.find('"')? + 1;
            let end = rest[start..].find('"')?;
            Some(rest[start..start + end].to_owned())
        })
        .collect()
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not found"))
        + start.len();
    let to = from
        + text[from..]
            .find(end)
            .unwrap_or_else(|| panic!("{end:?} not found"));
    &text[from..to]
}

#[test]
fn every_command_the_ui_calls_is_registered_declared_and_granted() {
    let called = quoted_after(&read("../ui/src/lib/api.ts"), "invoke<");
    assert!(called.len() > 20, "found only {called:?} in api.ts");

    let handler: BTreeSet<String> = between(&read("src/lib.rs"), "generate_handler![", "]")
        .split(',')
        .map(|name| name.trim().trim_start_matches("commands::").to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    let declared: BTreeSet<String> = between(&read("build.rs"), "const COMMANDS", "];")
        .lines()
        .filter_map(|line| line.trim().strip_prefix('"')?.split('"').next())
        .map(str::to_owned)
        .collect();
    let capability: serde_json::Value =
        serde_json::from_str(&read("capabilities/main.json")).expect("capability JSON");
    let granted: BTreeSet<String> = capability["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter_map(|p| p.as_str()?.strip_prefix("allow-"))
        .map(|p| p.replace('-', "_"))
        .collect();

    assert_eq!(
        handler, called,
        "registered in src/lib.rs vs called in ui/src/lib/api.ts"
    );
    assert_eq!(
        declared, called,
        "declared in build.rs vs called in ui/src/lib/api.ts"
    );
    assert_eq!(
        granted, called,
        "granted in capabilities/main.json vs called in api.ts"
    );
}

/// Desktop notices on macOS and Windows are sent in the name of the bundle identifier; the
/// constant in lib.rs must be the one tauri.conf.json gives the app.
#[test]
fn notices_are_sent_under_the_apps_own_identifier() {
    let config: serde_json::Value =
        serde_json::from_str(&read("tauri.conf.json")).expect("tauri.conf.json");
    let identifier = config["identifier"].as_str().expect("identifier");
    assert!(
        read("src/lib.rs").contains(&format!("const APP_IDENTIFIER: &str = \"{identifier}\";")),
        "APP_IDENTIFIER in src/lib.rs is not {identifier}"
    );
}
