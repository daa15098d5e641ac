//! ARCHITECTURE.md's invariants, checked.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Normal (non-dev, non-build) dependencies of every package, by name, transitively.
fn transitive_dependencies(package: &str) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, Vec<&str>> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let normal = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|dep| dep["pkg"].as_str().unwrap())
                .collect();
            (node["id"].as_str().unwrap(), normal)
        })
        .collect();
    let start = names
        .iter()
        .find(|(_, name)| **name == package)
        .map(|(id, _)| *id)
        .expect("package exists");
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        for dep in nodes.get(id).into_iter().flatten() {
            if seen.insert(names[dep].to_owned()) {
                stack.push(dep);
            }
        }
    }
    seen
}

const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "reqwest",
    "hyper",
    "axum",
    "sqlx",
    "rusqlite",
    "tauri",
    "notify-rust",
    "keyring",
];

#[test]
fn ddm_depends_on_no_io_runtime_and_no_other_updraft_crate() {
    let deps = transitive_dependencies("updraft-ddm");
    for forbidden in IO_CRATES {
        assert!(
            !deps.contains(*forbidden),
            "updraft-ddm must not depend on {forbidden}"
        );
    }
    assert!(
        !deps.iter().any(|d| d.starts_with("updraft-")),
        "updraft-ddm is the bottom layer: {deps:?}"
    );
}

/// Its client takes the error description from `updraft-trust` (a leaf over reqwest), never its
/// trust store: the lookup service is trusted through Apple's root alone.
#[test]
fn feed_depends_only_on_ddm_and_trust_among_updraft_crates() {
    let deps = transitive_dependencies("updraft-feed");
    let ours: Vec<_> = deps.iter().filter(|d| d.starts_with("updraft-")).collect();
    assert_eq!(ours, ["updraft-ddm", "updraft-trust"]);
    let trust: Vec<_> = transitive_dependencies("updraft-trust")
        .into_iter()
        .filter(|d| d.starts_with("updraft-"))
        .collect();
    assert!(trust.is_empty(), "updraft-trust is a leaf: {trust:?}");
}

/// Reading the clock, touching files or sockets, or going async in a pure module is a bug:
/// time and I/O are the callers' business.
fn assert_pure(files: &[PathBuf]) {
    let forbidden = [
        "Utc::now",
        "Local::now",
        "SystemTime",
        "Instant::now",
        "std::fs",
        "std::net",
        "tokio",
        "async fn",
        "thread::spawn",
        "rand::",
    ];
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for needle in forbidden {
            assert!(
                !text.contains(needle),
                "{} contains {needle:?}",
                file.display()
            );
        }
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn ddm_sources_read_no_clock_and_do_no_io() {
    let files = rust_files(&workspace_root().join("crates/ddm/src"));
    assert!(files.len() >= 5);
    assert_pure(&files);
}

/// Normal dependencies of a package built on its own (its own feature selection, not the
/// workspace's union), by name.
fn own_build_dependencies(package: &str) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree", "-p", package, "-e", "normal", "--prefix", "none", "--locked", "--format",
            "{p}",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn engine_is_pure_and_reaches_no_io_crate() {
    let deps = own_build_dependencies("updraft-engine");
    for forbidden in IO_CRATES {
        assert!(
            !deps.contains(*forbidden),
            "updraft-engine must not depend on {forbidden}"
        );
    }
    let ours: Vec<_> = deps.iter().filter(|d| d.starts_with("updraft-")).collect();
    assert_eq!(ours, ["updraft-ddm", "updraft-engine", "updraft-feed"]);
    assert_pure(&rust_files(&workspace_root().join("crates/engine/src")));
}

#[test]
fn devices_and_console_meet_only_over_http() {
    // The simulator knows nothing of the server or the console, and the server nothing of the
    // console: they meet only on the wire.
    for (package, forbidden) in [
        (
            "updraft-sim",
            &[
                "updraft-server",
                "updraft-console",
                "updraft-engine",
                "updraft-store",
                "updraft-mdm",
            ][..],
        ),
        (
            "updraft-server",
            &[
                "updraft-console",
                "updraft-engine",
                "updraft-store",
                "updraft-mdm",
                "updraft-sim",
            ][..],
        ),
        ("updraft-console", &["updraft-server", "updraft-sim"][..]),
    ] {
        let deps = transitive_dependencies(package);
        for crate_name in forbidden {
            assert!(
                !deps.contains(*crate_name),
                "{package} must not depend on {crate_name}"
            );
        }
    }
}

#[test]
fn feed_parsing_and_applicability_are_pure() {
    let src = workspace_root().join("crates/feed/src");
    assert_pure(&[src.join("response.rs"), src.join("applicability.rs")]);
}

#[test]
fn every_crate_is_described_in_architecture_md() {
    let architecture = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(workspace_root().join("crates")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            architecture.contains(&format!("`crates/{name}`")),
            "ARCHITECTURE.md does not describe crates/{name}"
        );
    }
}
