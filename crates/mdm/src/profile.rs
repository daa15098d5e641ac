//! Where a DDM server's admin API is and how to sign in: settings, not constants. NanoHUB serves
//! KMFDDM's API under `/api/v1/ddm` for user `nanohub`; KMFDDM alone and `updraft serve` under
//! `/v1` for user `kmfddm`.

use serde::{Deserialize, Serialize};

/// A known server kind, with its API prefix and HTTP Basic user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub enum Preset {
    /// NanoHUB (NanoMDM + KMFDDM in one binary).
    NanoHub,
    /// KMFDDM on its own.
    Kmfddm,
    /// `updraft serve`.
    Updraft,
}

impl Preset {
    /// Every preset, in the order Settings offers them.
    pub const ALL: [Preset; 3] = [Preset::NanoHub, Preset::Kmfddm, Preset::Updraft];

    /// The admin API's path prefix.
    pub fn api_prefix(self) -> &'static str {
        match self {
            Self::NanoHub => "/api/v1/ddm",
            Self::Kmfddm | Self::Updraft => "/v1",
        }
    }

    /// The HTTP Basic user.
    pub fn api_user(self) -> &'static str {
        match self {
            Self::NanoHub => "nanohub",
            Self::Kmfddm | Self::Updraft => "kmfddm",
        }
    }

    /// The name Settings shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::NanoHub => "NanoHUB",
            Self::Kmfddm => "KMFDDM",
            Self::Updraft => "updraft serve",
        }
    }
}

/// How to reach one server's admin API.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerProfile {
    /// Scheme, host and port (and a path if the server sits under one): `https://mdm.example.com`.
    pub base_url: String,
    /// The API's path under the base: `/api/v1/ddm` or `/v1`.
    pub api_prefix: String,
    /// The HTTP Basic user.
    pub api_user: String,
    /// The API key (HTTP Basic password).
    pub api_key: String,
    /// PEM of a CA to trust beside the platform's store, for a server with a private chain.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProfile")
            .field("base_url", &self.base_url)
            .field("api_prefix", &self.api_prefix)
            .field("api_user", &self.api_user)
            .field("api_key", &"<hidden>")
            .field("extra_ca", &self.extra_ca_pem.is_some())
            .finish()
    }
}

impl ServerProfile {
    /// A server of a known kind.
    pub fn preset(preset: Preset, base_url: &str, api_key: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_prefix: preset.api_prefix().into(),
            api_user: preset.api_user().into(),
            api_key: api_key.to_owned(),
            extra_ca_pem: None,
        }
    }

    /// `updraft serve` (and the lab's embedded server).
    pub fn updraft(base_url: &str, api_key: &str) -> Self {
        Self::preset(Preset::Updraft, base_url, api_key)
    }

    /// The API's root URL, without a trailing slash.
    pub fn api_root(&self) -> String {
        let prefix = self.api_prefix.trim_matches('/');
        if prefix.is_empty() {
            self.base_url.trim_end_matches('/').to_owned()
        } else {
            format!("{}/{prefix}", self.base_url.trim_end_matches('/'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_give_the_prefix_and_user_each_server_answers_to() {
        let hub = ServerProfile::preset(Preset::NanoHub, "http://127.0.0.1:9004/", "k");
        assert_eq!(hub.api_root(), "http://127.0.0.1:9004/api/v1/ddm");
        assert_eq!(hub.api_user, "nanohub");
        let own = ServerProfile::updraft("https://mdm.example.com", "k");
        assert_eq!(own.api_root(), "https://mdm.example.com/v1");
        assert_eq!(own.api_user, "kmfddm");
        assert!(
            !format!("{own:?}").contains("\"k\""),
            "the key never prints"
        );
    }
}
