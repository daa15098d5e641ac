//! The dashboard and the Releases screen, and what a new lookup-service response changes.

use std::collections::BTreeMap;

use updraft_ddm::OsVersion;
use updraft_engine::plan::Exclusion;
use updraft_engine::{Decision, decide};
use updraft_feed::LookupResponse;
use updraft_feed::sofa::Vulnerabilities;
use updraft_store::DeviceRow;

use crate::catalog::{self, CatalogRelease};
use crate::view::*;
use crate::{AppError, Session, notices};

impl Session {
    /// Takes a newer lookup-service response: releases it lists that the last one did not, and
    /// that apply to a device, raise a `new_release` alert each. Returns those alerts as notices.
    pub async fn update_feed(
        &self,
        feed: &LookupResponse,
    ) -> Result<Vec<notices::Notice>, AppError> {
        let grouped = updraft_feed::releases::releases(feed);
        let releases = catalog::releases(&grouped, &self.cache.sofa());
        if releases.is_empty() {
            // An empty answer never replaces the releases the console knows.
            return Ok(Vec::new());
        }
        let known = self.cache.catalog();
        let devices = self.store().devices().await?;
        let now = self.now();
        let after = self.last_alert_id().await?;
        for release in releases
            .iter()
            .filter(|r| !known.iter().any(|k| k.key == r.key))
        {
            let (applies, _, _) = self.applicability(release, &devices);
            if applies == 0 || !release.available_on(now.date_naive()) {
                continue;
            }
            self.store()
                .raise_alert(
                    now,
                    updraft_engine::AlertKind::NewRelease,
                    &format!(
                        "{} {}, posted {}, applies to {applies} devices",
                        release.release.platform,
                        release.release.label(),
                        release.window.posting_date
                    ),
                )
                .await?;
        }
        self.cache.replace_catalog(grouped, releases);
        self.apply_policies().await?;
        let raised = self.store().alerts_after(after, 1000).await?;
        Ok(notices::group(&raised, |_| None))
    }

    /// The dashboard.
    pub async fn dashboard(&self) -> Result<Dashboard, AppError> {
        let now = self.now();
        let devices = self.store().devices().await?;
        let mut by_os: BTreeMap<(String, Option<OsVersion>, String), usize> = BTreeMap::new();
        for device in &devices {
            let platform = platform_name(device);
            let version = device.facts.os_version.clone().unwrap_or_default();
            *by_os
                .entry((platform, OsVersion::parse(&version).ok(), version))
                .or_default() += 1;
        }
        let rollouts = self.rollout_summaries().await?;
        let mut compliance = Vec::new();
        let mut banners = Vec::new();
        let today = now.date_naive();
        let mut seen_platforms = Vec::new();
        let catalog = self.cache.catalog();
        for release in catalog
            .iter()
            .filter(|r| !r.is_bsi() && r.available_on(today))
        {
            let platform = release.release.platform;
            if seen_platforms.contains(&platform) {
                continue;
            }
            seen_platforms.push(platform);
            let (applies, current, total) = self.applicability(release, &devices);
            if total == 0 {
                continue;
            }
            compliance.push(Compliance {
                platform: platform.to_string(),
                newest: release.release.label(),
                current,
                devices: total,
            });
            let days_ago = (today - release.window.posting_date).num_days();
            let covered = rollouts.iter().any(|r| {
                r.state != RolloutStatus::Cancelled
                    && r.platform == platform.to_string()
                    && r.label == release.release.label()
            });
            if applies > 0 && days_ago <= 30 && !covered {
                banners.push(ReleaseBanner {
                    release: release.key.clone(),
                    platform: platform.to_string(),
                    label: release.release.label(),
                    days_ago,
                    applies_to: applies,
                });
            }
        }
        Ok(Dashboard {
            now: now.to_rfc3339(),
            lab: self.is_lab(),
            devices: devices.len(),
            by_os: by_os
                .into_iter()
                .map(|((platform, _, version), count)| OsCount {
                    platform,
                    version,
                    count,
                })
                .collect(),
            compliance,
            banners,
            rollouts: rollouts
                .into_iter()
                .rev()
                .filter(|r| r.state != RolloutStatus::Cancelled)
                .collect(),
            alerts: self.alerts(5).await?,
            drafts: self
                .draft_views(&self.waiting_drafts().await?, &devices)
                .await?,
        })
    }

    /// (applies to, already current, devices of the platform).
    fn applicability(
        &self,
        release: &CatalogRelease,
        devices: &[DeviceRow],
    ) -> (usize, usize, usize) {
        let mut applies = 0;
        let mut current = 0;
        let mut total = 0;
        for device in devices
            .iter()
            .filter(|d| d.facts.platform() == Some(release.release.platform))
        {
            total += 1;
            match decide(&device.facts, &release.release) {
                Decision::Enforce { .. } => applies += 1,
                Decision::Exclude(Exclusion::AlreadyCurrent { .. }) => current += 1,
                _ => {}
            }
        }
        (applies, current, total)
    }

    /// Every release of the feed, newest first per platform, with how many devices each applies to.
    pub async fn releases(&self) -> Result<Vec<ReleaseView>, AppError> {
        let devices = self.store().devices().await?;
        let today = self.now().date_naive();
        Ok(self
            .cache
            .catalog()
            .iter()
            .map(|release| {
                let (applies_to, current, _) = self.applicability(release, &devices);
                ReleaseView {
                    key: release.key.clone(),
                    platform: release.release.platform.to_string(),
                    version: release.release.product_version.clone(),
                    extra: release.release.product_version_extra.clone(),
                    builds: release
                        .release
                        .builds
                        .iter()
                        .map(|b| ReleaseBuildView {
                            build: b.build.clone(),
                            prerequisite_build: b.prerequisite_build.clone(),
                            supported_device_ids: b.supported_devices.len(),
                        })
                        .collect(),
                    posted: release.window.posting_date.to_string(),
                    expires: release.window.expiration_date.map(|d| d.to_string()),
                    available: release.available_on(today),
                    management_only: release.management_only,
                    supported_device_ids: release
                        .release
                        .builds
                        .iter()
                        .flat_map(|b| &b.supported_devices)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len(),
                    applies_to,
                    current,
                    cves: match &release.vulnerabilities {
                        Vulnerabilities::Known { cves, .. } => Some(*cves),
                        _ => None,
                    },
                    exploited: match &release.vulnerabilities {
                        Vulnerabilities::Known { exploited, .. } => exploited.clone(),
                        _ => Vec::new(),
                    },
                    security_info: match &release.vulnerabilities {
                        Vulnerabilities::Known { security_info, .. } => security_info.clone(),
                        _ => None,
                    },
                    sofa_mismatch: match &release.vulnerabilities {
                        Vulnerabilities::Mismatch(why) => Some(why.clone()),
                        _ => None,
                    },
                }
            })
            .collect())
    }
}

fn platform_name(device: &DeviceRow) -> String {
    device
        .facts
        .platform()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "unknown".into())
}
