//! The enrollment profile (`.mobileconfig`) a device installs to enroll into `updraft serve`:
//! the device's identity (SCEP, ACME or a PKCS #12 issued here), the server's TLS anchor when
//! it is private, and the MDM payload pointing at this server. Keys as Apple's schema files
//! (`mdm/profiles/*.yaml`) name them.

use plist::{Dictionary, Value};

/// How the device gets its identity certificate: from the CA this server trusts.
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// A SCEP server (`com.apple.security.scep`).
    Scep {
        /// The SCEP URL.
        url: String,
        /// The challenge, if the SCEP server asks one.
        challenge: Option<String>,
        /// The CA's fingerprint (SHA-256 of its DER), so the device checks whom it talks to.
        ca_fingerprint: Option<Vec<u8>>,
    },
    /// An ACME server (`com.apple.security.acme`), with a hardware-bound P-384 key.
    Acme {
        /// The directory URL.
        directory_url: String,
        /// The client identifier the ACME server expects.
        client_identifier: String,
    },
    /// An identity issued here, in the profile (`com.apple.security.pkcs12`): for tests and
    /// small deployments, since whoever holds the profile holds the identity.
    Pkcs12 {
        /// The PKCS #12 file.
        p12: Vec<u8>,
        /// Its password.
        password: String,
    },
}

/// What the profile says.
#[derive(Debug, Clone)]
pub struct ProfileSettings {
    /// The server's public base URL (`https://mdm.example.com`): devices check in at
    /// `<base>/mdm/checkin` and take commands at `<base>/mdm/connect`.
    pub base_url: String,
    /// The push certificate's topic.
    pub topic: String,
    /// Reverse-DNS prefix of the payload identifiers (`com.example.updraft`).
    pub identifier: String,
    /// The organization shown on the device.
    pub organization: String,
    /// Where the identity comes from.
    pub identity: IdentitySource,
    /// The server's private TLS CA (DER), installed as a trusted root; none for a public one.
    pub tls_anchor: Option<Vec<u8>>,
    /// APNs' sandbox (a development push certificate).
    pub development_apns: bool,
}

/// Every access right (1 through 4096, Apple's "Logical OR" of all flags).
pub const ALL_ACCESS_RIGHTS: i64 = 8191;

/// The profile as an XML property list. `new_uuid` names each payload (random in use,
/// fixed in tests).
pub fn enrollment_profile(
    settings: &ProfileSettings,
    new_uuid: &mut dyn FnMut() -> String,
) -> Vec<u8> {
    let base = settings.base_url.trim_end_matches('/');
    let mut payloads = Vec::new();
    let identity_uuid = new_uuid();
    payloads.push(identity_payload(settings, &identity_uuid));
    if let Some(anchor) = &settings.tls_anchor {
        let mut root = common(
            "com.apple.security.root",
            &format!("{}.tls-anchor", settings.identifier),
            &new_uuid(),
            "Updraft server TLS CA",
        );
        root.insert(
            "PayloadCertificateFileName".into(),
            "updraft-server-ca.cer".into(),
        );
        root.insert("PayloadContent".into(), Value::Data(anchor.clone()));
        payloads.push(Value::Dictionary(root));
    }
    let mut mdm = common(
        "com.apple.mdm",
        &format!("{}.mdm", settings.identifier),
        &new_uuid(),
        "Mobile Device Management",
    );
    mdm.insert("IdentityCertificateUUID".into(), identity_uuid.into());
    mdm.insert("Topic".into(), settings.topic.clone().into());
    mdm.insert("ServerURL".into(), format!("{base}/mdm/connect").into());
    mdm.insert("CheckInURL".into(), format!("{base}/mdm/checkin").into());
    mdm.insert("SignMessage".into(), true.into());
    mdm.insert("AccessRights".into(), ALL_ACCESS_RIGHTS.into());
    mdm.insert(
        "ServerCapabilities".into(),
        Value::Array(vec![
            "com.apple.mdm.per-user-connections".into(),
            "com.apple.mdm.bootstraptoken".into(),
        ]),
    );
    mdm.insert("CheckOutWhenRemoved".into(), true.into());
    if settings.development_apns {
        mdm.insert("UseDevelopmentAPNS".into(), true.into());
    }
    payloads.push(Value::Dictionary(mdm));

    let mut profile = Dictionary::new();
    profile.insert("PayloadContent".into(), Value::Array(payloads));
    profile.insert(
        "PayloadDisplayName".into(),
        format!("{} device management", settings.organization).into(),
    );
    profile.insert(
        "PayloadDescription".into(),
        "Enrolls this device into Updraft, which keeps its OS up to date.".into(),
    );
    profile.insert(
        "PayloadIdentifier".into(),
        format!("{}.enrollment", settings.identifier).into(),
    );
    profile.insert(
        "PayloadOrganization".into(),
        settings.organization.clone().into(),
    );
    profile.insert("PayloadScope".into(), "System".into());
    profile.insert("PayloadType".into(), "Configuration".into());
    profile.insert("PayloadUUID".into(), new_uuid().into());
    profile.insert("PayloadVersion".into(), 1.into());
    let mut out = Vec::new();
    // Writing a dictionary of strings, numbers and data to a Vec cannot fail.
    let _ = plist::to_writer_xml(&mut out, &Value::Dictionary(profile));
    out
}

fn common(kind: &str, identifier: &str, uuid: &str, name: &str) -> Dictionary {
    let mut payload = Dictionary::new();
    payload.insert("PayloadType".into(), kind.into());
    payload.insert("PayloadIdentifier".into(), identifier.into());
    payload.insert("PayloadUUID".into(), uuid.into());
    payload.insert("PayloadVersion".into(), 1.into());
    payload.insert("PayloadDisplayName".into(), name.into());
    payload
}

fn identity_payload(settings: &ProfileSettings, uuid: &str) -> Value {
    let identifier = format!("{}.identity", settings.identifier);
    let subject = || {
        Value::Array(vec![Value::Array(vec![Value::Array(vec![
            "CN".into(),
            "%HardwareUUID%".into(),
        ])])])
    };
    let payload = match &settings.identity {
        IdentitySource::Scep {
            url,
            challenge,
            ca_fingerprint,
        } => {
            let mut payload = common(
                "com.apple.security.scep",
                &identifier,
                uuid,
                "Device identity (SCEP)",
            );
            let mut content = Dictionary::new();
            content.insert("URL".into(), url.clone().into());
            content.insert("Subject".into(), subject());
            if let Some(challenge) = challenge {
                content.insert("Challenge".into(), challenge.clone().into());
            }
            content.insert("Keysize".into(), 2048.into());
            content.insert("Key Type".into(), "RSA".into());
            // Signing and encryption: the identity signs each message (Mdm-Signature).
            content.insert("Key Usage".into(), 5.into());
            if let Some(fingerprint) = ca_fingerprint {
                content.insert("CAFingerprint".into(), Value::Data(fingerprint.clone()));
            }
            payload.insert("PayloadContent".into(), Value::Dictionary(content));
            payload
        }
        IdentitySource::Acme {
            directory_url,
            client_identifier,
        } => {
            let mut payload = common(
                "com.apple.security.acme",
                &identifier,
                uuid,
                "Device identity (ACME)",
            );
            payload.insert("DirectoryURL".into(), directory_url.clone().into());
            payload.insert("ClientIdentifier".into(), client_identifier.clone().into());
            payload.insert("KeySize".into(), 384.into());
            payload.insert("KeyType".into(), "ECSECPrimeRandom".into());
            payload.insert("HardwareBound".into(), true.into());
            payload.insert("Subject".into(), subject());
            payload.insert(
                "ExtendedKeyUsage".into(),
                Value::Array(vec!["1.3.6.1.5.5.7.3.2".into()]),
            );
            payload
        }
        IdentitySource::Pkcs12 { p12, password } => {
            let mut payload = common(
                "com.apple.security.pkcs12",
                &identifier,
                uuid,
                "Device identity",
            );
            payload.insert(
                "PayloadCertificateFileName".into(),
                "device-identity.p12".into(),
            );
            payload.insert("PayloadContent".into(), Value::Data(p12.clone()));
            payload.insert("Password".into(), password.clone().into());
            payload
        }
    };
    Value::Dictionary(payload)
}

/// The DER of the first certificate of a PEM file.
pub fn certificate_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem)
        .map(|der| der.to_vec())
        .map_err(|e| format!("not a PEM certificate: {e}"))
}

/// SHA-256 of the first certificate of a PEM file (SCEP's `CAFingerprint`).
pub fn certificate_fingerprint(pem: &[u8]) -> Result<Vec<u8>, String> {
    use sha2::Digest;
    Ok(sha2::Sha256::digest(certificate_der(pem)?).to_vec())
}

/// Issues a device identity from the device CA (certificate and key, PEM) as a PKCS #12
/// protected by `password`: an ECDSA P-256 key and a clientAuth certificate for
/// `common_name`, valid `days` days. 3DES and SHA-1 MAC, which every Apple OS imports.
pub fn issue_pkcs12(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    common_name: &str,
    days: i64,
    password: &str,
) -> Result<Vec<u8>, String> {
    let ca_key = rcgen::KeyPair::from_pem(ca_key_pem)
        .map_err(|e| format!("--device-ca-key is not a PEM private key: {e}"))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|e| format!("--device-ca is not a PEM CA certificate: {e}"))?;
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
    let certificate = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("issuing the device identity: {e}"))?;
    let ca_der = rustls_pki_types::pem::PemObject::from_pem_slice(ca_cert_pem.as_bytes())
        .map(|der: rustls_pki_types::CertificateDer<'_>| der.to_vec())
        .map_err(|e| format!("--device-ca: {e}"))?;
    let chain = [certificate.der().to_vec(), ca_der]
        .iter()
        .map(|der| p12_keystore::Certificate::from_der(der).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let private_key =
        p12_keystore::PrivateKey::from_der(&key.serialize_der()).map_err(|e| e.to_string())?;
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        "device identity",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            b"updraft-device".to_vec(),
            private_key,
            chain,
        )),
    );
    store
        .writer(password)
        .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
        .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha1)
        .write()
        .map_err(|e| format!("writing the PKCS #12: {e}"))
}

/// A new device CA (certificate and private key, PEM): ECDSA P-256, valid `years` years, for
/// signing device identities into profiles (`--device-ca-key`) and for `--device-ca`.
pub fn new_device_ca(common_name: &str, years: i64) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("generating the CA key: {e}"))?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * years);
    let certificate = params
        .self_signed(&key)
        .map_err(|e| format!("signing the CA certificate: {e}"))?;
    Ok((certificate.pem(), key.serialize_pem()))
}
