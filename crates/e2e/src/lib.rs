//! Nothing to build: this crate holds `tests/desktop.rs`, the end-to-end tests of the desktop app,
//! which `scripts/e2e` runs under Xvfb with a private D-Bus session and a notification daemon.
