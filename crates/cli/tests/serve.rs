//! `updraft serve` as an admin deploys it: the device CA and enrollment profile it writes, what
//! it refuses to start with, and a listener that idle connections cannot lock devices out of.

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::device_ca;

fn updraft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(args)
        .output()
        .unwrap()
}

fn failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_device_ca_and_the_profile_are_written_for_the_admin_to_keep_and_install() {
    let dir = tempfile::tempdir().unwrap();
    let (certificate, key) = device_ca(dir.path());
    assert!(
        std::fs::read_to_string(&certificate)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the CA key is readable by others: {mode:o}"
        );
    }
    // A CA is never overwritten: the devices it signed would all be lost.
    let before = std::fs::read(&key).unwrap();
    let again = updraft(&[
        "serve",
        "device-ca",
        "--cert-out",
        path(&certificate),
        "--key-out",
        path(&key),
    ]);
    assert!(failure(&again).contains("never overwritten"));
    assert_eq!(std::fs::read(&key).unwrap(), before);

    let profile = dir.path().join("enroll.mobileconfig");
    let topic = "com.apple.mgmt.External.7d2a3c9e-1111-4222-8333-944455566677";
    let written = updraft(&[
        "serve",
        "profile",
        "--url",
        "https://mdm.example.com",
        "--topic",
        topic,
        "--device-ca",
        path(&certificate),
        "--device-ca-key",
        path(&key),
        "--organization",
        "Example Corp",
        "--out",
        path(&profile),
    ]);
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let text = std::fs::read_to_string(&profile).unwrap();
    for expected in [
        "<string>com.apple.mdm</string>",
        "<string>com.apple.security.pkcs12</string>",
        "<string>https://mdm.example.com/mdm/checkin</string>",
        "<string>https://mdm.example.com/mdm/connect</string>",
        topic,
        "<key>SignMessage</key>\n\t\t\t<true/>",
        "Example Corp",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&profile).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "a profile with an identity is a secret: {mode:o}"
        );
    }

    let not_mdm = updraft(&[
        "serve",
        "profile",
        "--url",
        "https://mdm.example.com",
        "--topic",
        "com.example.app",
        "--scep-url",
        "https://scep.example.com",
        "--out",
        path(&dir.path().join("x.mobileconfig")),
    ]);
    assert!(failure(&not_mdm).contains("com.apple.mgmt."));
    let no_identity = updraft(&[
        "serve",
        "profile",
        "--url",
        "https://mdm.example.com",
        "--topic",
        topic,
        "--out",
        path(&dir.path().join("x.mobileconfig")),
    ]);
    assert!(failure(&no_identity).contains("--scep-url"));
}

#[test]
fn plain_http_off_loopback_and_a_bad_device_ca_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let open = updraft(&["serve", "--db", path(&db), "--listen", "0.0.0.0:0"]);
    let stderr = failure(&open);
    assert!(stderr.contains("--tls-cert"), "{stderr}");
    assert!(stderr.contains("--insecure-http"), "{stderr}");

    let garbage = dir.path().join("not-a-ca.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let bad = updraft(&[
        "serve",
        "--db",
        path(&db),
        "--listen",
        "127.0.0.1:0",
        "--device-ca",
        path(&garbage),
    ]);
    assert!(failure(&bad).contains("--device-ca"));
}

/// A running `updraft serve`, killed when dropped; its stderr collected.
struct Serve {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `updraft serve` with at most `descriptors` open files, as a service manager may set it.
#[cfg(unix)]
fn serve_with_descriptor_limit(dir: &Path, descriptors: u32, extra: &[&str]) -> (Serve, String) {
    let (certificate, _) = device_ca(dir);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {descriptors} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_updraft"))
        .args(["serve", "--db", path(&dir.join("server.db"))])
        .args(["--listen", "127.0.0.1:0", "--device-ca", path(&certificate)])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let collected = Arc::new(Mutex::new(String::new()));
    let first_line = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve ended early"
        );
        collected.lock().unwrap().push_str(&line);
        if line.contains("listening on") {
            break line;
        }
    };
    let sink = collected.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&line);
            sink.lock().unwrap().push('\n');
        }
    });
    (
        Serve {
            child,
            stderr: collected,
        },
        first_line,
    )
}

/// A signed Authenticate over a fresh connection: the status line of the answer.
fn authenticate(address: &str, dir: &Path) -> String {
    let (certificate, key) = device_ca(dir);
    let issuer = updraft_sim::IdentityIssuer::from_pem(
        &std::fs::read_to_string(certificate).unwrap(),
        &std::fs::read_to_string(key).unwrap(),
    )
    .unwrap();
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/nanomdm/Authenticate.2.plist"),
    )
    .unwrap();
    let signature = issuer.issue("legitimate Mac").unwrap().sign(&body).unwrap();
    let mut connection = std::net::TcpStream::connect(address).unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        connection,
        "PUT /mdm/checkin HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/x-apple-aspen-mdm-checkin\r\nMdm-Signature: {signature}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    connection.write_all(&body).unwrap();
    let mut answer = String::new();
    let _ = connection.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[cfg(unix)]
#[test]
fn eleven_hundred_idle_connections_at_1024_descriptors_do_not_lock_out_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let (server, first_line) =
        serve_with_descriptor_limit(dir.path(), 1024, &["--header-timeout", "2"]);
    // The cap follows the descriptor limit, leaving room for the database and the listener.
    assert!(
        first_line.contains("at most 896 connections"),
        "{first_line}"
    );
    let address = first_line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    let idle: Vec<std::net::TcpStream> = (0..1100)
        .map(|_| std::net::TcpStream::connect(&address).unwrap())
        .collect();
    let started = Instant::now();
    let status = authenticate(&address, dir.path());
    let waited = started.elapsed();
    assert_eq!(status, "HTTP/1.1 200 OK", "after {waited:?}");
    eprintln!("a device behind 1,100 idle connections was served after {waited:?}");

    // The idle connections were closed by the server, not left to hold descriptors.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = [0; 256];
    let read = first.read(&mut buffer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buffer[..read]);
    assert!(
        read == 0 || answer.starts_with("HTTP/1.1 408"),
        "an idle connection stayed open: {answer:?}"
    );

    // Still serving, and never out of descriptors.
    assert_eq!(authenticate(&address, dir.path()), "HTTP/1.1 200 OK");
    let log = server.stderr.lock().unwrap().clone();
    assert!(!log.to_lowercase().contains("too many open files"), "{log}");
    drop(idle);
}
