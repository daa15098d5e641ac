//! A loopback HTTPS server whose certificate chains to a CA made here: the platform's store
//! alone does not trust it, the store plus that CA does.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use updraft_trust::{TrustError, client};

/// Serves `GET /ok` over TLS with a leaf for `localhost` signed by a fresh CA; returns the URL
/// and the CA's PEM.
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
    let app = Router::new().route("/ok", axum::routing::get(|| async { "fine" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
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
    (format!("https://localhost:{port}/ok"), ca.pem())
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_given() {
    let (url, ca_pem) = serve_tls().await;
    let platform_only = client(None, Duration::from_secs(10)).unwrap();
    let error = platform_only.get(&url).send().await.unwrap_err();
    let chain = format!("{error:?}").to_lowercase();
    assert!(chain.contains("certificate"), "{chain}");

    let with_ca = client(Some(ca_pem.as_bytes()), Duration::from_secs(10)).unwrap();
    let body = with_ca
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "fine");
}

#[test]
fn a_ca_that_is_not_pem_is_named_as_such() {
    let error = client(Some(b"not a certificate"), Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(error, TrustError::EmptyCa | TrustError::BadCa(_)),
        "{error}"
    );
    assert!(error.to_string().contains("CA"), "{error}");
}
