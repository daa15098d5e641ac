//! The enrollment profile checked against Apple's own schema files (apple/device-management,
//! copied into `fixtures/apple-profiles`, see its SOURCES.md): every key we write is one Apple
//! defines for that payload, with Apple's type, and every key Apple requires is there. Then the
//! profile is read back as a device would, and the PKCS #12 identity opens with its password
//! and chains to the device CA the server trusts.

use std::collections::BTreeMap;
use std::path::Path;

use plist::Value;
use updraft_server::DeviceTrust;
use updraft_server::identity::TlsPeer;
use updraft_server::profile::{self, IdentitySource, ProfileSettings};

/// One key of an Apple schema file: its type, whether it is required, and its subkeys.
#[derive(Debug, Default)]
struct SchemaKey {
    kind: String,
    required: bool,
    subkeys: BTreeMap<String, SchemaKey>,
}

/// Reads the `payloadkeys` tree of an Apple schema YAML. The files are regular (two-space
/// indent, `- key:` opening each entry, `type:`/`presence:`/`subkeys:` under it), so their
/// indentation is enough to rebuild the tree.
fn schema(file: &str) -> BTreeMap<String, SchemaKey> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/apple-profiles")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut root = BTreeMap::new();
    // The open entries, outermost first: (indent of their `- key:`, path of names).
    let mut open: Vec<(usize, String)> = Vec::new();
    let mut in_payloadkeys = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        if indent == 0 && !trimmed.starts_with('-') {
            in_payloadkeys = trimmed.starts_with("payloadkeys:");
            open.clear();
            continue;
        }
        if !in_payloadkeys {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("- key: ") {
            while open.last().is_some_and(|(at, _)| *at >= indent) {
                open.pop();
            }
            open.push((indent, name.trim().trim_matches('\'').to_owned()));
            entry(&mut root, &open);
        } else if let Some((at, _)) = open.last() {
            if indent != at + 2 {
                continue;
            }
            if let Some(kind) = trimmed.strip_prefix("type: ") {
                entry(&mut root, &open).kind = kind.trim().to_owned();
            } else if let Some(presence) = trimmed.strip_prefix("presence: ") {
                entry(&mut root, &open).required = presence.trim() == "required";
            }
        }
    }
    assert!(!root.is_empty(), "{file}: no payloadkeys read");
    root
}

fn entry<'a>(
    root: &'a mut BTreeMap<String, SchemaKey>,
    path: &[(usize, String)],
) -> &'a mut SchemaKey {
    let (first, rest) = path.split_first().expect("an open entry");
    rest.iter().fold(
        root.entry(first.1.clone()).or_default(),
        |key, (_, name)| key.subkeys.entry(name.clone()).or_default(),
    )
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "<string>",
        Value::Integer(_) => "<integer>",
        Value::Boolean(_) => "<boolean>",
        Value::Data(_) => "<data>",
        Value::Array(_) => "<array>",
        Value::Dictionary(_) => "<dictionary>",
        Value::Real(_) => "<real>",
        Value::Date(_) => "<date>",
        _ => "<other>",
    }
}

/// Every problem of `dictionary` against `keys`, each named by its path.
fn check_dictionary(
    at: &str,
    dictionary: &plist::Dictionary,
    keys: &BTreeMap<String, SchemaKey>,
    problems: &mut Vec<String>,
) {
    if keys.contains_key("ANY") {
        return;
    }
    for (name, value) in dictionary {
        match keys.get(name) {
            None => problems.push(format!("{at}.{name}: not a key Apple defines here")),
            Some(key) => check_value(&format!("{at}.{name}"), value, key, problems),
        }
    }
    for (name, key) in keys {
        if key.required && !dictionary.contains_key(name) {
            problems.push(format!("{at}.{name}: required by Apple, missing"));
        }
    }
}

fn check_value(at: &str, value: &Value, key: &SchemaKey, problems: &mut Vec<String>) {
    if key.kind != "<any>" && key.kind != type_name(value) {
        problems.push(format!(
            "{at}: Apple's type is {}, the profile has {}",
            key.kind,
            type_name(value)
        ));
        return;
    }
    match value {
        Value::Dictionary(dictionary) if !key.subkeys.is_empty() => {
            check_dictionary(at, dictionary, &key.subkeys, problems)
        }
        Value::Array(items) => {
            if let Some(item) = key.subkeys.values().next() {
                for (i, value) in items.iter().enumerate() {
                    check_value(&format!("{at}[{i}]"), value, item, problems);
                }
            }
        }
        _ => {}
    }
}

/// The payload's own keys joined with the keys every payload has.
fn payload_schema(kind: &str) -> BTreeMap<String, SchemaKey> {
    let mut keys = schema("CommonPayloadKeys.yaml");
    keys.extend(schema(&format!("{kind}.yaml")));
    keys
}

fn check_profile(xml: &[u8]) -> (plist::Dictionary, Vec<String>) {
    let profile = plist::from_bytes::<Value>(xml).expect("the profile reads back as a plist");
    let profile = profile.into_dictionary().expect("a dictionary at the top");
    let mut problems = Vec::new();
    check_dictionary("profile", &profile, &schema("TopLevel.yaml"), &mut problems);
    let payloads = profile["PayloadContent"]
        .as_array()
        .expect("PayloadContent");
    for (i, payload) in payloads.iter().enumerate() {
        let payload = payload.as_dictionary().expect("each payload a dictionary");
        let kind = payload["PayloadType"].as_string().expect("PayloadType");
        check_dictionary(
            &format!("profile.PayloadContent[{i}] ({kind})"),
            payload,
            &payload_schema(kind),
            &mut problems,
        );
    }
    (profile, problems)
}

fn payload<'a>(profile: &'a plist::Dictionary, kind: &str) -> &'a plist::Dictionary {
    profile["PayloadContent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_dictionary)
        .find(|p| p["PayloadType"].as_string() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} payload"))
}

struct TestCa {
    cert_pem: String,
    key_pem: String,
}

fn test_ca(name: &str) -> TestCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).unwrap();
    TestCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn settings(identity: IdentitySource, tls_anchor: Option<Vec<u8>>) -> ProfileSettings {
    ProfileSettings {
        base_url: "https://mdm.example.com/".into(),
        topic: "com.apple.mgmt.External.2a1b3c4d-0000-4000-8000-000000000001".into(),
        identifier: "com.example.updraft".into(),
        organization: "Example Corp".into(),
        identity,
        tls_anchor,
        development_apns: false,
    }
}

fn uuids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("00000000-0000-4000-8000-{n:012}")
    }
}

#[test]
fn a_pkcs12_profile_has_only_apples_keys_and_its_identity_chains_to_the_device_ca() {
    let device_ca = test_ca("Example device CA");
    let tls_ca = test_ca("Example server TLS CA");
    let p12 = profile::issue_pkcs12(
        &device_ca.cert_pem,
        &device_ca.key_pem,
        "enrolling-device",
        365,
        "correct horse",
    )
    .unwrap();
    let anchor = profile::certificate_der(tls_ca.cert_pem.as_bytes()).unwrap();
    let xml = profile::enrollment_profile(
        &settings(
            IdentitySource::Pkcs12 {
                p12,
                password: "correct horse".into(),
            },
            Some(anchor.clone()),
        ),
        &mut uuids(),
    );
    let (profile, problems) = check_profile(&xml);
    assert_eq!(problems, Vec::<String>::new());

    let mdm = payload(&profile, "com.apple.mdm");
    let identity = payload(&profile, "com.apple.security.pkcs12");
    assert_eq!(
        mdm["IdentityCertificateUUID"], identity["PayloadUUID"],
        "the MDM payload names the identity payload"
    );
    assert_eq!(
        mdm["ServerURL"].as_string(),
        Some("https://mdm.example.com/mdm/connect")
    );
    assert_eq!(
        mdm["CheckInURL"].as_string(),
        Some("https://mdm.example.com/mdm/checkin")
    );
    assert_eq!(
        mdm["Topic"].as_string(),
        Some("com.apple.mgmt.External.2a1b3c4d-0000-4000-8000-000000000001")
    );
    assert_eq!(mdm["SignMessage"].as_boolean(), Some(true));
    assert_eq!(mdm["CheckOutWhenRemoved"].as_boolean(), Some(true));
    let capabilities: Vec<_> = mdm["ServerCapabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_string)
        .collect();
    assert!(capabilities.contains(&"com.apple.mdm.per-user-connections"));
    assert!(capabilities.contains(&"com.apple.mdm.bootstraptoken"));
    assert_eq!(
        payload(&profile, "com.apple.security.root")["PayloadContent"].as_data(),
        Some(anchor.as_slice()),
        "the private TLS CA is installed as a root"
    );

    // The identity opens with the profile's password, and the server accepts it.
    let p12 = identity["PayloadContent"].as_data().unwrap();
    let password = identity["Password"].as_string().unwrap();
    assert!(
        p12_keystore::KeyStore::from_pkcs12(p12, "wrong", Default::default()).is_err(),
        "a wrong password must not open the identity"
    );
    let store = p12_keystore::KeyStore::from_pkcs12(p12, password, Default::default()).unwrap();
    let (_, chain) = store.private_key_chain().expect("a key with its chain");
    let leaf = chain.certs()[0].as_der().to_vec();
    let peer = TlsPeer(Some(leaf.into()));
    let now = chrono::Utc::now();
    let trusted = DeviceTrust::from_pem(&[device_ca.cert_pem.into_bytes()], None).unwrap();
    let identity = trusted
        .identify(&Default::default(), b"", Some(&peer), now)
        .expect("the issued identity chains to the device CA");
    assert!(
        identity.subject.contains("enrolling-device"),
        "{identity:?}"
    );
    let other = DeviceTrust::from_pem(&[tls_ca.cert_pem.into_bytes()], None).unwrap();
    assert!(
        other
            .identify(&Default::default(), b"", Some(&peer), now)
            .is_err(),
        "another CA does not vouch for it"
    );
}

#[test]
fn scep_and_acme_profiles_have_only_apples_keys() {
    let ca = test_ca("Example SCEP CA");
    let scep = settings(
        IdentitySource::Scep {
            url: "https://scep.example.com/scep".into(),
            challenge: Some("s3cret".into()),
            ca_fingerprint: Some(profile::certificate_fingerprint(ca.cert_pem.as_bytes()).unwrap()),
        },
        None,
    );
    let (profile, problems) = check_profile(&profile::enrollment_profile(&scep, &mut uuids()));
    assert_eq!(problems, Vec::<String>::new());
    let content = payload(&profile, "com.apple.security.scep")["PayloadContent"]
        .as_dictionary()
        .unwrap();
    assert_eq!(
        content["URL"].as_string(),
        Some("https://scep.example.com/scep")
    );
    assert_eq!(
        content["CAFingerprint"].as_data().map(<[u8]>::len),
        Some(32)
    );
    assert!(
        !profile["PayloadContent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_dictionary().unwrap()["PayloadType"].as_string()
                == Some("com.apple.security.root")),
        "no TLS anchor for a public certificate"
    );

    let acme = settings(
        IdentitySource::Acme {
            directory_url: "https://acme.example.com/directory".into(),
            client_identifier: "device-42".into(),
        },
        None,
    );
    let (profile, problems) = check_profile(&profile::enrollment_profile(&acme, &mut uuids()));
    assert_eq!(problems, Vec::<String>::new());
    let acme = payload(&profile, "com.apple.security.acme");
    assert_eq!(acme["HardwareBound"].as_boolean(), Some(true));
    assert_eq!(
        payload(&profile, "com.apple.mdm")["IdentityCertificateUUID"],
        acme["PayloadUUID"]
    );
}

#[test]
fn the_schema_check_catches_a_wrong_key_and_a_missing_one() {
    // The checker itself can fail: a misspelt key, a wrong type and a missing required key
    // are each reported.
    let ca = test_ca("Example device CA");
    let p12 = profile::issue_pkcs12(&ca.cert_pem, &ca.key_pem, "d", 1, "pw").unwrap();
    let xml = profile::enrollment_profile(
        &settings(
            IdentitySource::Pkcs12 {
                p12,
                password: "pw".into(),
            },
            None,
        ),
        &mut uuids(),
    );
    let mut profile = plist::from_bytes::<Value>(&xml).unwrap();
    let payloads = profile
        .as_dictionary_mut()
        .unwrap()
        .get_mut("PayloadContent")
        .unwrap()
        .as_array_mut()
        .unwrap();
    let mdm = payloads
        .iter_mut()
        .filter_map(Value::as_dictionary_mut)
        .find(|p| p["PayloadType"].as_string() == Some("com.apple.mdm"))
        .unwrap();
    mdm.remove("Topic");
    mdm.insert("SignMessages".into(), true.into());
    mdm.insert("AccessRights".into(), "all".into());
    let mut edited = Vec::new();
    plist::to_writer_xml(&mut edited, &profile).unwrap();
    let (_, problems) = check_profile(&edited);
    let joined = problems.join("\n");
    assert!(joined.contains("SignMessages: not a key"), "{joined}");
    assert!(
        joined.contains("AccessRights: Apple's type is <integer>"),
        "{joined}"
    );
    assert!(
        joined.contains("Topic: required by Apple, missing"),
        "{joined}"
    );
}
