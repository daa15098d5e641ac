//! The lookup-service client against a real HTTP(S) server on loopback.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use updraft_feed::client::{refresh_saved, write_saved};
use updraft_feed::{
    ClientOptions, FeedClient, FeedError, FetchOutcome, LookupResponse, RefreshOutcome,
};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/gdmf")
            .join(name),
    )
    .unwrap()
}

fn april() -> Vec<u8> {
    fixture("pmv_2026-04-11_raw.json")
}

/// One scripted answer.
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn ok(body: Vec<u8>, etag: &str) -> Answer {
    Answer {
        status: StatusCode::OK,
        headers: vec![("etag", etag.into())],
        body,
    }
}

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    seen_if_none_match: Mutex<Vec<Option<String>>>,
    times: Mutex<Vec<Instant>>,
}

async fn answer(State(script): State<Arc<Script>>, headers: HeaderMap) -> Response {
    script.seen_if_none_match.lock().unwrap().push(
        headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    );
    script.times.lock().unwrap().push(Instant::now());
    let Some(next) = script.answers.lock().unwrap().pop_front() else {
        return StatusCode::GONE.into_response();
    };
    let mut response = (next.status, next.body).into_response();
    for (name, value) in next.headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    response
}

async fn serve(answers: Vec<Answer>) -> (String, Arc<Script>) {
    let script = Arc::new(Script {
        answers: Mutex::new(answers.into()),
        ..Default::default()
    });
    let app = Router::new()
        .route("/v2/pmv", axum::routing::get(answer))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/v2/pmv"), script)
}

fn client(url: &str) -> FeedClient {
    FeedClient::with_options(ClientOptions {
        url: url.into(),
        retry_delay: Duration::from_millis(50),
        ..ClientOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn etag_is_sent_back_and_304_means_unchanged() {
    let (url, script) = serve(vec![
        ok(april(), "\"v1\""),
        Answer {
            status: StatusCode::NOT_MODIFIED,
            headers: vec![],
            body: vec![],
        },
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("feed.json");
    let client = client(&url);

    let RefreshOutcome::Updated { response, etag } = refresh_saved(&client, &saved).await.unwrap()
    else {
        panic!("first fetch should update")
    };
    assert_eq!(etag.as_deref(), Some("\"v1\""));
    assert_eq!(response.entry_count(), 151);
    let (reread, reread_etag) =
        LookupResponse::parse_saved(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(reread, response);
    assert_eq!(reread_etag.as_deref(), Some("\"v1\""));

    assert!(matches!(
        refresh_saved(&client, &saved).await.unwrap(),
        RefreshOutcome::Unchanged
    ));
    assert_eq!(
        *script.seen_if_none_match.lock().unwrap(),
        [None, Some("\"v1\"".to_owned())]
    );
}

#[tokio::test]
async fn empty_or_broken_answers_keep_the_last_good_copy() {
    let empty =
        br#"{"PublicAssetSets": {}, "AssetSets": {}, "PublicRapidSecurityResponses": {}}"#.to_vec();
    let broken = april()[..5000].to_vec();
    let (url, _) = serve(vec![ok(empty, "\"e\""), ok(broken, "\"b\"")]).await;
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("feed.json");
    write_saved(&saved, Some("\"good\""), &april())
        .await
        .unwrap();
    let before = std::fs::read(&saved).unwrap();
    let client = client(&url);

    assert_eq!(
        refresh_saved(&client, &saved).await.unwrap_err(),
        FeedError::Empty
    );
    assert_eq!(std::fs::read(&saved).unwrap(), before);

    let error = refresh_saved(&client, &saved).await.unwrap_err();
    assert!(matches!(error, FeedError::Malformed { .. }), "{error}");
    assert_eq!(std::fs::read(&saved).unwrap(), before);
}

#[tokio::test]
async fn rate_limit_is_retried_after_the_asked_delay() {
    let (url, script) = serve(vec![
        Answer {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: vec![("retry-after", "1".into())],
            body: vec![],
        },
        ok(april(), "\"v1\""),
    ])
    .await;
    let outcome = client(&url).fetch(None).await.unwrap();
    assert!(matches!(outcome, FetchOutcome::Fetched { .. }));
    let times = script.times.lock().unwrap();
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= Duration::from_millis(950),
        "retried after {:?}",
        times[1] - times[0]
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_is_an_error_not_a_hang() {
    let (url, script) = serve(vec![Answer {
        status: StatusCode::TOO_MANY_REQUESTS,
        headers: vec![("retry-after", "86400".into())],
        body: vec![],
    }])
    .await;
    let error = client(&url).fetch(None).await.unwrap_err().to_string();
    assert!(error.contains("429") && error.contains("86400"), "{error}");
    assert_eq!(script.times.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let failing = || Answer {
        status: StatusCode::SERVICE_UNAVAILABLE,
        headers: vec![],
        body: vec![],
    };
    let (url, script) = serve(vec![failing(), failing(), failing(), ok(april(), "x")]).await;
    let error = client(&url).fetch(None).await.unwrap_err();
    assert!(
        matches!(error, FeedError::Status { status: 503, .. }),
        "{error}"
    );
    assert_eq!(script.times.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let (url, _) = serve(vec![ok(april(), "x")]).await;
    let client = FeedClient::with_options(ClientOptions {
        url,
        max_body_bytes: 10_000,
        ..ClientOptions::default()
    })
    .unwrap();
    let error = client.fetch(None).await.unwrap_err();
    assert!(
        matches!(error, FeedError::TooLarge { limit: 10_000, .. }),
        "{error}"
    );
}

/// An HTTPS server whose certificate chains to a test CA, not to Apple's root.
async fn serve_tls() -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();

    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
                .unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let script = Arc::new(Script {
        answers: Mutex::new(vec![ok(april(), "t")].into()),
        ..Default::default()
    });
    let app = Router::new()
        .route("/v2/pmv", axum::routing::get(answer))
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (format!("https://localhost:{port}/v2/pmv"), ca.pem())
}

#[tokio::test]
async fn only_the_configured_root_is_trusted() {
    let (url, test_ca_pem) = serve_tls().await;
    // The production client trusts Apple's root alone: a certificate from any other CA fails.
    let apple_only = FeedClient::with_options(ClientOptions {
        url: url.clone(),
        max_attempts: 1,
        ..ClientOptions::default()
    })
    .unwrap();
    let error = apple_only.fetch(None).await.unwrap_err().to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // The same server is fine for a client anchored on its CA: the failure above was trust.
    let anchored = FeedClient::with_options(ClientOptions {
        url,
        trust_anchors_pem: test_ca_pem.into_bytes(),
        ..ClientOptions::default()
    })
    .unwrap();
    assert!(matches!(
        anchored.fetch(None).await.unwrap(),
        FetchOutcome::Fetched { .. }
    ));
}

#[test]
fn the_shipped_anchor_is_apple_root_ca() {
    let pem = String::from_utf8(updraft_feed::client::APPLE_ROOT_CA_PEM.to_vec()).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 1);
    assert!(FeedClient::new().is_ok());
}

/// SOFA's macOS v2 capture (truncated, tests/fixtures/sofa).
fn sofa_macos() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/sofa/macos_data_feed_v2.truncated.json"),
    )
    .unwrap()
}

#[tokio::test]
async fn a_sofa_feed_is_saved_with_its_etag_and_only_a_good_one_replaces_it() {
    use updraft_feed::Platform;
    use updraft_feed::client::{refresh_sofa, saved_or_bundled_sofa};
    use updraft_feed::sofa::SofaFeed;

    let (url, script) = serve(vec![
        ok(sofa_macos(), "\"s1\""),
        Answer {
            status: StatusCode::NOT_MODIFIED,
            headers: vec![],
            body: vec![],
        },
        ok(br#"{"OSVersions": []}"#.to_vec(), "\"e\""),
        ok(sofa_macos()[..4000].to_vec(), "\"b\""),
    ])
    .await;
    let client = FeedClient::with_options(ClientOptions {
        retry_delay: Duration::from_millis(50),
        ..ClientOptions::sofa(&url)
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("sofa-macos.json");

    let fetched = refresh_sofa(&client, &saved, Platform::MacOs)
        .await
        .unwrap()
        .expect("a new feed");
    assert_eq!(
        fetched,
        SofaFeed::parse(&sofa_macos(), Platform::MacOs).unwrap()
    );
    let before = std::fs::read(&saved).unwrap();
    assert_eq!(
        SofaFeed::parse_saved(&before, Platform::MacOs).unwrap(),
        (fetched.clone(), Some("\"s1\"".to_owned()))
    );
    assert_eq!(
        refresh_sofa(&client, &saved, Platform::MacOs)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        script.seen_if_none_match.lock().unwrap()[1].as_deref(),
        Some("\"s1\"")
    );

    let empty = refresh_sofa(&client, &saved, Platform::MacOs)
        .await
        .unwrap_err();
    assert!(matches!(empty, FeedError::SofaEmpty(_)), "{empty}");
    let broken = refresh_sofa(&client, &saved, Platform::MacOs)
        .await
        .unwrap_err();
    assert!(matches!(broken, FeedError::Malformed { .. }), "{broken}");
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        before,
        "the good copy stays"
    );

    // At the next start: the saved macOS copy, the shipped iOS one; a damaged copy is named.
    let (feeds, unreadable) = saved_or_bundled_sofa(dir.path()).unwrap();
    assert_eq!(feeds[0], fetched);
    assert_eq!(feeds[1].platform, Platform::Ios);
    assert!(unreadable.is_empty());
    std::fs::write(
        dir.path().join("sofa-ios.json"),
        b"{\"etag\": null, \"data\": [",
    )
    .unwrap();
    let (feeds, unreadable) = saved_or_bundled_sofa(dir.path()).unwrap();
    assert_eq!(feeds.len(), 2);
    assert!(unreadable[0].contains("sofa-ios.json"), "{unreadable:?}");
}
