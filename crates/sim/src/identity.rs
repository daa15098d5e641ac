//! A device's MDM identity, as a real device has one: a key and a client certificate (extended
//! key usage clientAuth) issued by a CA the MDM server trusts, used to sign every request body.
//! NanoMDM reads the signature from `Mdm-Signature`: the base64 of a detached CMS (PKCS #7)
//! SignedData over the body, carrying the signer's certificate (`shared/tools/nanohub/`).

use base64::Engine;
use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use p256::pkcs8::DecodePrivateKey;
use sha2::Digest;
use x509_cert::der::{Decode, Encode};

/// Why an identity could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The CA's certificate or key.
    #[error("device identity CA: {0}")]
    Ca(String),
    /// Issuing or signing.
    #[error("device identity: {0}")]
    Sign(String),
}

/// Issues device identities from a CA (its certificate and key, PEM).
pub struct IdentityIssuer {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for IdentityIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityIssuer")
    }
}

impl IdentityIssuer {
    /// An issuer from the CA's certificate and private key (PEM; RSA or ECDSA).
    pub fn from_pem(ca_cert_pem: &str, ca_key_pem: &str) -> Result<Self, IdentityError> {
        let key = rcgen::KeyPair::from_pem(ca_key_pem)
            .map_err(|e| IdentityError::Ca(format!("the key is not a PEM private key: {e}")))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, key)
            .map_err(|e| IdentityError::Ca(format!("the certificate is not a PEM CA: {e}")))?;
        Ok(Self {
            issuer,
            ca_pem: ca_cert_pem.to_owned(),
        })
    }

    /// A new throw-away CA (tests, and a lab that makes its own).
    pub fn generate(name: &str) -> Result<Self, IdentityError> {
        let key = rcgen::KeyPair::generate().map_err(|e| IdentityError::Ca(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| IdentityError::Ca(e.to_string()))?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let certified = rcgen::CertifiedIssuer::self_signed(params, key)
            .map_err(|e| IdentityError::Ca(e.to_string()))?;
        let ca_pem = certified.pem();
        let key_pem = certified.key().serialize_pem();
        Self::from_pem(&ca_pem, &key_pem)
    }

    /// The CA's certificate, PEM: what the server is told to trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A new identity for a device: a P-256 key and a certificate for `common_name`.
    pub fn issue(&self, common_name: &str) -> Result<DeviceIdentity, IdentityError> {
        let sign = |e: rcgen::Error| IdentityError::Sign(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(sign)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(sign)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let certificate = params.signed_by(&key, &self.issuer).map_err(sign)?;
        let signing_key = p256::ecdsa::SigningKey::from_pkcs8_der(&key.serialize_der())
            .map_err(|e| IdentityError::Sign(e.to_string()))?;
        let parsed = x509_cert::Certificate::from_der(certificate.der())
            .map_err(|e| IdentityError::Sign(e.to_string()))?;
        Ok(DeviceIdentity {
            certificate: parsed,
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            key: signing_key,
        })
    }
}

/// A device's identity: its certificate and key.
#[derive(Clone)]
pub struct DeviceIdentity {
    certificate: x509_cert::Certificate,
    certificate_pem: String,
    key_pem: String,
    key: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceIdentity")
    }
}

impl DeviceIdentity {
    /// The certificate, PEM (what a TLS proxy passes on in a header).
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The private key, PEM (PKCS #8): for a TLS client certificate.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The `Mdm-Signature` header's value for `body`: base64 of a detached CMS SignedData
    /// (SHA-256, ECDSA) over it, carrying the certificate.
    pub fn sign(&self, body: &[u8]) -> Result<String, IdentityError> {
        let fail = |e: &dyn std::fmt::Display| IdentityError::Sign(format!("signing a body: {e}"));
        let digest_algorithm = x509_cert::spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_SHA_256,
            parameters: None,
        };
        let content = EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: None,
        };
        let signer = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: self.certificate.tbs_certificate.issuer.clone(),
            serial_number: self.certificate.tbs_certificate.serial_number.clone(),
        });
        let digest = sha2::Sha256::digest(body);
        let signer_info = SignerInfoBuilder::new(
            &self.key,
            signer,
            digest_algorithm.clone(),
            &content,
            Some(digest.as_slice()),
        )
        .map_err(|e| fail(&e))?;
        let signed = SignedDataBuilder::new(&content)
            .add_digest_algorithm(digest_algorithm)
            .map_err(|e| fail(&e))?
            .add_certificate(CertificateChoices::Certificate(self.certificate.clone()))
            .map_err(|e| fail(&e))?
            .add_signer_info::<p256::ecdsa::SigningKey, p256::ecdsa::DerSignature>(signer_info)
            .map_err(|e| fail(&e))?
            .build()
            .map_err(|e| fail(&e))?;
        let der = signed.to_der().map_err(|e| fail(&e))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(der))
    }
}
