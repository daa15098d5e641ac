//! The wizard's preview and start, the Rollouts screens, and their CSV export.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use updraft_console::{RolloutRequest, progress_of};
use updraft_engine::rings::{Restraints, RingProgress, Verdict};
use updraft_engine::{Enforcement, Phase, RolloutState};
use updraft_store::{DeviceRow, RingGate};

use crate::view::*;
use crate::wizard::{self, Preview, RolloutPlan};
use crate::{AppError, Session};

impl Session {
    /// The wizard's preview of a plan, device by device. Sends nothing.
    pub async fn preview(&self, plan: &RolloutPlan) -> Result<Preview, AppError> {
        let release = self.cache.release(&plan.release)?;
        let devices = self.store().devices().await?;
        let (holds, pins, majors) = self.restraints(release.release.platform).await?;
        let restraints = Restraints {
            holds: &holds,
            pins: &pins,
            majors: &majors,
        };
        Ok(wizard::preview(plan, &release, &devices, &restraints, self.now()).0)
    }

    /// Starts the rollout the admin confirmed: one rollout per wave, each with its devices.
    /// Returns the rollouts' ids.
    pub async fn start_rollout(&self, plan: &RolloutPlan) -> Result<Vec<i64>, AppError> {
        let release = self.cache.release(&plan.release)?;
        let devices = self.store().devices().await?;
        let (holds, pins, majors) = self.restraints(release.release.platform).await?;
        let restraints = Restraints {
            holds: &holds,
            pins: &pins,
            majors: &majors,
        };
        let (preview, checked) = wizard::preview(plan, &release, &devices, &restraints, self.now());
        let Some(checked) = checked else {
            return Err(AppError::Invalid(preview.errors.join("; ")));
        };
        let mut ids = Vec::new();
        for wave in checked.waves {
            let id = self
                .console()
                .start_wave(RolloutRequest {
                    release: release.release.clone(),
                    wave: wave.number,
                    deadline: wave.deadline,
                    details_url: checked.details_url.clone(),
                    scope: (!checked.open).then_some(wave.devices),
                    gate: plan.gate.zip(ids.last()).map(|(gate, after)| RingGate {
                        ring: format!("wave {}", wave.number),
                        after: *after,
                        gate: gate.gate(),
                    }),
                    ring: None,
                    placement: None,
                })
                .await?;
            ids.push(id);
        }
        self.console().drain_outbox().await?;
        self.cache.invalidate();
        Ok(ids)
    }

    pub(crate) async fn rollout_summaries(&self) -> Result<Vec<RolloutSummary>, AppError> {
        let rollouts = self.store().rollouts().await?;
        // A wave's gate reads the wave before it, which comes first (ids ascend): its progress is
        // taken from the records read for its own summary, not read a second time.
        let judged: HashSet<i64> = rollouts
            .iter()
            .filter(|r| r.state == RolloutState::Gated)
            .filter_map(|r| r.gate.as_ref().map(|g| g.after))
            .collect();
        let mut progress: HashMap<i64, RingProgress> = HashMap::new();
        let mut summaries = Vec::new();
        for rollout in rollouts {
            let records = self.store().enforcements(rollout.id).await?;
            if judged.contains(&rollout.id) {
                let in_scope = self.store().rollout_scope_size(rollout.id).await?;
                progress.insert(rollout.id, progress_of(&records, in_scope, self.now()));
            }
            let before = match (&rollout.gate, rollout.state) {
                (Some(gate), RolloutState::Gated) => progress.get(&gate.after),
                _ => None,
            };
            summaries.push(summary(&rollout, &records, before));
        }
        Ok(summaries)
    }

    /// Where the wave before a gated wave stands, for the line that says what it waits for.
    async fn gate_progress(
        &self,
        rollout: &updraft_store::Rollout,
    ) -> Result<Option<RingProgress>, AppError> {
        match (&rollout.gate, rollout.state) {
            (Some(gate), RolloutState::Gated) => Ok(Some(
                self.console().ring_progress(gate.after, self.now()).await?,
            )),
            _ => Ok(None),
        }
    }

    /// Starts a wave that waits on its gate, or was halted by it, now.
    pub async fn promote_ring(&self, id: i64) -> Result<(), AppError> {
        self.console().promote_ring(id).await?;
        self.console().drain_outbox().await?;
        self.cache.invalidate();
        Ok(())
    }

    /// Rollouts, newest first.
    pub async fn rollouts(&self) -> Result<Vec<RolloutSummary>, AppError> {
        let mut summaries = self.rollout_summaries().await?;
        summaries.reverse();
        Ok(summaries)
    }

    /// One rollout: its funnel and its failures by reason.
    pub async fn rollout(&self, id: i64) -> Result<RolloutDetail, AppError> {
        let store = self.store();
        let rollout = store
            .rollouts()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| AppError::NotFound(format!("no rollout {id}")))?;
        let records = store.enforcements(id).await?;
        let before = self.gate_progress(&rollout).await?;
        let mut counts: BTreeMap<usize, (Phase, usize)> = BTreeMap::new();
        let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut exclusions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for record in &records {
            let position = FUNNEL
                .iter()
                .position(|p| *p == record.phase)
                .unwrap_or(FUNNEL.len());
            counts.entry(position).or_insert((record.phase, 0)).1 += 1;
            match record.phase {
                Phase::Failed | Phase::Invalid => failures
                    .entry(
                        record
                            .failure_reason
                            .clone()
                            .or_else(|| record.invalid_reason.clone())
                            .unwrap_or_else(|| "no reason given".into()),
                    )
                    .or_default()
                    .push(record.enrollment_id.clone()),
                Phase::Excluded => exclusions
                    .entry(record.exclusion_reason.clone().unwrap_or_default())
                    .or_default()
                    .push(record.enrollment_id.clone()),
                _ => {}
            }
        }
        let groups = |map: BTreeMap<String, Vec<String>>| {
            let mut groups: Vec<FailureGroup> = map
                .into_iter()
                .map(|(reason, devices)| FailureGroup { reason, devices })
                .collect();
            groups.sort_by_key(|group| std::cmp::Reverse(group.devices.len()));
            groups
        };
        Ok(RolloutDetail {
            summary: summary(&rollout, &records, before.as_ref()),
            details_url: rollout.details_url.clone(),
            scoped: !store.rollout_scope(id).await?.is_empty(),
            funnel: counts
                .into_values()
                .map(|(phase, count)| FunnelStep {
                    phase: phase.as_str().to_owned(),
                    count,
                })
                .collect(),
            failures: groups(failures),
            exclusions: groups(exclusions),
        })
    }

    /// Retries a rollout's failed devices; returns how many.
    pub async fn retry_failed(&self, id: i64) -> Result<usize, AppError> {
        let retried = self.console().retry_failed(id).await?;
        self.console().drain_outbox().await?;
        self.cache.invalidate();
        Ok(retried)
    }

    /// Pauses a rollout.
    pub async fn pause_rollout(&self, id: i64) -> Result<(), AppError> {
        Ok(self.console().pause_rollout(id).await?)
    }

    /// Resumes a rollout.
    pub async fn resume_rollout(&self, id: i64) -> Result<(), AppError> {
        Ok(self.console().resume_rollout(id).await?)
    }

    /// Cancels a rollout: unassigns everything it assigned.
    pub async fn cancel_rollout(&self, id: i64) -> Result<(), AppError> {
        self.console().cancel_rollout(id).await?;
        self.console().drain_outbox().await?;
        self.cache.invalidate();
        Ok(())
    }

    /// A rollout as CSV, one line per device.
    pub async fn rollout_csv(&self, id: i64) -> Result<String, AppError> {
        let records = self.store().enforcements(id).await?;
        let ids: Vec<String> = records.iter().map(|r| r.enrollment_id.clone()).collect();
        let devices: HashMap<String, DeviceRow> = self
            .store()
            .devices_by_ids(&ids)
            .await?
            .into_iter()
            .map(|d| (d.facts.enrollment_id.clone(), d))
            .collect();
        let mut csv = String::from(
            "enrollment_id,name,serial_number,model,os_version,build,phase,target_version,target_build,deadline_local,failure_reason,exclusion_reason,last_report_at\r\n",
        );
        for record in &records {
            let device = devices.get(&record.enrollment_id);
            let facts = device.map(|d| &d.facts);
            let cells = [
                record.enrollment_id.clone(),
                device.and_then(|d| d.name.clone()).unwrap_or_default(),
                facts
                    .and_then(|f| f.serial_number.clone())
                    .unwrap_or_default(),
                facts.and_then(|f| f.model.clone()).unwrap_or_default(),
                facts.and_then(|f| f.os_version.clone()).unwrap_or_default(),
                facts.and_then(|f| f.build.clone()).unwrap_or_default(),
                record.phase.as_str().to_owned(),
                record.target_version.clone(),
                record.target_build.clone().unwrap_or_default(),
                record.deadline.format("%Y-%m-%dT%H:%M:%S").to_string(),
                record.failure_reason.clone().unwrap_or_default(),
                record.exclusion_reason.clone().unwrap_or_default(),
                record
                    .last_report_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            ];
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            csv.push_str(&line.join(","));
            csv.push_str("\r\n");
        }
        Ok(csv)
    }

    /// Writes the rollout's CSV into `folder` as `updraft-rollout-<id>.csv`, and says so in the
    /// audit log (an export carries every device's serial number out of the console).
    pub async fn export_rollout_csv(
        &self,
        id: i64,
        folder: &Path,
    ) -> Result<std::path::PathBuf, AppError> {
        let csv = self.rollout_csv(id).await?;
        let devices = csv.lines().count().saturating_sub(1);
        let path = folder.join(format!("updraft-rollout-{id}.csv"));
        std::fs::create_dir_all(folder)
            .and_then(|()| std::fs::write(&path, csv))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        self.console()
            .record(
                "rollout_exported",
                &format!("rollout {id}: {devices} devices to {}", path.display()),
            )
            .await?;
        Ok(path)
    }
}

/// The order devices move through a rollout; the funnel shows phases in it.
const FUNNEL: [Phase; 15] = [
    Phase::Planned,
    Phase::Assigned,
    Phase::Pushed,
    Phase::Active,
    Phase::Waiting,
    Phase::Downloading,
    Phase::Prepared,
    Phase::Installing,
    Phase::Updated,
    Phase::Unassigned,
    Phase::CleanedUp,
    Phase::Failed,
    Phase::Invalid,
    Phase::Excluded,
    Phase::Cancelled,
];

fn summary(
    rollout: &updraft_store::Rollout,
    records: &[Enforcement],
    before: Option<&RingProgress>,
) -> RolloutSummary {
    let count = |f: &dyn Fn(Phase) -> bool| records.iter().filter(|r| f(r.phase)).count();
    let in_progress = count(&|p| {
        !matches!(
            p,
            Phase::Updated
                | Phase::Unassigned
                | Phase::CleanedUp
                | Phase::Failed
                | Phase::Invalid
                | Phase::Excluded
                | Phase::Cancelled
        )
    });
    // An active rollout with every device final reads as complete; it still takes in devices
    // that enroll later, and its failed devices can still be retried.
    let state = match rollout.state {
        RolloutState::Active if in_progress == 0 && !records.is_empty() => RolloutStatus::Complete,
        RolloutState::Active => RolloutStatus::Active,
        RolloutState::Paused => RolloutStatus::Paused,
        RolloutState::Cancelled => RolloutStatus::Cancelled,
        RolloutState::Gated => RolloutStatus::Gated,
        RolloutState::Halted => RolloutStatus::Halted,
    };
    let gate = match (&rollout.gate, rollout.state) {
        (Some(gate), RolloutState::Halted) => Some(format!(
            "halted: in rollout {}, {}",
            gate.after,
            rollout.halt_reason.as_deref().unwrap_or("the gate failed")
        )),
        (Some(gate), RolloutState::Gated) => {
            Some(match before.map(|b| gate.gate.judge(b, false)) {
                Some(Verdict::Wait {
                    updated_percent,
                    needed_percent,
                }) => format!(
                    "waits for rollout {}: {updated_percent:.0}% updated of the {needed_percent:.0}% its gate asks",
                    gate.after
                ),
                _ => format!("waits for rollout {}'s gate", gate.after),
            })
        }
        _ => None,
    };
    RolloutSummary {
        id: rollout.id,
        wave: rollout.wave,
        // The wizard's gated waves carry their wave as the ring's name: no ring to show.
        ring: rollout
            .ring
            .clone()
            .filter(|ring| *ring != format!("wave {}", rollout.wave)),
        platform: rollout.release.platform.to_string(),
        label: rollout.release.label(),
        deadline: rollout.deadline_local.clone(),
        state,
        total: records.len(),
        updated: count(&|p| matches!(p, Phase::Updated | Phase::Unassigned | Phase::CleanedUp)),
        failed: count(&|p| matches!(p, Phase::Failed | Phase::Invalid)),
        excluded: count(&|p| p == Phase::Excluded),
        in_progress,
        gate,
    }
}

/// A CSV cell, quoted when needed; a cell that a spreadsheet would run as a formula is prefixed
/// with an apostrophe (device names come from devices).
pub(super) fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    }
}
