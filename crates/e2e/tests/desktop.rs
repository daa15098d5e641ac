//! The desktop console end to end: the real app binary in its real window, driven like an admin
//! would through tauri-driver and WebKitWebDriver, on the lab it opens by default.
//!
//! Needs a display, `tauri-driver` and `WebKitWebDriver`, and a built app
//! (`target/debug/updraft-console`, or `UPDRAFT_APP`); `scripts/e2e` provides all of it under
//! Xvfb with a private D-Bus session and dunst, whose log it passes as `UPDRAFT_E2E_DUNST_LOG`.
//! `UPDRAFT_SHOTS=<dir>` saves a screenshot of every screen on the way.

mod common;

use common::{TestResult, open, shot, start, text_of, wait_for, wait_text};
use fantoccini::{Client, Locator};
use std::time::Duration;

#[tokio::test]
#[ignore = "needs a display, tauri-driver and WebKitWebDriver: run scripts/e2e"]
async fn an_admin_rolls_out_an_update_in_the_lab_and_follows_a_failure_to_its_reason() -> TestResult
{
    let data = tempfile::tempdir()?;
    // A small lab whose clock the test moves.
    let (_driver, client) = start(
        data.path(),
        &[("UPDRAFT_LAB_DEVICES", "120"), ("UPDRAFT_LAB_SPEED", "0")],
    )
    .await?;
    let result = scenario(&client).await;
    if result.is_err() {
        let _ = shot(&client, "failure").await;
    }
    client.close().await?;
    result
}

async fn scenario(client: &Client) -> TestResult {
    // First start: the lab, said plainly, and a new release announced on the dashboard.
    let banner = text_of(client, "[data-testid=lab-banner]").await?;
    assert!(banner.contains("simulated fleet"), "{banner}");
    let release = wait_for(client, "[data-testid=release-banner]", 60).await?;
    let announced = release.text().await?;
    assert!(announced.contains("applies to"), "{announced}");
    shot(client, "dashboard").await?;

    // The wizard, step by step, from the banner.
    release.find(Locator::Css("a")).await?.click().await?;
    wait_for(client, "input[name=release]:checked", 30).await?;
    // What each release fixes, from SOFA.
    let cves = text_of(client, "[data-testid=release-cves]").await?;
    assert!(cves.contains("CVEs"), "{cves}");
    // The lab's clock stands still while the wizard is open.
    wait_for(client, "[data-testid=clock-held]", 10).await?;
    shot(client, "wizard-1-release").await?;
    wait_for(client, "[data-testid=wizard-next]", 10)
        .await?
        .click()
        .await?;
    shot(client, "wizard-2-devices").await?;
    wait_for(client, "[data-testid=wizard-next]", 10)
        .await?
        .click()
        .await?;
    wait_for(client, "[data-testid=deadline-1]", 10).await?;
    let details = wait_for(client, "[data-testid=details-url]", 10).await?;
    details.send_keys("https://it.example.com/updates").await?;
    shot(client, "wizard-3-deadline").await?;
    wait_for(client, "[data-testid=wizard-next]", 10)
        .await?
        .click()
        .await?;
    let summary = text_of(client, "[data-testid=preview-summary]").await?;
    assert!(summary.contains("devices in 1 wave"), "{summary}");
    shot(client, "wizard-4-preview").await?;
    wait_for(client, "[data-testid=wizard-next]", 10)
        .await?
        .click()
        .await?;
    shot(client, "wizard-5-confirm").await?;
    wait_for(client, "[data-testid=confirm-rollout]", 10)
        .await?
        .click()
        .await?;

    // The rollout page; time moves a day at a time until nothing is in progress.
    let state = text_of(client, "[data-testid=rollout-state]").await?;
    assert_eq!(state, "active");
    assert!(
        client
            .find_all(Locator::Css("[data-testid=clock-held]"))
            .await?
            .is_empty(),
        "the clock runs again once the wizard is closed"
    );
    let mut days = 0;
    loop {
        let before = text_of(client, "[data-testid=clock]").await?;
        wait_for(client, "[data-testid=skip-day]:not([disabled])", 120)
            .await?
            .click()
            .await?;
        days += 1;
        // The day has passed once the clock shows it (a slow machine takes longer).
        wait_text(client, "[data-testid=clock]", 120, |now| now != before).await?;
        wait_for(client, "[data-testid=skip-day]:not([disabled])", 120).await?;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut phases = Vec::new();
        for row in client
            .find_all(Locator::Css("[data-testid=funnel] tr[data-phase]"))
            .await?
        {
            phases.push(row.attr("data-phase").await?.unwrap_or_default());
        }
        let open = phases.iter().any(|p| {
            !["cleaned_up", "failed", "invalid", "excluded", "cancelled"].contains(&p.as_str())
        });
        if !open || days > 14 {
            assert!(!open, "still in progress after {days} days: {phases:?}");
            assert!(phases.contains(&"cleaned_up".to_owned()), "{phases:?}");
            assert!(
                phases.contains(&"failed".to_owned()),
                "the lab's faults fail some installs: {phases:?}"
            );
            break;
        }
    }
    shot(client, "rollout").await?;

    // A failed device: its timeline says what Apple said.
    wait_for(client, "details summary", 10)
        .await?
        .click()
        .await?;
    wait_for(client, "ul.devices a", 10).await?.click().await?;
    let reason = text_of(client, "[data-testid=device-reason]").await?;
    assert!(!reason.is_empty(), "a failed device shows its reason");
    let timeline = text_of(client, "[data-testid=timeline]").await?;
    for event in ["Declaration assigned", "Push sent", "Install failed"] {
        assert!(
            timeline.contains(event),
            "{event} missing from the timeline:\n{timeline}"
        );
    }
    shot(client, "device").await?;

    // The other screens open and show their data.
    open(client, "#/devices").await?;
    wait_text(client, "[data-testid=device-total]", 30, |total| {
        total == "120"
    })
    .await?;
    wait_for(client, "[data-device]", 10).await?;
    shot(client, "devices").await?;
    open(client, "#/releases").await?;
    wait_for(client, "[data-testid=releases-macOS]", 10).await?;
    shot(client, "releases").await?;
    open(client, "#/rollouts").await?;
    shot(client, "rollouts").await?;
    open(client, "#/alerts").await?;
    let alerts = text_of(client, "table.alerts").await?;
    assert!(alerts.contains("install failed"), "{alerts}");
    shot(client, "alerts").await?;
    open(client, "#/audit").await?;
    let audit = text_of(client, "main table").await?;
    assert!(audit.contains("rollout started"), "{audit}");
    shot(client, "audit").await?;
    open(client, "#/settings").await?;
    let settings = text_of(client, "main").await?;
    assert!(settings.contains("Running now: the lab"), "{settings}");
    shot(client, "settings").await?;
    open(client, "#/dashboard").await?;
    wait_for(client, "meter", 10).await?;
    shot(client, "dashboard-after").await?;

    // The desktop notice reached the notification daemon.
    common::wait_for_notice("failed on").await;

    gated_waves(client).await
}

/// iOS in two waves behind a gate: the Releases screen says what the release fixes, the second
/// wave waits and says why, and the admin starts it by hand.
async fn gated_waves(client: &Client) -> TestResult {
    open(client, "#/releases").await?;
    let macos = text_of(client, "[data-testid=releases-macOS]").await?;
    assert!(
        macos.contains("exploited"),
        "SOFA's exploited CVEs: {macos}"
    );
    wait_for(
        client,
        "[data-testid=releases-iOS] a[href^='#/wizard/']",
        10,
    )
    .await?
    .click()
    .await?;
    wait_for(client, "input[name=release]:checked", 30).await?;
    wait_for(client, "[data-testid=wizard-next]", 10)
        .await?
        .click()
        .await?;
    wait_for(client, "[data-testid=wave-count]", 10)
        .await?
        .select_by_value("2")
        .await?;
    wait_for(client, "[data-testid=gated]", 10)
        .await?
        .click()
        .await?;
    wait_for(client, "[data-testid=gate-updated]", 10).await?;
    shot(client, "wizard-2-gated-waves").await?;
    for _ in 0..3 {
        wait_for(client, "[data-testid=wizard-next]:not([disabled])", 30)
            .await?
            .click()
            .await?;
    }
    wait_for(client, "[data-testid=confirm-rollout]", 10)
        .await?
        .click()
        .await?;
    wait_text(client, "[data-testid=rollout-state]", 30, |s| s == "active").await?;
    let first: i64 = client
        .current_url()
        .await?
        .fragment()
        .and_then(|f| f.rsplit('/').next())
        .and_then(|id| id.parse().ok())
        .ok_or("the wizard opens the first wave's page")?;
    open(client, &format!("#/rollout/{}", first + 1)).await?;
    wait_text(client, "[data-testid=rollout-state]", 30, |s| s == "gated").await?;
    let gate = text_of(client, "[data-testid=gate]").await?;
    assert!(
        gate.starts_with(&format!("waits for rollout {first}:")),
        "{gate}"
    );
    shot(client, "rollout-gated").await?;
    wait_for(client, "[data-testid=promote]", 10)
        .await?
        .click()
        .await?;
    wait_text(client, "[data-testid=rollout-state]", 30, |s| s == "active").await?;
    Ok(())
}
