//! The app as a Mac admin's colleague on Linux gets it: installed from the .deb
//! (scripts/package-test sets UPDRAFT_APP to the installed binary), it opens its window on the lab
//! and announces a release. Run against the debug build by scripts/e2e too.

mod common;

use common::{TestResult, shot, start, text_of, wait_for};

#[tokio::test]
#[ignore = "needs a display, tauri-driver and WebKitWebDriver: run scripts/e2e or scripts/package-test"]
async fn the_app_opens_on_the_lab_and_announces_a_release() -> TestResult {
    let data = tempfile::tempdir()?;
    let (_driver, client) = start(
        data.path(),
        &[("UPDRAFT_LAB_DEVICES", "60"), ("UPDRAFT_LAB_SPEED", "0")],
    )
    .await?;
    let result: TestResult = async {
        let banner = text_of(&client, "[data-testid=lab-banner]").await?;
        assert!(banner.contains("simulated fleet"), "{banner}");
        let release = wait_for(&client, "[data-testid=release-banner]", 90)
            .await?
            .text()
            .await?;
        assert!(release.contains("applies to"), "{release}");
        let title = client.title().await?;
        assert_eq!(title, "Updraft");
        shot(&client, "installed-dashboard").await?;
        Ok(())
    }
    .await;
    client.close().await?;
    result
}
