//! The desktop console against a real server, end to end: `updraft serve` and `updraft fleet`
//! started as separate processes, the server chosen in Settings with its key stored through the
//! Secret Service, a rollout from the wizard followed to a failed device's reason and its
//! desktop notice, and the server killed and brought back under the console's eyes.

mod common;

use common::{TestResult, free_port, open, shot, start, text_of, wait_for, wait_text};
use fantoccini::{Client, Locator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "e2e-server-key";

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn updraft() -> Command {
    Command::new(common::workspace().join("target/debug/updraft"))
}

/// A device CA beside `db`, made as an admin makes one: (certificate, key).
fn device_ca(
    db: &std::path::Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf), std::io::Error> {
    let (certificate, key) = (db.with_extension("ca.pem"), db.with_extension("ca.key"));
    if !certificate.exists() {
        let made = updraft()
            .args(["serve", "device-ca", "--cert-out"])
            .arg(&certificate)
            .arg("--key-out")
            .arg(&key)
            .status()?;
        if !made.success() {
            return Err(std::io::Error::other("updraft serve device-ca failed"));
        }
    }
    Ok((certificate, key))
}

/// `updraft serve` on `port`, its log beside `db`; returns once it answers, or with its log if
/// it does not (a port taken between choosing it and binding it, say).
fn serve(db: &std::path::Path, port: u16, gateway: u16) -> Result<Process, std::io::Error> {
    let (device_ca, _) = device_ca(db)?;
    let log = db.with_extension("log");
    let mut process = Process(
        updraft()
            .args(["serve", "--db"])
            .arg(db)
            .arg("--device-ca")
            .arg(device_ca)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--push-gateway", &format!("http://127.0.0.1:{gateway}")])
            .env("UPDRAFT_API_KEY", KEY)
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listening = std::fs::read_to_string(&log)
            .is_ok_and(|text| text.contains(&format!("listening on http://127.0.0.1:{port}")));
        if listening {
            return Ok(process);
        }
        if process.0.try_wait()?.is_some() || Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "updraft serve did not start on port {port}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
#[ignore = "needs a display, tauri-driver, WebKitWebDriver and a Secret Service: run scripts/e2e"]
async fn an_admin_follows_a_real_server_from_settings_to_a_failed_device() -> TestResult {
    let data = tempfile::tempdir()?;
    let (port, gateway) = (free_port(), free_port());
    let db = data.path().join("server.db");
    let mut server = Some(serve(&db, port, gateway)?);
    let (identity_ca, identity_ca_key) = device_ca(&db)?;
    let _fleet = Process(
        updraft()
            .args([
                "fleet",
                "--mdm-url",
                &format!("http://127.0.0.1:{port}/mdm"),
            ])
            .args(["--devices", "24", "--seed", "5", "--failure-rate", "0.5"])
            .args(["--speed", "30", "--gateway-listen"])
            .arg(format!("127.0.0.1:{gateway}"))
            .arg("--identity-ca")
            .arg(&identity_ca)
            .arg("--identity-ca-key")
            .arg(&identity_ca_key)
            .stderr(Stdio::null())
            .spawn()?,
    );

    // First start (a tiny lab): choose the server in Settings.
    let app_data = data.path().join("app");
    {
        let (_driver, client) = start(
            &app_data,
            &[("UPDRAFT_LAB_DEVICES", "3"), ("UPDRAFT_LAB_SPEED", "0")],
        )
        .await?;
        let result = choose_server(&client, port).await;
        if result.is_err() {
            let _ = shot(&client, "server-failure-settings").await;
        }
        client.close().await?;
        result?;
    }
    // Apple's lookup service is out of reach here, and the bundled capture's releases expired in
    // July 2026: the saved copy the console starts from is that capture without its expiration
    // dates, as a current answer would offer them.
    let mut capture: serde_json::Value = serde_json::from_slice(&std::fs::read(
        common::workspace().join("crates/feed/data/pmv_2026-04-11.json"),
    )?)?;
    strip_expiration(&mut capture);
    std::fs::write(
        app_data.join("feed.json"),
        serde_json::to_vec(&serde_json::json!({ "etag": null, "data": capture }))?,
    )?;

    // Second start: the console follows the server.
    let (_driver, client) = start(&app_data, &[("UPDRAFT_SYNC_SECONDS", "3")]).await?;
    let result = follow(&client, &mut server, &db, port, gateway).await;
    if result.is_err() {
        let _ = shot(&client, "server-failure").await;
    }
    client.close().await?;
    result
}

fn strip_expiration(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("ExpirationDate");
            map.values_mut().for_each(strip_expiration);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_expiration),
        _ => {}
    }
}

async fn choose_server(client: &Client, port: u16) -> TestResult {
    open(client, "#/settings").await?;
    wait_for(client, "[data-field=preset]", 30).await?;
    client
        .execute(
            "const s = document.querySelector('[data-field=preset]'); s.value = 'updraft'; s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await?;
    wait_for(client, "[data-field=url]", 10)
        .await?
        .send_keys(&format!("http://127.0.0.1:{port}/"))
        .await?;
    wait_for(client, "[data-field=api-key]", 10)
        .await?
        .send_keys(KEY)
        .await?;
    wait_for(client, "button.primary[type=submit]", 10)
        .await?
        .click()
        .await?;
    let saved = text_of(client, "p.notice").await;
    let checks = text_of(client, "[data-checks]").await.unwrap_or_default();
    let saved = saved.map_err(|e| format!("{e}; checks: {checks}"))?;
    assert!(saved.contains("Every check passed"), "{saved}");
    assert!(checks.contains("admin API"), "{checks}");
    shot(client, "settings-server").await?;
    Ok(())
}

async fn follow(
    client: &Client,
    server: &mut Option<Process>,
    db: &std::path::Path,
    port: u16,
    gateway: u16,
) -> TestResult {
    // No lab banner: this is a real server, and its devices arrive through it.
    wait_text(client, "main", 120, |text| text.contains("24 devices")).await?;
    assert!(
        client
            .find_all(Locator::Css("[data-testid=lab-banner]"))
            .await?
            .is_empty()
    );
    shot(client, "server-dashboard").await?;
    open(client, "#/wizard").await?;
    wait_for(client, "input[name=release]", 30)
        .await?
        .click()
        .await?;
    // Next until the confirm step (each step waits for its data, the preview longest).
    for _ in 0..12 {
        if !client
            .find_all(Locator::Css("[data-testid=confirm-rollout]"))
            .await?
            .is_empty()
        {
            break;
        }
        wait_for(client, "[data-testid=wizard-next]:not([disabled])", 30)
            .await?
            .click()
            .await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    wait_for(client, "[data-testid=confirm-rollout]", 30)
        .await?
        .click()
        .await?;
    let state = text_of(client, "[data-testid=rollout-state]").await?;
    assert_eq!(state, "active");

    // The fleet's faults fail some installs; the funnel shows them as the console reads them.
    wait_for(client, "[data-testid=funnel] tr[data-phase=failed]", 240).await?;
    shot(client, "server-rollout").await?;
    // A funnel row opens the devices table filtered to that rollout and state.
    wait_for(client, "[data-testid=funnel] tr[data-phase=failed] a", 10)
        .await?
        .click()
        .await?;
    wait_for(client, ".vrow .pill", 30).await?;
    let filter = wait_for(client, "[data-testid=state-filter]", 10).await?;
    assert_eq!(filter.prop("value").await?.as_deref(), Some("failed"));
    for pill in client.find_all(Locator::Css(".vrow .pill")).await? {
        assert_eq!(pill.attr("class").await?.as_deref(), Some("pill failed"));
    }
    client.back().await?;
    wait_for(client, "details summary", 10)
        .await?
        .click()
        .await?;
    wait_for(client, "ul.devices a", 10).await?.click().await?;
    let reason = text_of(client, "[data-testid=device-reason]").await?;
    assert!(!reason.is_empty(), "a failed device shows its reason");
    let timeline = text_of(client, "[data-testid=timeline]").await?;
    for event in ["Declaration assigned", "Push sent", "Install failed"] {
        assert!(timeline.contains(event), "{event} missing:\n{timeline}");
    }
    shot(client, "server-device").await?;
    common::wait_for_notice("failed on").await;

    // The server goes away: the console says its data is stale, then recovers by itself.
    drop(server.take());
    wait_text(client, "[data-stale]", 60, |text| {
        text.contains("Last sync failed")
    })
    .await?;
    shot(client, "server-stale").await?;
    *server = Some(serve(db, port, gateway)?);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .find_all(Locator::Css("[data-stale]"))
        .await?
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the stale banner never cleared");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
