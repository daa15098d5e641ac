//! Which backend the console opens on. The settings file holds the server's address, kind,
//! private CA and status source; its API keys live in the OS keychain behind [`SecretStore`],
//! never in the file, the SQLite cache or the UI (which learns only whether a key is stored).

use serde::{Deserialize, Serialize};
use std::path::Path;

use std::sync::Arc;

use updraft_clock::SharedClock;
use updraft_mdm::{
    Deployment, KmfddmClient, MdmError, PollingStatusSource, Preset, ServerProfile, StatusSource,
    parse_enrollment_list,
};

use crate::AppError;

/// Where API keys are kept: the OS keychain in the app.
pub trait SecretStore: Send + Sync {
    /// The API key stored for a server, if any.
    fn api_key(&self, url: &str) -> Result<Option<String>, String>;
    /// Stores a server's API key.
    fn set_api_key(&self, url: &str, api_key: &str) -> Result<(), String>;
}

/// API keys held in memory only, gone when the process ends: for tests, and for running the
/// console against a server without touching the keychain.
#[derive(Debug, Default)]
pub struct MemorySecrets(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl SecretStore for MemorySecrets {
    fn api_key(&self, url: &str) -> Result<Option<String>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.get(url).cloned())
    }
    fn set_api_key(&self, url: &str, api_key: &str) -> Result<(), String> {
        self.0
            .lock()
            .map_err(|e| e.to_string())?
            .insert(url.into(), api_key.into());
        Ok(())
    }
}

/// What the console opens on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "backend", rename_all = "camelCase")]
pub enum Settings {
    /// The embedded lab.
    #[default]
    Lab,
    /// A KMFDDM-compatible DDM server (NanoHUB, KMFDDM, or `updraft serve`).
    Server(ServerSettings),
}

/// A DDM server as Settings keeps it (the keys are in the keychain, by address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ServerSettings {
    /// Its address, e.g. `https://mdm.example.com/`.
    pub url: String,
    /// What kind of server: its API prefix and user unless overridden.
    #[serde(default = "updraft_preset")]
    pub preset: Preset,
    /// The admin API's prefix, when not the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_prefix: Option<String>,
    /// The HTTP Basic user, when not the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_user: Option<String>,
    /// A private CA (PEM) for a server whose TLS chain ends in one (public data, kept here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Where the console reads devices' status.
    #[serde(default)]
    pub status: StatusChoice,
}

fn updraft_preset() -> Preset {
    Preset::Updraft
}

/// Where the console reads devices' status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "source", rename_all = "camelCase")]
pub enum StatusChoice {
    /// The server's own status-changes feed (`updraft serve`).
    #[default]
    ServerFeed,
    /// An `updraft serve --companion` that takes the server's webhooks; its key in the keychain.
    Companion {
        /// The companion's address.
        url: String,
    },
    /// Polling the server's `status-report` for a list of enrollments.
    #[serde(rename_all = "camelCase")]
    Polling {
        /// The list as imported (CSV: id, name, time zone; or ids one a line).
        enrollments: String,
        /// Minutes between polls.
        every_minutes: u32,
    },
}

/// What the Settings screen shows.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    /// `lab` or `server`: what the settings ask for.
    pub backend: String,
    /// The server, when one is chosen.
    pub server: Option<ServerSettings>,
    /// Whether the keychain holds an API key for it.
    pub api_key_stored: bool,
    /// What runs now (a change takes effect at the next start).
    pub running: String,
    /// Where the desktop app writes its log.
    pub log_file: Option<String>,
}

/// One thing Settings tried, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct CheckLine {
    /// What was tried: "address", "admin API", "status".
    pub what: String,
    /// Whether it works.
    pub ok: bool,
    /// What was found, in words an admin can act on.
    pub detail: String,
}

impl Settings {
    /// Reads the settings file; no file means the lab.
    pub fn load(path: &Path) -> Result<Self, AppError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                AppError::Invalid(format!(
                    "{} is not valid settings ({e}); delete it to start on the lab",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::Lab),
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display()).into()),
        }
    }

    /// Writes the settings file whole (a crash leaves the old one or the new one).
    pub fn save(&self, path: &Path) -> Result<(), AppError> {
        let temporary = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self).map_err(anyhow::Error::from)?;
        std::fs::write(&temporary, body)
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()).into())
    }

    /// What these settings ask for, in a line for the audit log (never a key).
    pub fn describe(&self) -> String {
        match self {
            Self::Lab => "the console opens on the lab at the next start".into(),
            Self::Server(server) => {
                let status = match &server.status {
                    StatusChoice::ServerFeed => "the server's status feed".to_owned(),
                    StatusChoice::Companion { url } => format!("the companion at {url}"),
                    StatusChoice::Polling { every_minutes, .. } => {
                        format!("polling every {every_minutes} min")
                    }
                };
                format!(
                    "the console opens on {} at {} at the next start; status from {status}",
                    server.preset.label(),
                    server.url
                )
            }
        }
    }

    /// The view, given the keychain and what runs now.
    pub fn view(
        &self,
        secrets: &dyn SecretStore,
        running_lab: bool,
        log_file: Option<&Path>,
    ) -> SettingsView {
        let server = match self {
            Self::Lab => None,
            Self::Server(server) => Some(server.clone()),
        };
        SettingsView {
            backend: if server.is_some() { "server" } else { "lab" }.into(),
            api_key_stored: server
                .as_ref()
                .is_some_and(|s| secrets.api_key(&s.url).ok().flatten().is_some()),
            server,
            running: if running_lab { "lab" } else { "server" }.into(),
            log_file: log_file.map(|p| p.display().to_string()),
        }
    }
}

impl ServerSettings {
    /// `updraft serve` at `url`, with its own status feed.
    pub fn updraft(url: &str) -> Self {
        Self {
            url: url.into(),
            preset: Preset::Updraft,
            api_prefix: None,
            api_user: None,
            ca_pem: None,
            status: StatusChoice::ServerFeed,
        }
    }

    /// The admin API's profile with its key.
    pub fn profile(&self, api_key: &str) -> ServerProfile {
        let mut profile = ServerProfile::preset(self.preset, &self.url, api_key);
        if let Some(prefix) = &self.api_prefix {
            profile.api_prefix = prefix.clone();
        }
        if let Some(user) = &self.api_user {
            profile.api_user = user.clone();
        }
        profile.extra_ca_pem = self.ca_pem.as_ref().map(|pem| pem.as_bytes().to_vec());
        profile
    }

    /// The console's backend: the server for declarations, assignments and pushes, and the
    /// chosen status source.
    pub fn backend(
        &self,
        secrets: &dyn SecretStore,
        clock: SharedClock,
    ) -> Result<Arc<Deployment>, AppError> {
        let key = stored_key(secrets, &self.url)?;
        let client = Arc::new(
            KmfddmClient::new(self.profile(&key)).map_err(|e| AppError::Invalid(e.to_string()))?,
        );
        let status: Arc<dyn StatusSource> = match &self.status {
            StatusChoice::ServerFeed => client.clone(),
            StatusChoice::Companion { url } => Arc::new(
                companion_client(url, &stored_key(secrets, url)?, self.ca_pem.as_deref())
                    .map_err(|e| AppError::Invalid(e.to_string()))?,
            ),
            StatusChoice::Polling {
                enrollments,
                every_minutes,
            } => Arc::new(PollingStatusSource::new(
                client.clone(),
                parse_enrollment_list(enrollments).map_err(|e| AppError::Invalid(e.to_string()))?,
                clock,
                chrono::Duration::minutes(i64::from((*every_minutes).max(1))),
            )),
        };
        Ok(Arc::new(Deployment::with_status(client, status)))
    }
}

fn stored_key(secrets: &dyn SecretStore, url: &str) -> Result<String, AppError> {
    secrets
        .api_key(url)
        .map_err(|e| AppError::Invalid(format!("the keychain: {e}")))?
        .ok_or_else(|| {
            AppError::Invalid(format!(
                "no API key for {url} in the keychain: enter it again in Settings"
            ))
        })
}

fn companion_client(url: &str, key: &str, ca_pem: Option<&str>) -> Result<KmfddmClient, MdmError> {
    let mut profile = ServerProfile::updraft(url, key);
    profile.extra_ca_pem = ca_pem.map(|pem| pem.as_bytes().to_vec());
    KmfddmClient::new(profile)
}

/// Checks a server address: absolute http(s) with a host; plain http only on this machine, since
/// the API key would cross the network in clear.
pub fn check_server_url(text: &str) -> Result<String, AppError> {
    let text = text.trim();
    let url = url::Url::parse(text)
        .map_err(|e| AppError::Invalid(format!("server address {text:?}: {e}")))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(AppError::Invalid(
                "the server address must use https: the API key would cross the network in clear"
                    .into(),
            ));
        }
        other => {
            return Err(AppError::Invalid(format!(
                "the server address must be https, not {other}"
            )));
        }
    }
    if url.host_str().is_none() {
        return Err(AppError::Invalid("the server address needs a host".into()));
    }
    Ok(url.to_string())
}

/// Tries the server as the settings describe it, and says what works and what does not: the
/// address, the admin API (a wrong prefix, user or key named as such), and the status source.
pub async fn try_server(
    server: &ServerSettings,
    api_key: &str,
    companion_key: Option<&str>,
) -> Vec<CheckLine> {
    let line = |what: &str, ok: bool, detail: String| CheckLine {
        what: what.into(),
        ok,
        detail,
    };
    let client = match KmfddmClient::new(server.profile(api_key)) {
        Ok(client) => client,
        Err(error) => return vec![line("address", false, error.to_string())],
    };
    let root = client.profile().api_root();
    let mut lines = Vec::new();
    match client.declaration_ids().await {
        Ok(ids) => {
            lines.push(line("address", true, format!("{} answers", server.url)));
            lines.push(line(
                "admin API",
                true,
                format!("{root} takes the key ({} declarations)", ids.len()),
            ));
        }
        Err(MdmError::Unreachable { reason, .. }) => {
            lines.push(line(
                "address",
                false,
                format!("cannot reach {}: {reason}", server.url),
            ));
            return lines;
        }
        Err(MdmError::Status { status: 404, .. }) => {
            lines.push(line("address", true, format!("{} answers", server.url)));
            lines.push(line(
                "admin API",
                false,
                wrong_prefix(server, api_key, &root).await,
            ));
            return lines;
        }
        Err(error @ MdmError::Unauthorized { .. }) => {
            lines.push(line("address", true, format!("{} answers", server.url)));
            lines.push(line("admin API", false, error.to_string()));
            return lines;
        }
        Err(error) => {
            lines.push(line("address", true, format!("{} answers", server.url)));
            lines.push(line("admin API", false, error.to_string()));
            return lines;
        }
    }
    let status = match &server.status {
        StatusChoice::ServerFeed => match client.status_changes(0, 1).await {
            Ok(_) => line("status", true, "the server's status-changes feed answers".into()),
            Err(MdmError::Unsupported(_)) => line(
                "status",
                false,
                "no status source: this server has no status-changes feed (NanoHUB and KMFDDM have none); choose its webhook companion (updraft serve --companion) or polling".into(),
            ),
            Err(error) => line("status", false, error.to_string()),
        },
        StatusChoice::Companion { url } => {
            match companion_client(url, companion_key.unwrap_or_default(), server.ca_pem.as_deref())
            {
                Ok(companion) => match companion.status_changes(0, 1).await {
                    Ok(_) => line("status", true, format!("the companion at {url} answers")),
                    Err(error) => line("status", false, format!("the companion: {error}")),
                },
                Err(error) => line("status", false, format!("the companion: {error}")),
            }
        }
        StatusChoice::Polling { enrollments, .. } => match parse_enrollment_list(enrollments) {
            Ok(list) if list.is_empty() => line(
                "status",
                false,
                "the enrollment list is empty: paste the enrolled devices' ids (one a line, or CSV: id, name, time zone)".into(),
            ),
            Ok(list) => match client.status_report(&list[0].id, 0).await {
                Ok(_) => line(
                    "status",
                    true,
                    format!("polling {} enrollments through status-report", list.len()),
                ),
                Err(error) => line("status", false, format!("status-report: {error}")),
            },
            Err(error) => line("status", false, error.to_string()),
        },
    };
    lines.push(status);
    lines
}

/// A 404 at the API's root: is the API at another preset's prefix?
async fn wrong_prefix(server: &ServerSettings, api_key: &str, root: &str) -> String {
    for preset in Preset::ALL {
        let mut other = server.clone();
        other.preset = preset;
        other.api_prefix = None;
        if other.profile(api_key).api_prefix == server.profile(api_key).api_prefix {
            continue;
        }
        let Ok(client) = KmfddmClient::new(other.profile(api_key)) else {
            continue;
        };
        match client.declaration_ids().await {
            Ok(_) | Err(MdmError::Unauthorized { .. }) => {
                return format!(
                    "nothing at {root} (404): the API answers at {} instead; choose the {} preset",
                    client.profile().api_root(),
                    preset.label()
                );
            }
            Err(_) => {}
        }
    }
    format!("nothing at {root} (404): check the address and the API prefix")
}

/// Saves a server as the backend: checks the address, tries it with its keys, and only if every
/// check passes stores the keys in the keychain and the settings in the file.
pub async fn use_server(
    path: &Path,
    secrets: &dyn SecretStore,
    mut server: ServerSettings,
    api_key: &str,
    companion_key: Option<&str>,
) -> Result<(Settings, Vec<CheckLine>), AppError> {
    server.url = check_server_url(&server.url)?;
    if let StatusChoice::Companion { url } = &mut server.status {
        *url = check_server_url(url)?;
    }
    let api_key = api_key.trim();
    if api_key.is_empty() {
        return Err(AppError::Invalid("the API key is empty".into()));
    }
    let companion_key = companion_key.map(str::trim).filter(|k| !k.is_empty());
    let lines = try_server(&server, api_key, companion_key).await;
    if let Some(failed) = lines.iter().find(|l| !l.ok) {
        return Err(AppError::Invalid(format!(
            "{}: {}",
            failed.what, failed.detail
        )));
    }
    secrets
        .set_api_key(&server.url, api_key)
        .map_err(|e| AppError::Invalid(format!("the keychain refused the API key: {e}")))?;
    if let (StatusChoice::Companion { url }, Some(key)) = (&server.status, companion_key) {
        secrets.set_api_key(url, key).map_err(|e| {
            AppError::Invalid(format!("the keychain refused the companion's key: {e}"))
        })?;
    }
    let settings = Settings::Server(server);
    settings.save(path)?;
    Ok((settings, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_file_of_the_earlier_form_still_opens_on_updraft_serve() {
        let earlier: Settings =
            serde_json::from_str(r#"{"backend": "server", "url": "https://mdm.example.com/"}"#)
                .expect("earlier form");
        assert_eq!(
            earlier,
            Settings::Server(ServerSettings::updraft("https://mdm.example.com/"))
        );
    }

    #[test]
    fn no_file_means_the_lab_and_a_broken_file_says_how_to_recover() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("settings.json");
        assert_eq!(Settings::load(&path).expect("load"), Settings::Lab);
        std::fs::write(&path, "{not json").expect("write");
        let error = Settings::load(&path).expect_err("broken").to_string();
        assert!(error.contains("delete it to start on the lab"), "{error}");
    }

    #[test]
    fn server_addresses_must_be_https_except_on_this_machine() {
        assert!(check_server_url("https://mdm.example.com").is_ok());
        assert!(check_server_url("http://127.0.0.1:9000").is_ok());
        assert!(check_server_url("http://mdm.example.com").is_err());
        assert!(check_server_url("ftp://mdm.example.com").is_err());
        assert!(check_server_url("mdm.example.com").is_err());
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_is_not_saved() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("settings.json");
        let keychain = MemorySecrets::default();
        let refused = use_server(
            &path,
            &keychain,
            ServerSettings::updraft("http://127.0.0.1:9"),
            "secret",
            None,
        )
        .await;
        assert!(refused.is_err());
        assert!(!path.exists());
        assert_eq!(keychain.api_key("http://127.0.0.1:9/"), Ok(None));
    }

    #[test]
    fn the_api_key_stays_in_the_keychain() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("settings.json");
        let keychain = MemorySecrets::default();
        keychain
            .set_api_key("https://mdm.example.com/", "s3cret-key")
            .expect("stored");
        let settings = Settings::Server(ServerSettings::updraft("https://mdm.example.com/"));
        settings.save(&path).expect("saved");
        let file = std::fs::read_to_string(&path).expect("read");
        assert!(!file.contains("s3cret-key"), "{file}");
        let view = settings.view(&keychain, true, None);
        assert!(view.api_key_stored);
        let json = serde_json::to_string(&view).expect("json");
        assert!(!json.contains("s3cret-key"), "{json}");
        assert_eq!(Settings::load(&path).expect("load"), settings);
    }
}
