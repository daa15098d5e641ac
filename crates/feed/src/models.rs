//! Mac model identifiers and their SoftwareUpdateDeviceIDs, for Macs too old to report
//! `softwareupdate.device-id` (before macOS 15). Data derived from SOFA's maps
//! (`data/mac_models.json`, macadmins/sofa @ 00b0d8ca, Apache-2.0).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[derive(Deserialize)]
struct MacModels {
    models: BTreeMap<String, MacModel>,
}

/// One Mac model.
#[derive(Debug, Deserialize)]
pub struct MacModel {
    /// Marketing name.
    #[serde(default)]
    pub name: String,
    /// Its gdmf ids: one for most Macs, a bridge id and a board id for a T2 Mac.
    pub ids: Vec<String>,
}

fn mac_models() -> &'static BTreeMap<String, MacModel> {
    static MODELS: OnceLock<BTreeMap<String, MacModel>> = OnceLock::new();
    MODELS.get_or_init(|| {
        serde_json::from_str::<MacModels>(include_str!("../data/mac_models.json"))
            .map(|m| m.models)
            .unwrap_or_default()
    })
}

/// The gdmf ids of a Mac model identifier (`MacBookPro18,3` → `J314sAP`).
pub fn mac_ids(model: &str) -> Option<&'static [String]> {
    mac_models().get(model).map(|m| m.ids.as_slice())
}

/// Every Mac model the maps know.
pub fn known_mac_models() -> impl Iterator<Item = (&'static str, &'static MacModel)> {
    mac_models().iter().map(|(model, m)| (model.as_str(), m))
}

#[cfg(test)]
mod tests {
    #[test]
    fn t2_macs_have_both_ids() {
        assert_eq!(
            super::mac_ids("MacBookAir9,1").unwrap(),
            ["J223AP", "Mac-1E7E29AD0135F9BC"]
        );
        assert_eq!(super::mac_ids("MacBookPro18,3").unwrap(), ["J314sAP"]);
        assert!(super::known_mac_models().count() >= 90);
    }
}
