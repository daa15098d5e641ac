//! Which backend the console opens on. The settings file holds the server's address only; its API
//! key lives in the OS keychain behind [`SecretStore`], never in the file, the SQLite cache or the
//! UI (which learns only whether a key is stored).

use serde::{Deserialize, Serialize};
use std::path::Path;

use updraft_mdm::{KmfddmClient, MdmError, StatusSource};

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "camelCase")]
pub enum Settings {
    /// The embedded lab.
    #[default]
    Lab,
    /// A KMFDDM-compatible DDM server (NanoHUB, or `updraft serve`).
    Server {
        /// Its address, e.g. `https://mdm.example.com/`.
        url: String,
    },
}

/// What the Settings screen shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    /// `lab` or `server`: what the settings ask for.
    pub backend: String,
    /// The server's address.
    pub url: Option<String>,
    /// Whether the keychain holds an API key for it.
    pub api_key_stored: bool,
    /// What runs now (a change takes effect at the next start).
    pub running: String,
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

    /// The view, given the keychain and what runs now.
    pub fn view(&self, secrets: &dyn SecretStore, running_lab: bool) -> SettingsView {
        let (backend, url) = match self {
            Self::Lab => ("lab", None),
            Self::Server { url } => ("server", Some(url.clone())),
        };
        SettingsView {
            backend: backend.into(),
            api_key_stored: url
                .as_deref()
                .is_some_and(|url| secrets.api_key(url).ok().flatten().is_some()),
            url,
            running: if running_lab { "lab" } else { "server" }.into(),
        }
    }
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

/// Tries the server with the key: the console needs its status-changes feed.
pub async fn try_server(url: &str, api_key: &str) -> Result<(), AppError> {
    let client =
        KmfddmClient::updraft(url, api_key).map_err(|e| AppError::Invalid(e.to_string()))?;
    match client.status_changes(0, 1).await {
        Ok(_) => Ok(()),
        Err(MdmError::Unsupported(what)) => Err(AppError::Invalid(format!(
            "{url} answers, but lacks {what}, which the console needs to follow devices (Updraft's own server, `updraft serve`, has it)"
        ))),
        Err(error) => Err(AppError::Invalid(format!("{url}: {error}"))),
    }
}

/// Saves a server as the backend: checks the address, tries it with the key, stores the key in
/// the keychain and the address in the settings file.
pub async fn use_server(
    path: &Path,
    secrets: &dyn SecretStore,
    url: &str,
    api_key: &str,
) -> Result<Settings, AppError> {
    let url = check_server_url(url)?;
    if api_key.trim().is_empty() {
        return Err(AppError::Invalid("the API key is empty".into()));
    }
    try_server(&url, api_key.trim()).await?;
    secrets
        .set_api_key(&url, api_key.trim())
        .map_err(|e| AppError::Invalid(format!("the keychain refused the API key: {e}")))?;
    let settings = Settings::Server { url };
    settings.save(path)?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let refused = use_server(&path, &keychain, "http://127.0.0.1:9", "secret").await;
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
        let settings = Settings::Server {
            url: "https://mdm.example.com/".into(),
        };
        settings.save(&path).expect("saved");
        let file = std::fs::read_to_string(&path).expect("read");
        assert!(!file.contains("s3cret-key"), "{file}");
        let view = settings.view(&keychain, true);
        assert!(view.api_key_stored);
        let json = serde_json::to_string(&view).expect("json");
        assert!(!json.contains("s3cret-key"), "{json}");
        assert_eq!(Settings::load(&path).expect("load"), settings);
    }
}
