//! HTTPS clients for servers an admin runs (a DDM server, APNs): they trust the platform's
//! certificate store (the OS keychain's roots on macOS, the Windows store, the distribution's
//! bundle on Linux) plus, when given, a private CA for a server whose chain ends in one.
//!
//! The lookup-service client is the exception and builds its own: it trusts Apple's root alone
//! (`updraft-feed`), and takes only [`describe`] from here.
#![deny(missing_docs)]

use std::time::Duration;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The extra CA is not a PEM certificate.
    #[error(
        "the extra CA is not a PEM certificate ({0}): give the CA's certificate, beginning with -----BEGIN CERTIFICATE-----"
    )]
    BadCa(String),
    /// The extra CA file held no certificate.
    #[error(
        "the extra CA holds no certificate: give the PEM of the CA that signed the server's certificate"
    )]
    EmptyCa,
    /// reqwest refused the configuration.
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
}

/// An HTTP error with its causes: reqwest's own message hides them (an unknown issuer, a refused
/// connection), and the whole chain is what tells an admin what to fix.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A client builder trusting the platform's roots and `extra_ca_pem` (one or more PEM
/// certificates), with TLS 1.2 or newer, the given timeouts and Updraft's user agent.
pub fn client_builder(
    extra_ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::ClientBuilder, TrustError> {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(true)
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout);
    if let Some(pem) = extra_ca_pem {
        let anchors = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|error| TrustError::BadCa(error.to_string()))?;
        if anchors.is_empty() {
            return Err(TrustError::EmptyCa);
        }
        for anchor in anchors {
            builder = builder.add_root_certificate(anchor);
        }
    }
    Ok(builder)
}

/// A built client; see [`client_builder`].
pub fn client(
    extra_ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::Client, TrustError> {
    client_builder(extra_ca_pem, timeout)?
        .build()
        .map_err(|error| TrustError::Client(error.to_string()))
}
