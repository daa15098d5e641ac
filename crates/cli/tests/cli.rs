//! The `updraft` command as users and scripts call it: the JSON contract, tables, exit codes.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn updraft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(args)
        .output()
        .unwrap()
}

fn fixture(name: &str) -> String {
    fixture_path(name).display().to_string()
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gdmf")
        .join(name)
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn assert_clean_failure(output: &Output, mentions: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    for mention in mentions {
        assert!(
            stderr.contains(mention),
            "{stderr:?} should mention {mention:?}"
        );
    }
}

#[test]
fn show_json_lists_every_entry_as_is_in_order() {
    let out = json(&updraft(&[
        "feed",
        "show",
        "--file",
        &fixture("pmv_2026-04-11_raw.json"),
        "--json",
    ]));
    let entries = out["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 151);
    let first = &entries[0];
    assert_eq!(first["set"], "PublicAssetSets");
    assert_eq!(first["platform"], "iOS");
    assert_eq!(first["product_version"], "9.6.4");
    assert_eq!(first["build"], "20U512");
    assert_eq!(first["posting_date"], "2026-03-24");
    assert_eq!(first["expiration_date"], "2026-07-10");
    assert_eq!(first["product_version_extra"], Value::Null);
    assert_eq!(first["prerequisite_build"], Value::Null);
    assert_eq!(first["supported_devices"][0], "Watch4,1");
    let last = entries.last().unwrap();
    assert_eq!(last["set"], "PublicBackgroundSecurityImprovements");
    assert_eq!(last["product_version_extra"], "(a)");
    assert!(last["prerequisite_build"].is_string());
}

#[test]
fn show_reads_the_cache_wrapper_and_legacy_keys() {
    let out = json(&updraft(&[
        "feed",
        "show",
        "--file",
        &fixture("pmv_2024-09-28_sofa-cache-wrapper_xrOS_RSRkey.json"),
        "--json",
    ]));
    let entries = out["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["platform"] == "xrOS"));
    assert!(
        entries
            .iter()
            .all(|e| e["set"] != "PublicRapidSecurityResponses"),
        "that set is empty in this capture"
    );
}

#[test]
fn show_table_is_readable() {
    let output = updraft(&[
        "feed",
        "show",
        "--file",
        &fixture("pmv_2026-04-11_raw.json"),
    ]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 152);
    assert!(lines[0].starts_with("SET"));
    assert!(text.contains(
        "PublicBackgroundSecurityImprovements  macOS     26.3.2   (a)    25D771400a  25D2140"
    ));
}

#[test]
fn targets_json_follows_the_contract() {
    let out = json(&updraft(&[
        "feed",
        "targets",
        "--file",
        &fixture("pmv_2026-04-11_raw.json"),
        "--platform",
        "macOS",
        "--device-id",
        "j314sap",
        "--os-version",
        "26.3.1",
        "--build",
        "25D2128",
        "--on",
        "2026-04-11",
        "--json",
    ]));
    let targets = out["targets"].as_array().unwrap();
    let summary: Vec<String> = targets
        .iter()
        .map(|t| {
            format!(
                "{} {} {} {} {}",
                t["product_version"],
                t["product_version_extra"],
                t["build"],
                t["posting_date"],
                t["expiration_date"]
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            r#""26.4.1" null "25E253" "2026-04-09" "2026-07-10""#,
            r#""26.4" null "25E246" "2026-03-24" "2026-07-08""#,
            r#""26.3.1" "(a)" "25D771280a" "2026-03-17" "2026-07-10""#,
        ]
    );
    let keys: Vec<_> = targets[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 5);
}

#[test]
fn targets_with_extra_and_default_feed() {
    let out = json(&updraft(&[
        "feed",
        "targets",
        "--platform",
        "macOS",
        "--device-id",
        "J314sAP",
        "--os-version",
        "26.3.1",
        "--build",
        "25D2128",
        "--extra",
        "(a)",
        "--on",
        "2026-04-11",
        "--json",
    ]));
    assert_eq!(out["targets"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_fails_cleanly_naming_what_is_wrong() {
    let dir = tempfile_dir();
    let broken = dir.join("broken.json");
    std::fs::write(
        &broken,
        r#"{"AssetSets": {"macOS": [{"ProductVersion": "26.4", "PostingDate": "2026-02-30"}]}}"#,
    )
    .unwrap();
    let broken = broken.display().to_string();
    assert_clean_failure(
        &updraft(&["feed", "show", "--file", &broken]),
        &[&broken, "AssetSets.macOS[0].PostingDate", "2026-02-30"],
    );
    let empty = fixture("pmv_2025-05-21_EMPTY-200_sofa-cache-wrapper.json");
    assert_clean_failure(
        &updraft(&["feed", "show", "--file", &empty, "--json"]),
        &[&empty, "no release"],
    );
    assert_clean_failure(
        &updraft(&["feed", "show", "--file", "/no/such/file.json"]),
        &["/no/such/file.json"],
    );
    let april = fixture("pmv_2026-04-11_raw.json");
    let base = [
        "feed",
        "targets",
        "--file",
        &april,
        "--device-id",
        "J314sAP",
        "--build",
        "25D125",
    ];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    assert_clean_failure(
        &updraft(&with(&["--platform", "Windows", "--os-version", "26.3"])),
        &["--platform", "Windows"],
    );
    assert_clean_failure(
        &updraft(&with(&["--platform", "macOS", "--os-version", "26.3 (a)"])),
        &["--os-version"],
    );
    assert_clean_failure(
        &updraft(&with(&[
            "--platform",
            "macOS",
            "--os-version",
            "26.3",
            "--on",
            "11/04/2026",
        ])),
        &["--on", "YYYY-MM-DD"],
    );
    assert_eq!(updraft(&["feed", "bogus"]).status.code(), Some(2));
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "updraft-cli-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Serves each body once, in order, as HTTP/1.1 200 responses with an ETag.
fn serve_once_each(bodies: Vec<Vec<u8>>) -> String {
    serve_once_each_with_status(bodies.into_iter().map(|body| (200, body)).collect())
}

/// Serves each (status, body) once, in order, with an ETag.
fn serve_once_each_with_status(answers: Vec<(u16, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, (status, body)) in answers.into_iter().enumerate() {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 {status} Answer\r\nContent-Type: application/json\r\nETag: \"e{n}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{address}/v2/pmv")
}

#[test]
fn fetch_saves_a_good_answer_and_keeps_it_over_an_empty_one() {
    let good = std::fs::read(fixture_path("pmv_2026-04-11_raw.json")).unwrap();
    let empty = br#"{"PublicAssetSets": {}, "AssetSets": {}}"#.to_vec();
    let url = serve_once_each(vec![good, empty]);
    let out = tempfile_dir().join("feed.json");
    let out_text = out.display().to_string();

    let first = updraft(&["feed", "fetch", "--url", &url, "--out", &out_text]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("saved 151 entries"));
    let saved = std::fs::read(&out).unwrap();
    let shown = json(&updraft(&["feed", "show", "--file", &out_text, "--json"]));
    assert_eq!(shown["entries"].as_array().unwrap().len(), 151);

    assert_clean_failure(
        &updraft(&["feed", "fetch", "--url", &url, "--out", &out_text]),
        &[&out_text, "left as it was", "no release"],
    );
    assert_eq!(std::fs::read(&out).unwrap(), saved);
}

/// A 304 to a request that sent no etag (a proxy that ignores HTTP's rules) is an error that
/// names the URL, not a panic.
#[test]
fn fetch_to_stdout_reports_an_unasked_304() {
    let url = serve_once_each_with_status(vec![(304, Vec::new())]);
    let output = updraft(&["feed", "fetch", "--url", &url]);
    assert_clean_failure(&output, &[&url, "304", "no etag"]);
    assert!(output.stdout.is_empty());
}

/// `updraft serve` stopped by its service manager (SIGTERM): it finishes, merges every status
/// report it acknowledged into the device's status, and exits 0.
#[cfg(unix)]
#[test]
fn serve_stops_cleanly_on_sigterm_with_every_report_merged() {
    use std::io::BufRead;
    let dir = tempfile_dir();
    let db = dir.join("server.db");
    let mut server = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args([
            "serve",
            "--db",
            &db.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            // The report comes as a NanoMDM in front would forward it.
            "--insecure-ddm-forwarding",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(server.stderr.take().unwrap());
    let address = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve ended early"
        );
        if let Some(address) = line
            .trim()
            .strip_prefix("updraft serve: listening on http://")
            .and_then(|rest| rest.split_whitespace().next())
        {
            break address.to_owned();
        }
    };
    let report = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/ddm-status/status.1st.json"),
    )
    .unwrap();
    let mut connection = std::net::TcpStream::connect(&address).unwrap();
    write!(
        connection,
        "PUT /ddm/status HTTP/1.1\r\nHost: {address}\r\nX-Enrollment-ID: SERVE-STOP-1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        report.len()
    )
    .unwrap();
    connection.write_all(&report).unwrap();
    let mut answer = String::new();
    connection.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "exit {status:?}; stderr: {rest}");
    assert!(rest.contains("updraft serve: stopped"), "{rest}");

    let database = rusqlite::Connection::open(&db).unwrap();
    let (through, newest): (i64, i64) = database
        .query_row(
            "SELECT (SELECT value FROM counters WHERE name = 'status_through'),
                    (SELECT max(id) FROM status_reports)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(through, newest, "a report was left unmerged");
    let merged: String = database
        .query_row(
            "SELECT report FROM status WHERE enrollment_id = 'SERVE-STOP-1'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        merged.contains("\"serial-number\":\"ZRMXJQTTFX\""),
        "{merged}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
