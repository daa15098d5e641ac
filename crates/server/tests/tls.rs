//! The other two ways a device proves itself: a TLS client certificate when `updraft serve`
//! terminates TLS (a real rustls listener on loopback, a real TLS client), and a certificate
//! header set by a TLS proxy in front.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::net::SocketAddr;

use common::{UDID, fixture, server, server_behind_proxy};
use updraft_server::listen::{self, TlsSettings};
use updraft_server::{DdmForwarding, Limits, app};
use updraft_sim::DeviceIdentity;

/// A private TLS CA and a certificate from it for 127.0.0.1 and localhost.
struct ServerCertificate {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

fn server_certificate() -> ServerCertificate {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Test server CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_certificate = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    ServerCertificate {
        ca_pem: ca_certificate.pem(),
        chain_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// `updraft serve --tls-cert --tls-key --device-ca` on loopback.
async fn listen_tls(server: &common::Server, certificate: &ServerCertificate) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let trust =
        updraft_server::DeviceTrust::from_pem(&[server.issuer.ca_pem().as_bytes().to_vec()], None)
            .unwrap();
    let tls = TlsSettings::from_pem(
        certificate.chain_pem.as_bytes(),
        certificate.key_pem.as_bytes(),
        trust.certificates(),
    )
    .unwrap();
    let router = app(server.state.clone());
    tokio::spawn(listen::serve(
        listener,
        router,
        Some(tls),
        Limits::default(),
        std::future::pending(),
    ));
    address
}

/// A TLS client trusting the server's CA, presenting `identity` if given.
fn client(certificate: &ServerCertificate, identity: Option<&DeviceIdentity>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certificate.ca_pem.as_bytes()).unwrap(),
        );
    if let Some(identity) = identity {
        let pem = format!("{}{}", identity.certificate_pem(), identity.key_pem());
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn put(
    client: &reqwest::Client,
    address: SocketAddr,
    path: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let response = client
        .put(format!("https://localhost:{}{path}", address.port()))
        .header("content-type", "application/x-apple-aspen-mdm-checkin")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_tls_client_certificate_identifies_the_device_without_a_signature() {
    let server = server(DdmForwarding::Off).await;
    let certificate = server_certificate();
    let address = listen_tls(&server, &certificate).await;
    let device = client(&certificate, Some(&server.identity(UDID)));

    for file in ["Authenticate.2.plist", "TokenUpdate.2.plist"] {
        let (status, body) = put(&device, address, "/mdm/checkin", fixture(file)).await;
        assert_eq!(status, 200, "{file}: {body}");
    }
    assert_eq!(
        server.count("SELECT COUNT(*) FROM identity_bindings").await,
        1,
        "the enrollment is bound to the TLS certificate"
    );

    // Another device's certificate, over TLS, cannot speak for this one.
    let intruder = client(&certificate, Some(&server.identity("INTRUDER")));
    let (status, body) = put(
        &intruder,
        address,
        "/mdm/checkin",
        fixture("TokenUpdate.2.plist"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not one device"), "{body}");

    // No client certificate and no signature: the device is not identified.
    let anonymous = client(&certificate, None);
    let (status, body) = put(
        &anonymous,
        address,
        "/mdm/checkin",
        fixture("TokenUpdate.2.plist"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no device identity"), "{body}");

    // A certificate from a CA the server does not trust fails the handshake itself.
    let stranger = updraft_sim::IdentityIssuer::generate("Someone else's CA")
        .unwrap()
        .issue(UDID)
        .unwrap();
    let foreign = client(&certificate, Some(&stranger));
    let refused = foreign
        .put(format!("https://localhost:{}/mdm/checkin", address.port()))
        .body(fixture("TokenUpdate.2.plist"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // A client that does not trust the server's CA does not talk to it.
    let untrusting = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    assert!(
        untrusting
            .get(format!("https://localhost:{}/v1/version", address.port()))
            .send()
            .await
            .is_err()
    );

    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/version", address.port()))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

fn escaped_pem(identity: &DeviceIdentity) -> String {
    url::form_urlencoded::byte_serialize(identity.certificate_pem().as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

async fn proxied(
    server: &common::Server,
    file: &str,
    header: Option<String>,
) -> (StatusCode, String) {
    let mut request = Request::put("/mdm/checkin")
        .header("content-type", "application/x-apple-aspen-mdm-checkin");
    if let Some(value) = header {
        request = request.header("X-Client-Cert", value);
    }
    let (status, body) = server
        .send(request.body(Body::from(fixture(file))).unwrap())
        .await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_proxys_certificate_header_identifies_the_device() {
    let server = server_behind_proxy("X-Client-Cert").await;
    let device = server.identity(UDID);

    // nginx's $ssl_client_escaped_cert: the PEM, URL-escaped.
    for file in ["Authenticate.2.plist", "TokenUpdate.2.plist"] {
        let (status, body) = proxied(&server, file, Some(escaped_pem(&device))).await;
        assert_eq!(status, StatusCode::OK, "{file}: {body}");
    }
    // RFC 9440's Client-Cert form: the DER in base64 between colons.
    let der =
        updraft_server::profile::certificate_der(device.certificate_pem().as_bytes()).unwrap();
    use base64::Engine;
    let rfc9440 = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    let (status, body) = proxied(&server, "TokenUpdate.2.plist", Some(rfc9440)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let intruder = server.identity("INTRUDER");
    let (status, body) =
        proxied(&server, "TokenUpdate.2.plist", Some(escaped_pem(&intruder))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, body) = proxied(&server, "TokenUpdate.2.plist", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("no device identity"), "{body}");

    let (status, body) = proxied(
        &server,
        "TokenUpdate.2.plist",
        Some("-----BEGIN%20garbage".into()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("X-Client-Cert") || body.contains("x-client-cert"),
        "{body}"
    );
}
