//! The MDM push certificate: its topic (the subject's UID, which devices are pushed under and
//! the enrollment profile names), its expiry, and the PEM identity APNs is reached with.

use base64::Engine;
use chrono::{DateTime, Utc};
use der::Decode;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

/// What an admin needs to know of the push certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushCertificateInfo {
    /// The APNs topic (`com.apple.mgmt.External.<uuid>`).
    pub topic: String,
    /// The certificate's subject.
    pub subject: String,
    /// When it expires: renew it at identity.apple.com before, with the same Apple ID, or every
    /// device must enroll again.
    pub not_after: DateTime<Utc>,
}

impl PushCertificateInfo {
    /// Read from the first certificate of a PEM file (a key beside it is not needed).
    pub fn from_certificate_pem(pem: &[u8]) -> Result<Self, String> {
        let certificate =
            CertificateDer::from_pem_slice(pem).map_err(|e| format!("no PEM certificate: {e}"))?;
        PushCertificate::read(&certificate)
    }
}

/// The push certificate with its key, as PEM for the APNs client.
#[derive(Clone)]
pub struct PushCertificate {
    /// Topic, subject, expiry.
    pub info: PushCertificateInfo,
    /// Certificate and key, PEM.
    pub identity_pem: Vec<u8>,
}

impl std::fmt::Debug for PushCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushCertificate")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The subject attribute that carries the topic.
const UID: der::oid::ObjectIdentifier = const_oid::db::rfc4519::UID;

impl PushCertificate {
    /// From one PEM file holding the certificate and its unencrypted private key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let certificate = CertificateDer::from_pem_slice(pem)
            .map_err(|e| format!("no PEM certificate in the push identity: {e}"))?;
        PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("no unencrypted PEM private key in the push identity: {e}"))?;
        Ok(Self {
            info: Self::read(&certificate)?,
            identity_pem: pem.to_vec(),
        })
    }

    /// From a PKCS #12 file (what Keychain Access exports) and its password.
    pub fn from_p12(p12: &[u8], password: &str) -> Result<Self, String> {
        let store = p12_keystore::KeyStore::from_pkcs12(
            p12,
            password,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|e| {
            format!("the push certificate's .p12 cannot be opened (wrong password?): {e}")
        })?;
        let (_, chain) = store
            .private_key_chain()
            .ok_or("the .p12 holds no private key with its certificate")?;
        let certificate = chain
            .certs()
            .first()
            .ok_or("the .p12's key has no certificate")?;
        let certificate = CertificateDer::from(certificate.as_der().to_vec());
        let mut identity_pem = pem("CERTIFICATE", certificate.as_ref());
        identity_pem.push_str(&pem("PRIVATE KEY", chain.key().as_der()));
        Ok(Self {
            info: Self::read(&certificate)?,
            identity_pem: identity_pem.into_bytes(),
        })
    }

    fn read(certificate: &CertificateDer<'_>) -> Result<PushCertificateInfo, String> {
        let parsed = x509_cert::Certificate::from_der(certificate.as_ref())
            .map_err(|e| format!("the push certificate cannot be read: {e}"))?;
        let subject = &parsed.tbs_certificate.subject;
        let topic = subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|attribute| attribute.oid == UID)
            .and_then(|attribute| {
                attribute
                    .value
                    .decode_as::<der::asn1::Utf8StringRef<'_>>()
                    .map(|text| text.as_str().to_owned())
                    .or_else(|_| {
                        attribute
                            .value
                            .decode_as::<der::asn1::PrintableStringRef<'_>>()
                            .map(|text| text.as_str().to_owned())
                    })
                    .ok()
            })
            .ok_or("the push certificate's subject has no UID (the topic): is it an MDM push certificate from identity.apple.com?")?;
        let seconds = parsed
            .tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs();
        let not_after = DateTime::from_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX), 0)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Ok(PushCertificateInfo {
            topic,
            subject: subject.to_string(),
            not_after,
        })
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
