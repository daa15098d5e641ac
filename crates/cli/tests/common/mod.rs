//! What the `updraft` command's tests share: a device CA made as an admin would make it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A device CA made by `updraft serve device-ca` in `dir` (once): (certificate, key).
pub fn device_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let (certificate, key) = (dir.join("device-ca.pem"), dir.join("device-ca.key"));
    if !certificate.exists() {
        let output = Command::new(env!("CARGO_BIN_EXE_updraft"))
            .args(["serve", "device-ca", "--cert-out"])
            .arg(&certificate)
            .arg("--key-out")
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (certificate, key)
}
