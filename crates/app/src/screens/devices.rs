//! The devices table, one device's page (its timeline and the prompts still expected), and
//! holding a device back from rollouts.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

use updraft_engine::prompts::Cadence;
use updraft_engine::rings::{Hold, on_hold};
use updraft_engine::{Enforcement, Phase};
use updraft_store::{DeviceRow, DeviceSummary};

use crate::table::{DeviceTable, DeviceTableBuilder};
use crate::view::*;
use crate::{AppError, Session, human_duration};

impl Session {
    /// Holds a device back from every rollout started from now on, until `until`
    /// (`YYYY-MM-DD`, the start of that day in UTC) or until lifted, and says so in the audit log.
    pub async fn hold_device(
        &self,
        id: &str,
        reason: &str,
        until: Option<&str>,
    ) -> Result<(), AppError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(AppError::Invalid(
                "say why the device is held back: the preview shows it for every rollout".into(),
            ));
        }
        let until = match until.map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(day) => Some(
                chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .map_err(|_| {
                        AppError::Invalid(format!("{day:?} is not a date: use YYYY-MM-DD"))
                    })?
                    .and_time(chrono::NaiveTime::MIN)
                    .and_utc(),
            ),
        };
        if until.is_some_and(|until| until <= self.now()) {
            return Err(AppError::Invalid(
                "the hold would end before it starts: choose a later day".into(),
            ));
        }
        self.store()
            .device(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no device {id:?}")))?;
        let hold = Hold {
            enrollment_id: id.to_owned(),
            reason: reason.to_owned(),
            until,
        };
        self.store().put_hold(&hold, self.now()).await?;
        let detail = on_hold(id, &[hold], self.now()).map(|h| h.to_string());
        self.console()
            .record(
                "device_held",
                &format!("{id}: {}", detail.unwrap_or_default()),
            )
            .await?;
        Ok(())
    }

    /// Lifts a device's hold, and says so in the audit log.
    pub async fn lift_hold(&self, id: &str) -> Result<(), AppError> {
        if !self.store().lift_hold(id).await? {
            return Err(AppError::NotFound(format!("{id:?} is not held back")));
        }
        self.console().record("hold_lifted", id).await?;
        Ok(())
    }

    /// The devices table, built from the store when the cache has none.
    pub(crate) async fn table(&self) -> Result<Arc<DeviceTable>, AppError> {
        self.cache.table(self.build_table()).await
    }

    async fn build_table(&self) -> Result<DeviceTable, AppError> {
        let rows = self
            .store()
            .device_summaries(DeviceTableBuilder::default(), |rows, device| {
                rows.push(summary_view(device))
            })
            .await?;
        Ok(rows.build())
    }

    /// Builds the devices table now if it is not built, so the first look at it does not wait
    /// for a read of every device (call in the background after a start or a refresh).
    pub async fn warm(&self) -> Result<(), AppError> {
        self.table().await.map(|_| ())
    }

    /// A window of the devices table.
    pub async fn devices(&self, query: &DeviceQuery) -> Result<DevicePage, AppError> {
        Ok(self.table().await?.query(query))
    }

    /// The values the devices table's filters offer.
    pub async fn device_facets(&self) -> Result<DeviceFacets, AppError> {
        Ok(self.table().await?.facets())
    }

    /// One device, with its timeline.
    pub async fn device(&self, id: &str) -> Result<DeviceDetail, AppError> {
        let store = self.store();
        let device = store
            .device(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no device {id:?}")))?;
        let mut enforcements: Vec<Enforcement> = Vec::new();
        for rollout in store.rollouts().await? {
            enforcements.extend(store.enforcements_for(rollout.id, &[id.to_owned()]).await?);
        }
        let newest = enforcements
            .iter()
            .max_by_key(|e| e.rollout_id)
            .map(|e| (e.rollout_id, e.phase));
        let mut previous: Option<DateTime<Utc>> = None;
        let mut first: Option<DateTime<Utc>> = None;
        let timeline: Vec<TimelineEntry> = store
            .timeline(id)
            .await?
            .into_iter()
            .map(|event| {
                let at = DateTime::parse_from_rfc3339(&event.at)
                    .ok()
                    .map(|t| t.with_timezone(&Utc));
                let since_previous = match (previous, at) {
                    (Some(before), Some(now)) => Some(human_duration(now - before)),
                    _ => None,
                };
                if at.is_some() {
                    previous = at;
                    first = first.or(at);
                }
                TimelineEntry {
                    at: event.at,
                    kind: event.kind,
                    tone: Tone::of(event.kind, &event.detail),
                    detail: event.detail,
                    rollout: event.rollout_id,
                    since_previous,
                }
            })
            .collect();
        let ids = device.facts.device_ids();
        Ok(DeviceDetail {
            row: row_view(&device, newest),
            family: device.facts.model_family.clone(),
            device_id: ids.as_ref().and_then(|(ids, _)| ids.first().cloned()),
            device_id_source: ids.map(|(_, source)| {
                match source {
                    updraft_engine::DeviceIdSource::Reported => "reported by the device",
                    updraft_engine::DeviceIdSource::Derived => "derived from the model",
                }
                .to_owned()
            }),
            supplemental_build: device.facts.supplemental_build.clone(),
            time_zone: device.time_zone.clone(),
            bootstrap_token_escrowed: device.facts.bootstrap_token_escrowed,
            bootstrap_token_requested_at: device.bootstrap_token_requested_at.clone(),
            declarations_assigned: enforcements
                .iter()
                .filter(|e| holds_declaration(e.phase))
                .map(|e| e.declaration_id.clone())
                .collect(),
            enforcements: enforcements
                .iter()
                .map(|e| DeviceEnforcement {
                    rollout: e.rollout_id,
                    target: format!(
                        "{}{}{}",
                        e.target_version,
                        e.target_extra
                            .as_deref()
                            .map(|x| format!(" {x}"))
                            .unwrap_or_default(),
                        e.target_build
                            .as_deref()
                            .map(|b| format!(" ({b})"))
                            .unwrap_or_default()
                    ),
                    phase: e.phase.as_str().to_owned(),
                    deadline: e.deadline.format("%Y-%m-%d %H:%M").to_string(),
                    declaration: e.declaration_id.clone(),
                    failure_reason: e.failure_reason.clone(),
                    failure_count: e.failure_count,
                    exclusion_reason: e.exclusion_reason.clone(),
                    invalid_reason: e.invalid_reason.clone(),
                    past_deadline: e.past_deadline,
                    stale: e.stale,
                    stuck: e.stuck,
                })
                .collect(),
            timeline_span: match (first, previous) {
                (Some(first), Some(last)) if timeline.len() > 1 => {
                    Some(human_duration(last - first))
                }
                _ => None,
            },
            hold: on_hold(id, &store.holds().await?, self.now()).map(|held| held.to_string()),
            expected_prompts: expected_prompts(&device, &enforcements, self.now()),
            timeline,
        })
    }
}

/// Whether a device in this phase still holds (or is being given) the declaration.
fn holds_declaration(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Assigned
            | Phase::Pushed
            | Phase::Active
            | Phase::Invalid
            | Phase::Waiting
            | Phase::Downloading
            | Phase::Prepared
            | Phase::Installing
            | Phase::Failed
            | Phase::Updated
    )
}

/// A device's row of the devices table, as [`summary_view`] makes it from the store's listing.
fn row_view(device: &DeviceRow, newest_rollout: Option<(i64, Phase)>) -> DeviceRowView {
    let facts = &device.facts;
    let summary = DeviceSummary {
        enrollment_id: facts.enrollment_id.clone(),
        name: device.name.clone(),
        last_report_at: device.last_report_at.clone(),
        model: facts.model.clone(),
        model_family: facts.model_family.clone(),
        serial_number: facts.serial_number.clone(),
        os_version: facts.os_version.clone(),
        build: facts.build.clone(),
        supplemental_build: facts.supplemental_build.clone(),
        extra: facts.extra.clone(),
        newest_rollout,
    };
    summary_view(summary)
}

fn summary_view(device: DeviceSummary) -> DeviceRowView {
    let newest = device.newest_rollout;
    let os = match (device.os_version, device.extra.as_str()) {
        (Some(version), "") => version,
        (Some(version), extra) => format!("{version} {extra}"),
        (None, _) => String::new(),
    };
    let platform = device
        .model_family
        .as_deref()
        .or(device.model.as_deref())
        .and_then(updraft_engine::plan::platform_of_model)
        .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    DeviceRowView {
        id: device.enrollment_id,
        name: device.name.unwrap_or_default(),
        serial: device.serial_number.unwrap_or_default(),
        model: device.model.unwrap_or_default(),
        platform,
        os,
        build: device
            .supplemental_build
            .or(device.build)
            .unwrap_or_default(),
        state: newest.map_or("none".into(), |(_, phase)| phase.as_str().into()),
        rollout: newest.map(|(id, _)| id),
        last_report: device.last_report_at,
    }
}

/// The prompts still ahead for each rollout whose declaration the device holds and whose
/// deadline has not passed, on the device's clock (UTC when its zone is unknown).
fn expected_prompts(
    device: &DeviceRow,
    enforcements: &[Enforcement],
    now: DateTime<Utc>,
) -> Vec<ExpectedPromptView> {
    let Some(platform) = device.facts.platform() else {
        return Vec::new();
    };
    let mut prompts = Vec::new();
    for record in enforcements.iter().filter(|e| {
        matches!(
            e.phase,
            Phase::Active | Phase::Waiting | Phase::Downloading | Phase::Prepared
        )
    }) {
        let offset = Duration::minutes(i64::from(record.utc_offset_minutes.unwrap_or(0)));
        let local = |at: DateTime<Utc>| (at + offset).naive_utc();
        let assigned = local(record.started_at);
        for prompt in updraft_engine::prompts::expected_prompts(platform, assigned, record.deadline)
            .into_iter()
            .filter(|p| p.at >= local(now))
        {
            prompts.push(ExpectedPromptView {
                at: prompt.at.format("%Y-%m-%d %H:%M").to_string(),
                cadence: match prompt.cadence {
                    Cadence::Daily => "daily",
                    Cadence::Hourly => "hourly",
                    Cadence::LastHour => "30 and 10 minutes before",
                    Cadence::AtDeadline => "at the deadline",
                }
                .into(),
                rollout: record.rollout_id,
            });
        }
    }
    prompts.sort_by(|a, b| a.at.cmp(&b.at));
    prompts
}
