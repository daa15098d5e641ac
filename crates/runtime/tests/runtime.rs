//! The runtime, headless, on a manual wall clock: it follows a real `updraft serve` on loopback at
//! its cadence, says when a sync fails and when it recovers, and polls the lookup service every
//! six hours.

use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use updraft_app::Session;
use updraft_clock::{ManualClock, SharedClock};
use updraft_feed::LookupResponse;
use updraft_mdm::{Deployment, KmfddmClient};
use updraft_runtime::{Cadence, Event, FeedSource, Runtime};
use updraft_server::{AppState, Db, Limits, NoPusher, SealingKey, ServerConfig};

/// Serves `updraft serve` on `listener` until the task is aborted.
async fn serve(
    dir: &std::path::Path,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    let state = AppState::new(ServerConfig {
        db: Db::open(&dir.join("server.db")).await.unwrap(),
        clock: Arc::new(updraft_clock::SystemClock),
        pusher: Arc::new(NoPusher),
        sealing_key: SealingKey::from_bytes(&[4; 32]),
        api_key: Some("key".into()),
        forwarding: updraft_server::DdmForwarding::Off,
        device_trust: None,
        push_certificate: None,
        webhook: None,
        limits: Limits::default(),
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, updraft_server::app(state)).await;
    })
}

fn bundled() -> LookupResponse {
    LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes()).unwrap()
}

/// Counts polls, answering nothing new.
struct CountingFeed(Arc<AtomicUsize>);

#[async_trait]
impl FeedSource for CountingFeed {
    async fn poll(&self) -> anyhow::Result<Option<LookupResponse>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }
}

fn health_events(events: &[Event]) -> Vec<&updraft_runtime::SyncHealth> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Health(health) => Some(health),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_shows_as_stale_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = serve(dir.path(), listener).await;
    let client = Arc::new(KmfddmClient::updraft(&format!("http://{address}"), "key").unwrap());
    let wall = Arc::new(ManualClock::new("2026-12-02T10:00:00Z".parse().unwrap()));
    let shared: SharedClock = wall.clone();
    let session = Session::server(
        &dir.path().join("console.db"),
        Arc::new(Deployment::single(client.clone())),
        shared.clone(),
        &bundled(),
    )
    .await
    .unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let mut runtime = Runtime::new(
        Arc::new(session),
        shared,
        Cadence::default(),
        Some(Box::new(CountingFeed(polls.clone()))),
    )
    .await;

    let events = runtime.turn(0).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::FleetChanged(_))),
        "{events:?}"
    );
    assert_eq!(
        runtime.health().last_good.as_deref(),
        Some("2026-12-02T10:00:00Z")
    );
    assert!(!runtime.health().is_stale());
    // The first sync put the status subscriptions on the server.
    assert!(
        client.declaration_ids().await.unwrap().len() >= 2,
        "the base declarations are on the server"
    );
    assert_eq!(polls.load(Ordering::Relaxed), 1);

    // Nothing is due 10 s later.
    wall.advance(chrono::Duration::seconds(10));
    assert!(runtime.turn(0).await.is_empty());

    // The server goes away: the next sync fails, and the shell hears it once.
    server.abort();
    let _ = server.await;
    wall.advance(chrono::Duration::seconds(30));
    let events = runtime.turn(0).await;
    let health = health_events(&events);
    assert_eq!(health.len(), 1, "{events:?}");
    let failure = health[0].last_failure.as_ref().expect("a failure");
    assert_eq!(failure.at, "2026-12-02T10:00:40Z");
    assert!(
        failure.reason.contains("cannot reach"),
        "{}",
        failure.reason
    );
    assert_eq!(health[0].last_good.as_deref(), Some("2026-12-02T10:00:00Z"));
    assert!(runtime.health().is_stale());

    // It comes back on the same address: the next sync clears the failure by itself.
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let _server = serve(dir.path(), listener).await;
    wall.advance(chrono::Duration::seconds(30));
    let events = runtime.turn(0).await;
    let health = health_events(&events);
    assert_eq!(health.len(), 1, "{events:?}");
    assert!(health[0].last_failure.is_none());
    assert_eq!(health[0].last_good.as_deref(), Some("2026-12-02T10:01:10Z"));

    // The lookup service is asked again only after six hours.
    assert_eq!(polls.load(Ordering::Relaxed), 1);
    wall.advance(chrono::Duration::hours(6));
    runtime.turn(0).await;
    assert_eq!(polls.load(Ordering::Relaxed), 2);
}
