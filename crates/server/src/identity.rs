//! Who is talking: a device proves itself with its identity certificate, and an enrollment is
//! bound to the certificates it enrolled with (NanoMDM's rules, `service/certauth`).
//!
//! The certificate arrives one of three ways, tried in this order:
//! - `Mdm-Signature`: the base64 of a detached CMS SignedData over the exact body, carrying the
//!   signer's certificate (the enrollment profile's `SignMessage`). The signature is verified.
//! - The TLS client certificate, when this server terminates TLS with `--tls-cert`.
//! - A header a TLS proxy in front sets (`--cert-header`): the URL-escaped PEM of nginx's
//!   `$ssl_client_escaped_cert`, or RFC 9440's `:base64:`. Only safe when the proxy is the sole
//!   way in and overwrites the header.
//!
//! Whichever way, the certificate must chain to a configured device CA (`--device-ca`), be
//! within its validity, and allow client authentication.

use axum::http::HeaderMap;
use base64::Engine;
use chrono::{DateTime, Utc};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::{Decode, Encode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use sha2::Digest;
use subtle::ConstantTimeEq;
use webpki::ring as algs;

/// A certificate presented by a TLS client, put on each request of its connection.
#[derive(Debug, Clone)]
pub struct TlsPeer(pub Option<CertificateDer<'static>>);

/// The device CAs and where a proxy puts the certificate.
#[derive(Debug, Clone)]
pub struct DeviceTrust {
    anchors: Vec<TrustAnchor<'static>>,
    /// Every CA certificate, also offered as intermediates (a chain CA → sub-CA → device).
    certificates: Vec<CertificateDer<'static>>,
    cert_header: Option<String>,
}

/// Why a request's identity is not accepted. Every one is a 400 to the device (a 401 would
/// make it unenroll); only a certificate of another enrollment is a 403.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The server was started without `--device-ca`.
    #[error(
        "this server trusts no device CA, so it cannot tell devices apart: start it with --device-ca"
    )]
    NoDeviceCa,
    /// No certificate at all.
    #[error(
        "no device identity: the request has no Mdm-Signature header{0} (the enrollment profile's SignMessage must be true)"
    )]
    Missing(&'static str),
    /// The header is not a CMS signature.
    #[error("Mdm-Signature is not a detached CMS signature: {0}")]
    Malformed(String),
    /// The signature does not cover this body with this certificate.
    #[error("Mdm-Signature does not verify over this request's body: {0}")]
    BadSignature(String),
    /// The certificate is not one of ours.
    #[error(
        "the device certificate {subject:?} is not from a device CA this server trusts (--device-ca): {reason}"
    )]
    Untrusted {
        /// The certificate's subject.
        subject: String,
        /// What the chain check said.
        reason: String,
    },
    /// The proxy's certificate header cannot be read.
    #[error("the certificate header {header} cannot be read: {reason}")]
    BadHeader {
        /// The header's name.
        header: String,
        /// What is wrong.
        reason: String,
    },
}

/// A verified device certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// SHA-256 of the certificate's DER, hex (NanoMDM's cert hash).
    pub fingerprint: String,
    /// The certificate's subject, for logs.
    pub subject: String,
}

impl DeviceTrust {
    /// Trust the CA certificates in `pems` (each may hold several), and, if `cert_header` is
    /// given, a certificate a TLS proxy puts in that header.
    pub fn from_pem(pems: &[Vec<u8>], cert_header: Option<&str>) -> Result<Self, String> {
        let mut certificates = Vec::new();
        for pem in pems {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                certificates.push(certificate.map_err(|e| format!("not a PEM certificate: {e}"))?);
            }
        }
        if certificates.is_empty() {
            return Err("no certificate in the device CA file".into());
        }
        let anchors = certificates
            .iter()
            .map(|der| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|anchor| anchor.to_owned())
                    .map_err(|e| format!("a device CA certificate cannot be read: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            anchors,
            certificates,
            cert_header: cert_header.map(str::to_ascii_lowercase),
        })
    }

    /// The CA certificates, for a TLS listener that asks clients for theirs.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The identity a device request proves, checked against the device CAs at `now`.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        tls: Option<&TlsPeer>,
        now: DateTime<Utc>,
    ) -> Result<Identity, IdentityError> {
        let (certificate, intermediates) = if let Some(signature) = headers.get("mdm-signature") {
            let signature = signature
                .to_str()
                .map_err(|_| IdentityError::Malformed("the header is not ASCII".into()))?;
            verify_signature(signature, body)?
        } else if let Some(certificate) = tls.and_then(|peer| peer.0.clone()) {
            (certificate, Vec::new())
        } else if let Some(name) = &self.cert_header {
            let value = headers.get(name.as_str()).ok_or(IdentityError::Missing(
                ", no TLS client certificate and no proxy header",
            ))?;
            (read_header_certificate(name, value.as_bytes())?, Vec::new())
        } else {
            return Err(IdentityError::Missing(" and no TLS client certificate"));
        };
        self.check_chain(&certificate, &intermediates, now)?;
        Ok(Identity {
            fingerprint: hex(&sha2::Sha256::digest(certificate.as_ref())),
            subject: subject_of(&certificate),
        })
    }

    fn check_chain(
        &self,
        certificate: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'static>],
        now: DateTime<Utc>,
    ) -> Result<(), IdentityError> {
        let untrusted = |reason: String| IdentityError::Untrusted {
            subject: subject_of(certificate),
            reason,
        };
        let end_entity =
            webpki::EndEntityCert::try_from(certificate).map_err(|e| untrusted(e.to_string()))?;
        let mut chain: Vec<CertificateDer<'static>> = intermediates.to_vec();
        chain.extend(self.certificates.iter().cloned());
        let seconds = u64::try_from(now.timestamp()).unwrap_or_default();
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                &chain,
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map(|_| ())
            .map_err(|e| untrusted(e.to_string()))
    }
}

/// Verifies a detached CMS signature over `body`; the signer's certificate and the others the
/// message carries.
fn verify_signature(
    header: &str,
    body: &[u8],
) -> Result<(CertificateDer<'static>, Vec<CertificateDer<'static>>), IdentityError> {
    let malformed =
        |what: &str, e: &dyn std::fmt::Display| IdentityError::Malformed(format!("{what}: {e}"));
    let der = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|e| malformed("not base64", &e))?;
    let info = ContentInfo::from_der(&der).map_err(|e| malformed("not a CMS ContentInfo", &e))?;
    if info.content_type != const_oid::db::rfc5911::ID_SIGNED_DATA {
        return Err(IdentityError::Malformed(format!(
            "content type {} is not SignedData",
            info.content_type
        )));
    }
    let signed: SignedData = info
        .content
        .decode_as()
        .map_err(|e| malformed("not a SignedData", &e))?;
    let certificates: Vec<x509_cert::Certificate> = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(certificate) => Some(certificate.clone()),
            CertificateChoices::Other(_) => None,
        })
        .collect();
    let signers = signed.signer_infos.0.as_slice();
    let [signer] = signers else {
        return Err(IdentityError::Malformed(format!(
            "{} signers, where a device's signature has one",
            signers.len()
        )));
    };
    let certificate = certificates
        .iter()
        .find(|certificate| match &signer.sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                certificate.tbs_certificate.issuer == id.issuer
                    && certificate.tbs_certificate.serial_number == id.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(id) => {
                subject_key_id(certificate).is_some_and(|key_id| key_id == id.0.as_bytes())
            }
        })
        .ok_or_else(|| {
            IdentityError::Malformed("the signer's certificate is not in the signature".into())
        })?;
    let digest_oid = signer.digest_alg.oid;
    let digest = digest_of(digest_oid, body)?;
    let signed_bytes = match &signer.signed_attrs {
        Some(attributes) => {
            let message_digest = attributes
                .iter()
                .find(|attribute| attribute.oid == const_oid::db::rfc5911::ID_MESSAGE_DIGEST)
                .and_then(|attribute| attribute.values.get(0))
                .ok_or_else(|| {
                    IdentityError::Malformed("the signed attributes carry no message digest".into())
                })?
                .decode_as::<der::asn1::OctetString>()
                .map_err(|e| malformed("the message digest", &e))?;
            if !bool::from(message_digest.as_bytes().ct_eq(&digest)) {
                return Err(IdentityError::BadSignature(
                    "the signed digest is of another body".into(),
                ));
            }
            attributes
                .to_der()
                .map_err(|e| malformed("the signed attributes", &e))?
        }
        None => body.to_vec(),
    };
    let certificate_der = CertificateDer::from(
        certificate
            .to_der()
            .map_err(|e| malformed("the signer's certificate", &e))?,
    );
    let end_entity = webpki::EndEntityCert::try_from(&certificate_der)
        .map_err(|e| malformed("the signer's certificate", &e))?;
    let candidates = signature_algorithms(signer.signature_algorithm.oid, digest_oid)?;
    let signature = signer.signature.as_bytes();
    let verified = candidates.iter().any(|algorithm| {
        end_entity
            .verify_signature(*algorithm, &signed_bytes, signature)
            .is_ok()
    });
    if !verified {
        return Err(IdentityError::BadSignature(
            "the signature is not the certificate's key's over this body".into(),
        ));
    }
    let others = certificates
        .iter()
        .filter(|other| *other != certificate)
        .filter_map(|other| other.to_der().ok().map(CertificateDer::from))
        .collect();
    Ok((certificate_der.into_owned(), others))
}

fn digest_of(oid: der::oid::ObjectIdentifier, body: &[u8]) -> Result<Vec<u8>, IdentityError> {
    use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_256, ID_SHA_384, ID_SHA_512};
    Ok(match oid {
        ID_SHA_256 => sha2::Sha256::digest(body).to_vec(),
        ID_SHA_384 => sha2::Sha384::digest(body).to_vec(),
        ID_SHA_512 => sha2::Sha512::digest(body).to_vec(),
        ID_SHA_1 => {
            return Err(IdentityError::Malformed(
                "SHA-1 signatures are not accepted; sign with SHA-256".into(),
            ));
        }
        other => {
            return Err(IdentityError::Malformed(format!(
                "digest algorithm {other} is not SHA-256, -384 or -512"
            )));
        }
    })
}

/// The algorithms a SignerInfo's signature may be, by its signature and digest algorithms.
fn signature_algorithms(
    signature: der::oid::ObjectIdentifier,
    digest: der::oid::ObjectIdentifier,
) -> Result<Vec<&'static dyn SignatureVerificationAlgorithm>, IdentityError> {
    use const_oid::db::rfc5912::{
        ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ID_EC_PUBLIC_KEY, ID_SHA_256, ID_SHA_384,
        ID_SHA_512, RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION, SHA_384_WITH_RSA_ENCRYPTION,
        SHA_512_WITH_RSA_ENCRYPTION,
    };
    let rsa = |digest| match digest {
        ID_SHA_256 => Some(algs::RSA_PKCS1_2048_8192_SHA256),
        ID_SHA_384 => Some(algs::RSA_PKCS1_2048_8192_SHA384),
        ID_SHA_512 => Some(algs::RSA_PKCS1_2048_8192_SHA512),
        _ => None,
    };
    let ecdsa = |digest| match digest {
        ID_SHA_256 => Some(vec![algs::ECDSA_P256_SHA256, algs::ECDSA_P384_SHA256]),
        ID_SHA_384 => Some(vec![algs::ECDSA_P384_SHA384, algs::ECDSA_P256_SHA384]),
        _ => None,
    };
    let chosen = match signature {
        RSA_ENCRYPTION => rsa(digest).map(|alg| vec![alg]),
        SHA_256_WITH_RSA_ENCRYPTION => rsa(ID_SHA_256).map(|alg| vec![alg]),
        SHA_384_WITH_RSA_ENCRYPTION => rsa(ID_SHA_384).map(|alg| vec![alg]),
        SHA_512_WITH_RSA_ENCRYPTION => rsa(ID_SHA_512).map(|alg| vec![alg]),
        ECDSA_WITH_SHA_256 => ecdsa(ID_SHA_256),
        ECDSA_WITH_SHA_384 => ecdsa(ID_SHA_384),
        ID_EC_PUBLIC_KEY => ecdsa(digest),
        _ => None,
    };
    chosen.ok_or_else(|| {
        IdentityError::Malformed(format!(
            "signature algorithm {signature} with digest {digest} is not RSA PKCS #1 or ECDSA with SHA-2"
        ))
    })
}

fn subject_key_id(certificate: &x509_cert::Certificate) -> Option<Vec<u8>> {
    certificate
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|extension| extension.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
        .and_then(|extension| {
            der::asn1::OctetString::from_der(extension.extn_value.as_bytes()).ok()
        })
        .map(|key_id| key_id.as_bytes().to_vec())
}

/// A proxy's certificate header: RFC 9440 `:base64:`, or a URL-escaped PEM.
fn read_header_certificate(
    header: &str,
    value: &[u8],
) -> Result<CertificateDer<'static>, IdentityError> {
    let bad = |reason: String| IdentityError::BadHeader {
        header: header.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(value)
        .map_err(|_| bad("not UTF-8".into()))?
        .trim();
    if let Some(inner) = text.strip_prefix(':').and_then(|t| t.strip_suffix(':')) {
        let der = base64::engine::general_purpose::STANDARD
            .decode(inner)
            .map_err(|e| bad(format!("RFC 9440 value is not base64: {e}")))?;
        return Ok(CertificateDer::from(der));
    }
    let pem: String =
        url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        bad(format!(
            "neither RFC 9440 nor a URL-escaped PEM certificate: {e}"
        ))
    })
}

fn subject_of(certificate: &CertificateDer<'_>) -> String {
    x509_cert::Certificate::from_der(certificate.as_ref())
        .map(|parsed| parsed.tbs_certificate.subject.to_string())
        .unwrap_or_else(|_| "(unreadable certificate)".into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
