//! Choosing a real DDM server in Settings, against Updraft's own server on loopback: the right key
//! is kept (in the keychain, not the file), a wrong one is refused with the reason.

use std::sync::Arc;

use updraft_app::settings::{
    MemorySecrets, SecretStore, ServerSettings, Settings, StatusChoice, try_server, use_server,
};
use updraft_mdm::Preset;
use updraft_server::{AppState, Db, Limits, NoPusher, SealingKey, ServerConfig};

async fn server(dir: &std::path::Path) -> String {
    let db = Db::open(&dir.join("server.db")).await.expect("server db");
    let state = AppState::new(ServerConfig {
        db,
        clock: Arc::new(updraft_clock::SystemClock),
        pusher: Arc::new(NoPusher),
        sealing_key: SealingKey::from_bytes(&[7; 32]),
        api_key: Some("right-key".into()),
        forwarding: updraft_server::DdmForwarding::Off,
        device_trust: None,
        push_certificate: None,
        webhook: None,
        limits: Limits::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, updraft_server::app(state)).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_key_is_kept_in_the_keychain_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let url = server(dir.path()).await;
    let path = dir.path().join("settings.json");
    let keychain = MemorySecrets::default();

    let refused = use_server(
        &path,
        &keychain,
        ServerSettings::updraft(&url),
        "wrong-key",
        None,
    )
    .await
    .expect_err("a wrong key is refused");
    let refused = refused.to_string();
    assert!(refused.contains("admin API"), "{refused}");
    assert!(refused.contains("check the key"), "{refused}");
    assert!(!path.exists(), "nothing saved after a refusal");

    let (settings, lines) = use_server(
        &path,
        &keychain,
        ServerSettings::updraft(&url),
        " right-key ",
        None,
    )
    .await
    .expect("the right key");
    assert!(lines.iter().all(|l| l.ok), "{lines:?}");
    assert_eq!(settings, Settings::Server(ServerSettings::updraft(&url)));
    assert_eq!(keychain.api_key(&url), Ok(Some("right-key".into())));
    assert_eq!(Settings::load(&path).expect("load"), settings);
    assert!(
        !std::fs::read_to_string(&path)
            .expect("read")
            .contains("right-key")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_prefix_is_told_apart_from_a_wrong_key_and_an_empty_list() {
    let dir = tempfile::tempdir().expect("dir");
    let url = server(dir.path()).await;
    // NanoHUB's prefix against updraft serve: nothing there, and where the API is instead.
    let mut hub = ServerSettings::updraft(&url);
    hub.preset = Preset::NanoHub;
    let lines = try_server(&hub, "right-key", None).await;
    let api = lines
        .iter()
        .find(|l| l.what == "admin API")
        .expect("admin API line");
    assert!(!api.ok);
    assert!(api.detail.contains("404"), "{}", api.detail);
    assert!(api.detail.contains("/v1 instead"), "{}", api.detail);

    // The right API, but polling with nothing to poll.
    let mut polling = ServerSettings::updraft(&url);
    polling.status = StatusChoice::Polling {
        enrollments: "\n# none yet\n".into(),
        every_minutes: 5,
    };
    let lines = try_server(&polling, "right-key", None).await;
    assert!(
        lines.iter().any(|l| l.what == "admin API" && l.ok),
        "{lines:?}"
    );
    let status = lines
        .iter()
        .find(|l| l.what == "status")
        .expect("status line");
    assert!(!status.ok && status.detail.contains("empty"), "{status:?}");
}
