//! Rings and release policies end to end, in the real window on the desktop's own lab (a fleet
//! with many faults): the admin saves a ring plan, a macOS policy drafts 26.4.1 at once, the
//! dashboard offers the draft, the admin starts it; the pilot waits on its gate, then halts when
//! the IT ring fails; the compliance chart shows each ring; a group is pinned one major behind.
//!
//! Needs what `desktop.rs` needs; `scripts/e2e` runs it.

mod common;

use common::{TestResult, open, shot, start, text_of, wait_for, wait_text};
use fantoccini::{Client, Locator};

#[tokio::test]
#[ignore = "needs a display, tauri-driver and WebKitWebDriver: run scripts/e2e"]
async fn an_admin_defines_rings_and_starts_what_a_policy_drafted() -> TestResult {
    let data = tempfile::tempdir()?;
    let (_driver, client) = start(
        data.path(),
        &[
            ("UPDRAFT_LAB_DEVICES", "120"),
            ("UPDRAFT_LAB_SPEED", "0"),
            ("UPDRAFT_LAB_FAILURE_PERCENT", "60"),
        ],
    )
    .await?;
    let result = scenario(&client).await;
    if result.is_err() {
        let _ = shot(&client, "policies-failure").await;
    }
    client.close().await?;
    result
}

async fn click(client: &Client, css: &str) -> TestResult {
    wait_for(client, css, 30).await?.click().await?;
    Ok(())
}

async fn scenario(client: &Client) -> TestResult {
    wait_for(client, "[data-testid=release-banner]", 60).await?;

    // A ring plan from the template, its IT ring widened to a fifth of the fleet.
    open(client, "#/policies").await?;
    // The screen has loaded (the policy forms need its data) before anything is clicked: a
    // click on a button the loading screen is still moving can land beside it.
    wait_for(client, "[data-testid=policy-macOS]", 30).await?;
    click(client, "[data-testid=new-ring-plan]").await?;
    let share = wait_for(
        client,
        "[data-testid=ring-editor] tbody tr:first-child input[type=number]",
        10,
    )
    .await?;
    share.clear().await?;
    share.send_keys("20").await?;
    shot(client, "ring-plan-editor").await?;
    click(client, "[data-testid=save-ring-plan]").await?;
    wait_text(client, "[data-testid=policies-message]", 10, |s| {
        s.contains("Ring plan “Standard” saved")
    })
    .await?;
    let plans = text_of(client, "[data-testid=ring-plans]").await?;
    assert!(plans.contains("IT (20%) day 0"), "{plans}");

    // The macOS policy drafts the newest release at once: it was posted within two weeks.
    click(client, "[data-testid=save-policy-macOS]:not([disabled])").await?;
    let message = wait_text(client, "[data-testid=policies-message]", 30, |s| {
        s.contains("It drafted")
    })
    .await?;
    assert!(message.contains("macOS 26.4.1"), "{message}");
    shot(client, "policies").await?;

    // The dashboard offers it; the admin reviews the rings and starts it.
    open(client, "#/dashboard").await?;
    let banner = wait_for(client, "[data-testid=draft-banner]", 30).await?;
    assert!(
        banner
            .text()
            .await?
            .contains("drafted by its release policy")
    );
    banner.find(Locator::Css("a")).await?.click().await?;
    let rings = text_of(client, "[data-testid=draft-rings]").await?;
    for ring in ["IT", "Pilot", "Everyone"] {
        assert!(rings.contains(ring), "{rings}");
    }
    shot(client, "draft").await?;
    click(client, "[data-testid=start-draft]").await?;
    wait_for(client, "a[href='#/rollout/2']", 30).await?;

    // The pilot waits on its gate, and says for what.
    open(client, "#/rollout/2").await?;
    wait_text(client, "[data-testid=rollout-state]", 30, |s| s == "gated").await?;
    let gate = text_of(client, "[data-testid=gate]").await?;
    assert!(gate.starts_with("waits for rollout 1:"), "{gate}");
    shot(client, "rollout-ring-waits").await?;

    // A day later the IT ring's installs have failed: the pilot is halted, with the reason.
    click(client, "[data-testid=skip-day]").await?;
    wait_text(client, "[data-testid=rollout-state]", 60, |s| s == "halted").await?;
    let halted = text_of(client, "[data-testid=gate]").await?;
    assert!(halted.contains("failed"), "{halted}");
    shot(client, "rollout-ring-halted").await?;

    // The compliance chart: the whole platform and each ring.
    open(client, "#/compliance?platform=macOS").await?;
    wait_for(client, "[data-testid=compliance-chart] polyline", 30).await?;
    let legend = text_of(client, "[data-testid=compliance-legend]").await?;
    for ring in ["All", "IT", "Pilot"] {
        assert!(legend.contains(ring), "{legend}");
    }
    let lagging = text_of(client, "[data-testid=lagging]").await?;
    assert!(lagging.contains("ring waits on its gate"), "{lagging}");
    shot(client, "compliance").await?;

    // A group pinned one major behind, for rollouts started from now on.
    open(client, "#/policies").await?;
    wait_for(client, "[data-testid=policy-macOS]", 30).await?;
    let form = wait_for(client, "[data-testid=pin-form]", 30).await?;
    form.find(Locator::Css("input[placeholder='Audio studio']"))
        .await?
        .send_keys("Audio studio")
        .await?;
    form.find(Locator::Css("input[placeholder='STUDIO-*']"))
        .await?
        .send_keys("STUDIO-*")
        .await?;
    click(client, "[data-testid=save-pin]").await?;
    let pins = text_of(client, "[data-testid=pins]").await?;
    assert!(
        pins.contains("Audio studio") && pins.contains("name STUDIO-*") && pins.contains("N-1"),
        "{pins}"
    );
    Ok(())
}
