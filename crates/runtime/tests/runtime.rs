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
use updraft_server::push_certificate::PushCertificateInfo;
use updraft_server::{AppState, Db, Limits, NoPusher, SealingKey, ServerConfig};

/// Serves `updraft serve` on `listener` until the task is aborted.
async fn serve(
    dir: &std::path::Path,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    serve_pushing_with(dir, listener, None).await
}

/// Serves `updraft serve` started with a push certificate of this description.
async fn serve_pushing_with(
    dir: &std::path::Path,
    listener: tokio::net::TcpListener,
    push_certificate: Option<PushCertificateInfo>,
) -> tokio::task::JoinHandle<()> {
    let state = AppState::new(ServerConfig {
        db: Db::open(&dir.join("server.db")).await.unwrap(),
        clock: Arc::new(updraft_clock::SystemClock),
        pusher: Arc::new(NoPusher),
        sealing_key: SealingKey::from_bytes(&[4; 32]),
        api_key: Some("key".into()),
        forwarding: updraft_server::DdmForwarding::Off,
        device_trust: None,
        push_certificate,
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

fn notices(events: &[Event]) -> Vec<&updraft_app::notices::Notice> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Notice(notice) => Some(notice),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_certificate_near_its_expiry_raises_a_notice_at_30_days_then_7_then_expired() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let start: chrono::DateTime<chrono::Utc> = "2026-12-02T10:00:00Z".parse().unwrap();
    let topic = "com.apple.mgmt.External.5b7f0d1e-8a2c-4f3e-9b1d-2c4e6f8a0b1c";
    let _server = serve_pushing_with(
        dir.path(),
        listener,
        Some(PushCertificateInfo {
            topic: topic.into(),
            subject: format!("UID={topic}, CN=APSP:5b7f0d1e"),
            not_after: start + chrono::Duration::days(33),
        }),
    )
    .await;
    let client = Arc::new(KmfddmClient::updraft(&format!("http://{address}"), "key").unwrap());
    let wall = Arc::new(ManualClock::new(start));
    let shared: SharedClock = wall.clone();
    let session = Session::server(
        &dir.path().join("console.db"),
        Arc::new(Deployment::single(client)),
        shared.clone(),
        &bundled(),
    )
    .await
    .unwrap();
    let mut runtime = Runtime::new(
        Arc::new(session),
        shared,
        Cadence::default(),
        Some(Box::new(CountingFeed(Arc::default()))),
    )
    .await;

    // 33 days left: nothing yet.
    assert!(notices(&runtime.turn(0).await).is_empty());
    // 29 days left: one notice naming the topic, the date and what to do.
    wall.advance(chrono::Duration::days(4));
    let events = runtime.turn(0).await;
    let raised = notices(&events);
    assert_eq!(raised.len(), 1, "{events:?}");
    assert_eq!(raised[0].summary, "Push certificate expiring");
    assert!(raised[0].body.contains(topic), "{}", raised[0].body);
    assert!(raised[0].body.contains("2027-01-04"), "{}", raised[0].body);
    assert!(raised[0].body.contains("in 29 days"), "{}", raised[0].body);
    assert!(
        raised[0].body.contains("identity.apple.com"),
        "{}",
        raised[0].body
    );
    // Not again the next sync, nor the next day.
    wall.advance(chrono::Duration::seconds(30));
    assert!(notices(&runtime.turn(0).await).is_empty());
    wall.advance(chrono::Duration::days(1));
    assert!(notices(&runtime.turn(0).await).is_empty());
    // A week before: again.
    wall.advance(chrono::Duration::days(22));
    let events = runtime.turn(0).await;
    let raised = notices(&events);
    assert_eq!(raised.len(), 1, "{events:?}");
    assert!(raised[0].body.contains("in 5 days"), "{}", raised[0].body);
    // Expired.
    wall.advance(chrono::Duration::days(6));
    let events = runtime.turn(0).await;
    let raised = notices(&events);
    assert_eq!(raised.len(), 1, "{events:?}");
    assert!(
        raised[0].body.contains("expired on 2027-01-04"),
        "{}",
        raised[0].body
    );
}

/// Answers newer SOFA feeds once: SOFA's truncated capture, which does not list macOS 26.4.1.
struct NewerSofa(std::sync::Mutex<Option<Vec<updraft_feed::sofa::SofaFeed>>>);

#[async_trait]
impl FeedSource for NewerSofa {
    async fn poll(&self) -> anyhow::Result<Option<LookupResponse>> {
        Ok(None)
    }

    async fn poll_sofa(&self) -> anyhow::Result<Option<Vec<updraft_feed::sofa::SofaFeed>>> {
        Ok(self.0.lock().unwrap().take())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_sofa_feeds_reach_the_releases_screen_at_the_feed_poll() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _server = serve(dir.path(), listener).await;
    let client = Arc::new(KmfddmClient::updraft(&format!("http://{address}"), "key").unwrap());
    let shared: SharedClock = Arc::new(ManualClock::new("2026-04-10T10:00:00Z".parse().unwrap()));
    let session = Arc::new(
        Session::server(
            &dir.path().join("console.db"),
            Arc::new(Deployment::single(client)),
            shared.clone(),
            &bundled(),
        )
        .await
        .unwrap(),
    );
    let macos_cves = |releases: &[updraft_app::view::ReleaseView]| {
        releases
            .iter()
            .find(|r| r.platform == "macOS" && r.version == "26.4.1")
            .unwrap()
            .cves
    };
    assert!(
        macos_cves(&session.releases().await.unwrap()).is_some(),
        "the shipped SOFA copy lists macOS 26.4.1"
    );
    let truncated = updraft_feed::sofa::SofaFeed::parse(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/sofa/macos_data_feed_v2.truncated.json"),
        )
        .unwrap(),
        updraft_feed::Platform::MacOs,
    )
    .unwrap();
    let mut runtime = Runtime::new(
        session.clone(),
        shared,
        Cadence::default(),
        Some(Box::new(NewerSofa(std::sync::Mutex::new(Some(vec![
            truncated,
        ]))))),
    )
    .await;
    runtime.turn(0).await;
    assert_eq!(
        macos_cves(&session.releases().await.unwrap()),
        None,
        "the newer feed does not list it, and the screen says so"
    );
}
