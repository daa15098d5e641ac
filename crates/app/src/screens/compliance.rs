//! The compliance report: for one release, the share of each ring on it (or newer) by each day
//! after Apple posted it, and every device that is not, with why; as a chart and as CSV.

use chrono::{DateTime, NaiveTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use updraft_ddm::OsVersion;
use updraft_engine::compliance::{Standing, lag_of, series};
use updraft_engine::plan::Exclusion;
use updraft_engine::rings::on_hold;
use updraft_engine::{Enforcement, EventKind, Lag, RolloutState};
use updraft_feed::Platform;

use super::rollouts::csv_cell;
use crate::catalog::CatalogRelease;
use crate::view::*;
use crate::{AppError, Session};

/// The most lagging devices the screen lists (the CSV has them all).
const LAGGING_SHOWN: usize = 200;
/// The longest curve, in days after posting.
const MAX_DAYS: i64 = 90;
const NOT_IN_ROLLOUT: &str = "not in a rollout";

/// One device of the platform, as the report reads it.
struct Row {
    id: String,
    name: Option<String>,
    serial: Option<String>,
    os: String,
    ring: String,
    reached: Option<DateTime<Utc>>,
    lag: Option<(Lag, String)>,
}

struct Report {
    release: CatalogRelease,
    days: usize,
    rows: Vec<Row>,
    /// The rings in the order they start, then the devices in none.
    rings: Vec<String>,
}

impl Report {
    fn series(&self) -> Vec<updraft_engine::compliance::Series> {
        let standings: Vec<Standing> = self
            .rows
            .iter()
            .map(|r| Standing {
                ring: &r.ring,
                reached: r.reached,
            })
            .collect();
        let rings: Vec<&str> = self.rings.iter().map(String::as_str).collect();
        series(
            &standings,
            self.release.window.posting_date,
            self.days as u32,
            &rings,
        )
    }
}

impl Session {
    /// The report for the release `key`, or for the platform's newest release offered today.
    pub async fn compliance(
        &self,
        key: Option<&str>,
        platform: &str,
    ) -> Result<ComplianceReport, AppError> {
        let report = self.compliance_rows(key, platform).await?;
        let posted = report.release.window.posting_date;
        let curves = report.series();
        let mut lags: BTreeMap<Lag, usize> = BTreeMap::new();
        let mut lagging: Vec<LaggingDevice> = report
            .rows
            .iter()
            .filter_map(|row| {
                let (lag, detail) = row.lag.clone()?;
                *lags.entry(lag).or_default() += 1;
                Some(LaggingDevice {
                    id: row.id.clone(),
                    name: row.name.clone(),
                    ring: row.ring.clone(),
                    os: row.os.clone(),
                    lag,
                    detail,
                })
            })
            .collect();
        lagging.sort_by(|a, b| (a.lag, &a.name, &a.id).cmp(&(b.lag, &b.name, &b.id)));
        let lagging_total = lagging.len();
        lagging.truncate(LAGGING_SHOWN);
        Ok(ComplianceReport {
            release: report.release.key.clone(),
            label: format!(
                "{} {}",
                report.release.release.platform,
                report.release.release.label()
            ),
            posted: posted.to_string(),
            days: report.days,
            series: curves
                .iter()
                .map(|s| ComplianceSeriesView {
                    ring: s.ring.clone(),
                    devices: s.devices,
                    percent: (0..=report.days).map(|day| s.percent(day)).collect(),
                })
                .collect(),
            lags: lags
                .into_iter()
                .map(|(lag, devices)| LagCount { lag, devices })
                .collect(),
            lagging,
            lagging_total,
        })
    }

    /// The report as two CSV files in `folder`: the curves (a row per ring and day) and every
    /// device (compliant or not, with when and why); audited, as every export is.
    pub async fn export_compliance_csv(
        &self,
        key: Option<&str>,
        platform: &str,
        folder: &Path,
    ) -> Result<Vec<PathBuf>, AppError> {
        let report = self.compliance_rows(key, platform).await?;
        let release = &report.release.release;
        let posted = report.release.window.posting_date;
        let mut curves = String::from("day,date,ring,devices,compliant,percent\r\n");
        for curve in report.series() {
            for (day, compliant) in curve.compliant.iter().enumerate() {
                let cells = [
                    day.to_string(),
                    (posted + chrono::Duration::days(day as i64)).to_string(),
                    curve.ring.clone(),
                    curve.devices.to_string(),
                    compliant.to_string(),
                    format!("{:.1}", curve.percent(day)),
                ];
                push_line(&mut curves, &cells);
            }
        }
        let mut devices = String::from(
            "enrollment_id,name,serial_number,os_version,ring,compliant,reached_at,days_after_posting,lag,detail\r\n",
        );
        let start = posted.and_time(NaiveTime::MIN).and_utc();
        for row in &report.rows {
            let (lag, detail) = row
                .lag
                .as_ref()
                .map(|(lag, detail)| (lag.as_str().to_owned(), detail.clone()))
                .unwrap_or_default();
            let cells = [
                row.id.clone(),
                row.name.clone().unwrap_or_default(),
                row.serial.clone().unwrap_or_default(),
                row.os.clone(),
                row.ring.clone(),
                row.reached.is_some().to_string(),
                row.reached.map(|t| t.to_rfc3339()).unwrap_or_default(),
                row.reached
                    .map(|t| (t - start).num_days().to_string())
                    .unwrap_or_default(),
                lag,
                detail,
            ];
            push_line(&mut devices, &cells);
        }
        let stem = format!(
            "updraft-compliance-{}-{}",
            release.platform.as_str(),
            release.label().replace([' ', '(', ')'], "")
        );
        let paths = [
            folder.join(format!("{stem}.csv")),
            folder.join(format!("{stem}-devices.csv")),
        ];
        std::fs::create_dir_all(folder)
            .and_then(|()| std::fs::write(&paths[0], curves))
            .and_then(|()| std::fs::write(&paths[1], devices))
            .map_err(|e| {
                anyhow::anyhow!("writing the compliance CSV in {}: {e}", folder.display())
            })?;
        self.console()
            .record(
                "compliance_exported",
                &format!(
                    "{} {}: {} devices to {}",
                    release.platform,
                    release.label(),
                    report.rows.len(),
                    folder.display()
                ),
            )
            .await?;
        Ok(paths.to_vec())
    }

    async fn compliance_rows(&self, key: Option<&str>, platform: &str) -> Result<Report, AppError> {
        let platform: Platform = platform.parse().map_err(|_| {
            AppError::Invalid(format!("{platform:?} is not a platform: macOS or iOS"))
        })?;
        let now = self.now();
        let today = now.date_naive();
        let release = match key {
            Some(key) => self.cache.release(key)?,
            None => self
                .cache
                .catalog()
                .iter()
                .find(|r| r.release.platform == platform && !r.is_bsi() && r.available_on(today))
                .cloned()
                .ok_or_else(|| {
                    AppError::NotFound(format!(
                        "the lookup service offers no {platform} release today"
                    ))
                })?,
        };
        let target = OsVersion::parse(&release.release.product_version)
            .map_err(|e| AppError::Invalid(format!("{}: {e}", release.release.product_version)))?;
        let newer_or_same = |version: &str| OsVersion::parse(version).is_ok_and(|v| v >= target);
        let rollouts = self.store().rollouts().await?;
        let reaching: Vec<i64> = rollouts
            .iter()
            .filter(|r| {
                r.release.platform == release.release.platform
                    && newer_or_same(&r.release.product_version)
            })
            .map(|r| r.id)
            .collect();
        let updated = self
            .store()
            .first_events(EventKind::OsUpdated, Some(&reaching))
            .await?;
        let enrolled = self.store().first_events(EventKind::Enrolled, None).await?;
        // The device's ring and record in a rollout of this very release: a ring waiting on
        // its gate lists its devices before it has a record of any.
        let mut rings: HashMap<String, (String, Option<String>)> = HashMap::new();
        let mut records: HashMap<String, Enforcement> = HashMap::new();
        let mut ring_order: Vec<(u32, String)> = Vec::new();
        for rollout in rollouts.iter().filter(|r| {
            r.release.platform == release.release.platform
                && r.release.product_version == release.release.product_version
                && r.release.product_version_extra == release.release.product_version_extra
        }) {
            let ring = rollout
                .ring
                .clone()
                .unwrap_or_else(|| format!("wave {}", rollout.wave));
            ring_order.push((rollout.wave, ring.clone()));
            let waiting = match rollout.state {
                RolloutState::Gated => Some("its ring waits for its gate".to_owned()),
                RolloutState::Halted => Some(format!(
                    "its ring was halted: {}",
                    rollout.halt_reason.clone().unwrap_or_default()
                )),
                _ => None,
            };
            for id in self.store().rollout_scope(rollout.id).await? {
                rings.insert(id, (ring.clone(), waiting.clone()));
            }
            for record in self.store().enforcements(rollout.id).await? {
                rings
                    .entry(record.enrollment_id.clone())
                    .or_insert_with(|| (ring.clone(), None));
                records.insert(record.enrollment_id.clone(), record);
            }
        }
        let holds = self.store().holds().await?;
        let posted = release
            .window
            .posting_date
            .and_time(NaiveTime::MIN)
            .and_utc();
        let rows = self
            .store()
            .devices()
            .await?
            .into_iter()
            .filter(|d| d.facts.platform() == Some(release.release.platform))
            .map(|device| {
                let id = device.facts.enrollment_id.clone();
                let os = device.facts.os_version.clone().unwrap_or_default();
                let record = records.get(&id);
                let ring = rings.get(&id);
                let reached = updated.get(&id).copied().or_else(|| {
                    // On it without an update Updraft saw: since Updraft first saw it, or since
                    // the posting, whichever came later.
                    newer_or_same(&os)
                        .then(|| enrolled.get(&id).copied().unwrap_or(posted).max(posted))
                });
                let hold = on_hold(&id, &holds, now);
                let lag = reached.is_none().then(|| match (&hold, ring) {
                    (None, Some((_, Some(waiting)))) if record.is_none() => {
                        (Lag::RingWaiting, waiting.clone())
                    }
                    _ => {
                        let lag = lag_of(record, hold.is_some());
                        (lag, lag_detail(lag, record, hold.as_ref()))
                    }
                });
                Row {
                    ring: ring.map_or_else(|| NOT_IN_ROLLOUT.to_owned(), |(ring, _)| ring.clone()),
                    name: device.name,
                    serial: device.facts.serial_number,
                    id,
                    os,
                    reached,
                    lag,
                }
            })
            .collect();
        let days = (today - release.window.posting_date)
            .num_days()
            .clamp(0, MAX_DAYS) as usize;
        ring_order.sort();
        let mut order: Vec<String> = Vec::new();
        for (_, ring) in ring_order {
            if !order.contains(&ring) {
                order.push(ring);
            }
        }
        order.push(NOT_IN_ROLLOUT.to_owned());
        Ok(Report {
            release,
            days,
            rows,
            rings: order,
        })
    }
}

fn lag_detail(lag: Lag, record: Option<&Enforcement>, hold: Option<&Exclusion>) -> String {
    match (lag, record, hold) {
        (Lag::OnHold, _, Some(hold)) => hold.to_string(),
        (Lag::Failed, Some(r), _) => r
            .failure_reason
            .clone()
            .or_else(|| r.invalid_reason.clone())
            .unwrap_or_default(),
        (Lag::Excluded, Some(r), _) => r.exclusion_reason.clone().unwrap_or_default(),
        (_, Some(r), _) => match r.last_report_at {
            Some(at) => format!("{}, last report {}", r.phase, at.to_rfc3339()),
            None => format!("{}, no report yet", r.phase),
        },
        _ => String::new(),
    }
}

fn push_line(csv: &mut String, cells: &[String]) {
    let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
    csv.push_str(&line.join(","));
    csv.push_str("\r\n");
}
