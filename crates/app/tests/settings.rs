//! Choosing a real DDM server in Settings, against Updraft's own server on loopback: the right key
//! is kept (in the keychain, not the file), a wrong one is refused with the reason.

use std::sync::Arc;

use updraft_app::settings::{MemorySecrets, SecretStore, Settings, use_server};
use updraft_server::{AppState, Db, Limits, NoPusher, SealingKey, ServerConfig};

async fn server(dir: &std::path::Path) -> String {
    let db = Db::open(&dir.join("server.db")).await.expect("server db");
    let state = AppState::new(ServerConfig {
        db,
        clock: Arc::new(updraft_clock::SystemClock),
        pusher: Arc::new(NoPusher),
        sealing_key: SealingKey::from_bytes(&[7; 32]),
        api_key: Some("right-key".into()),
        hmac_key: None,
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

    let refused = use_server(&path, &keychain, &url, "wrong-key")
        .await
        .expect_err("a wrong key is refused");
    assert!(
        refused.to_string().contains(url.trim_end_matches('/')),
        "{refused}"
    );
    assert!(!path.exists(), "nothing saved after a refusal");

    let settings = use_server(&path, &keychain, &url, " right-key ")
        .await
        .expect("the right key");
    assert_eq!(settings, Settings::Server { url: url.clone() });
    assert_eq!(keychain.api_key(&url), Ok(Some("right-key".into())));
    assert_eq!(Settings::load(&path).expect("load"), settings);
    assert!(
        !std::fs::read_to_string(&path)
            .expect("read")
            .contains("right-key")
    );
}
