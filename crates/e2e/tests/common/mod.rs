//! What the end-to-end tests share: starting the app through tauri-driver, waiting for what a
//! screen shows, screenshots.
#![allow(dead_code)]

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn app_binary() -> PathBuf {
    std::env::var_os("UPDRAFT_APP")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/updraft-console"))
}

pub struct Driver {
    process: tokio::process::Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
    }
}

pub async fn start(
    data: &Path,
    env: &[(&str, &str)],
) -> Result<(Driver, Client), Box<dyn std::error::Error>> {
    let app = app_binary().canonicalize()?;
    let port = free_port();
    let native = std::iter::repeat_with(free_port)
        .find(|&other| other != port)
        .unwrap_or(0);
    let process = tokio::process::Command::new("tauri-driver")
        // Ports of its own: a WebKitWebDriver of an earlier session can outlive its tauri-driver
        // for a while and would answer this session with that one's app and environment.
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        // The app inherits tauri-driver's environment.
        .env("UPDRAFT_DATA_DIR", data)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let driver = Driver { process };
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), "wry".into());
    capabilities.insert(
        "tauri:options".into(),
        serde_json::json!({ "application": app }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return Ok((driver, client)),
            Err(error) if Instant::now() > deadline => return Err(error.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

pub async fn wait_for(
    client: &Client,
    css: &str,
    secs: u64,
) -> Result<Element, Box<dyn std::error::Error>> {
    Ok(client
        .wait()
        .at_most(Duration::from_secs(secs))
        .for_element(Locator::Css(css))
        .await
        .map_err(|e| format!("waiting for {css}: {e}"))?)
}

pub async fn text_of(client: &Client, css: &str) -> Result<String, Box<dyn std::error::Error>> {
    Ok(wait_for(client, css, 30).await?.text().await?)
}

/// Waits until the element's text satisfies `wanted` (screens fill in after their data arrives).
pub async fn wait_text(
    client: &Client,
    css: &str,
    secs: u64,
    wanted: impl Fn(&str) -> bool,
) -> Result<String, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = text_of(client, css).await?;
        if wanted(&text) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            return Err(format!("{css} still reads {text:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn shot(client: &Client, name: &str) -> TestResult {
    if let Some(dir) = std::env::var_os("UPDRAFT_SHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.png")), client.screenshot().await?)?;
    }
    Ok(())
}

pub async fn open(client: &Client, hash: &str) -> TestResult {
    client
        .execute(&format!("window.location.hash = {hash:?}"), vec![])
        .await?;
    Ok(())
}

/// Waits until Updraft's desktop notice containing `text` reached the notification daemon (when
/// `scripts/e2e` gives its log).
pub async fn wait_for_notice(text: &str) {
    let Some(log) = std::env::var_os("UPDRAFT_E2E_DUNST_LOG") else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = std::fs::read_to_string(&log).unwrap_or_default();
        if seen.contains("appname: 'Updraft'") && seen.contains(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dunst never showed Updraft's notice with {text:?}:\n{seen}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
