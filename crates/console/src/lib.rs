//! The console's backend, the loop behind every screen: it learns about devices only through the
//! [`MdmBackend`] (the status-changes feed), decides with the engine, writes state and the effects
//! it implies to the store in one transaction, and then carries the effects out.
//!
//! Every step can be interrupted and rerun: the server cursor moves in the same transaction as the
//! state it produced, and an effect is marked done in the same transaction as its consequences, so
//! a restart repeats at most an assignment the server already has (which it ignores, unpushed).
#![deny(missing_docs)]

mod policies;
pub use policies::PolicyOutcome;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use updraft_clock::SharedClock;
use updraft_ddm::{
    DeclarationPayload, DeviceStatus, SoftwareUpdateEnforcementSpecific, StatusReport,
};
use updraft_engine::machine::{
    Enforcement, Event, Observation, Phase, Push, RolloutState, Rules, step,
};
use updraft_engine::plan::{self, Decision, DeviceFacts, Release, names};
use updraft_engine::rings::{
    Candidate, Restraints, RingPlan, RingProgress, Verdict, late_deadline,
};
use updraft_engine::{AlertKind, EventKind};
use updraft_mdm::{AssignOutcome, Assignment, MdmBackend, MdmError, PushResult, StatusChange};
use updraft_store::{
    Changes, Command, DeviceRow, NewRollout, Note, Placement, RingGate, Rollout, Store, StoreError,
};

/// A console failure.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The DDM server.
    #[error(transparent)]
    Mdm(#[from] MdmError),
    /// The local cache.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The rollout is not in a state that allows the action.
    #[error("{0}")]
    State(String),
    /// A declaration could not be built.
    #[error("cannot build the rollout's declarations: {0}")]
    Declaration(#[from] updraft_ddm::DeclarationError),
}

const CURSOR: &str = "server.status_cursor";
/// The last push-certificate warning raised: topic, expiry and stage.
const PUSH_CERTIFICATE_WARNED: &str = "server.push_certificate_warned";
/// Days before a push certificate's expiry at which the console raises an alert.
pub const PUSH_CERTIFICATE_WARNINGS: [i64; 5] = [30, 14, 7, 3, 1];

/// The warning stage a certificate with `left` to run is in: the smallest of
/// [`PUSH_CERTIFICATE_WARNINGS`] it is within, 0 once expired, none before 30 days.
fn push_certificate_stage(left: Duration) -> Option<i64> {
    if left <= Duration::zero() {
        return Some(0);
    }
    PUSH_CERTIFICATE_WARNINGS
        .iter()
        .rev()
        .find(|days| left <= Duration::days(**days))
        .copied()
}
const PAGE: u32 = 2000;
/// Outbox items carried out at once.
const OUTBOX_BATCH: i64 = 20_000;

/// One wave of a rollout, as the admin confirmed it.
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    /// What to enforce.
    pub release: Release,
    /// Wave number, from 1.
    pub wave: u32,
    /// The deadline on each device's own clock.
    pub deadline: NaiveDateTime,
    /// The page the device shows for "more information" (https).
    pub details_url: Option<String>,
    /// The devices covered; `None` for every device of the release's platform.
    pub scope: Option<Vec<String>>,
    /// For a ring after the first: the wave before it and the gate it must pass. The wave is
    /// recorded now and sent to the server when the gate opens.
    pub gate: Option<RingGate>,
    /// The ring's name, when the wave is a ring of a plan.
    pub ring: Option<String>,
    /// The saved plan the ring comes from, for devices that enroll later.
    pub placement: Option<Placement>,
}

/// A release to start in rings ([`Console::start_rings`]).
#[derive(Debug, Clone, Copy)]
pub struct RingStart<'a> {
    /// What to enforce.
    pub release: &'a Release,
    /// The rings.
    pub plan: &'a RingPlan,
    /// The name the plan is saved under, if it is: devices that enroll later join their ring.
    pub saved_as: Option<&'a str>,
    /// The base date the rings' offsets count from.
    pub base: NaiveDate,
    /// The page devices show for more information.
    pub details_url: Option<&'a str>,
    /// The platform's majors in the feed, newest first (for pinned groups).
    pub majors: &'a [u32],
}

/// The console backend.
pub struct Console {
    store: Store,
    backend: Arc<dyn MdmBackend>,
    clock: SharedClock,
    rules: Rules,
    /// Devices that enrolled without reporting status get planned from enrollment facts alone
    /// after this long, so that a silent device shows up as unresponsive instead of vanishing.
    facts_grace: Duration,
    /// Who the audit log names for what this console does: the edge sets it (the desktop app
    /// passes the operating system's account name).
    actor: String,
}

/// The audit log's actor until the edge names one.
pub const DEFAULT_ACTOR: &str = "updraft";

impl Console {
    /// A console over a store and a backend.
    pub fn new(store: Store, backend: Arc<dyn MdmBackend>, clock: SharedClock) -> Self {
        Self {
            store,
            backend,
            clock,
            rules: Rules::default(),
            facts_grace: Duration::hours(24),
            actor: DEFAULT_ACTOR.to_owned(),
        }
    }

    /// Names `actor` in the audit log for everything this console does from now on.
    pub fn set_actor(&mut self, actor: impl Into<String>) {
        self.actor = actor.into();
    }

    /// Writes one line to the audit log, in this console's actor's name.
    pub async fn record(&self, action: &str, detail: &str) -> Result<(), ConsoleError> {
        self.store
            .audit(self.clock.now(), &self.actor, action, detail)
            .await?;
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Puts the status-subscription declarations every device gets on the server.
    pub async fn prepare_server(&self) -> Result<(), ConsoleError> {
        for declaration in plan::base_declarations()? {
            self.backend.put_declaration(&declaration).await?;
            self.backend
                .add_to_set(names::BASE_SET, &declaration.identifier)
                .await?;
        }
        Ok(())
    }

    /// Starts a rollout of every device of the release's platform. See [`Self::start_wave`].
    pub async fn start_rollout(
        &self,
        release: Release,
        deadline: NaiveDateTime,
        details_url: Option<&str>,
    ) -> Result<i64, ConsoleError> {
        self.start_wave(RolloutRequest {
            release,
            wave: 1,
            deadline,
            details_url: details_url.map(str::to_owned),
            scope: None,
            gate: None,
            ring: None,
            placement: None,
        })
        .await
    }

    /// Starts a rollout (one wave): records it with the devices it covers; unless it waits on a
    /// gate, puts its declarations on the server and plans every device already known. Nothing
    /// is assigned until [`Self::drain_outbox`].
    pub async fn start_wave(&self, request: RolloutRequest) -> Result<i64, ConsoleError> {
        let RolloutRequest {
            release,
            wave,
            deadline,
            details_url,
            scope,
            gate,
            ring,
            placement,
        } = request;
        let now = self.clock.now();
        let id = self
            .store
            .create_rollout(
                NewRollout {
                    release: &release,
                    wave,
                    deadline_local: &deadline.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    details_url: details_url.as_deref(),
                    scope: scope.as_deref(),
                    gate: gate.as_ref(),
                    ring: ring.as_deref(),
                    placement: placement.as_ref(),
                },
                now,
            )
            .await?;
        let devices = match &scope {
            Some(_) => " (chosen devices)",
            None => "",
        };
        let waits = match &gate {
            Some(gate) => format!(
                "; ring {} waits for rollout {} to pass its gate",
                gate.ring, gate.after
            ),
            None => String::new(),
        };
        self.record(
            "rollout_started",
            &format!(
                "rollout {id}, wave {wave}: {} {} by {deadline} local{devices}{waits}",
                release.platform,
                release.label()
            ),
        )
        .await?;
        if gate.is_none() {
            self.open_wave(&self.rollout(id).await?).await?;
        }
        Ok(id)
    }

    /// Starts a release in rings: the devices known now are placed by `plan`, each ring that
    /// holds any becomes a wave of its own with its deadline from `base`, and every wave after
    /// the first waits on the plan's gate. Devices on hold or pinned below the release join no
    /// ring. When the plan is a saved one, a device that enrolls later joins its ring (see
    /// `apply_changes`). Returns the waves' ids, in order.
    pub async fn start_rings(&self, start: RingStart<'_>) -> Result<Vec<i64>, ConsoleError> {
        let RingStart {
            release,
            plan,
            saved_as,
            base,
            details_url,
            majors,
        } = start;
        let mut scopes = vec![Vec::new(); plan.rings.len()];
        let holds = self.store.holds().await?;
        let pins = self.store.pins().await?;
        let restraints = Restraints {
            holds: &holds,
            pins: &pins,
            majors,
        };
        let now = self.clock.now();
        for device in self.store.devices().await? {
            let candidate = Candidate::of(&device.facts, device.name.as_deref());
            if let Some(ring) = plan.place(&candidate, release, &restraints, now) {
                scopes[ring].push(device.facts.enrollment_id.clone());
            }
        }
        let mut ids: Vec<i64> = Vec::new();
        for ((index, ring), scope) in plan.rings.iter().enumerate().zip(scopes) {
            // An empty ring is not started: a rollout with no devices listed covers the whole
            // platform. The ring after it waits on the ring before it, if any.
            let Some(deadline) = plan.deadline(index, base).filter(|_| !scope.is_empty()) else {
                continue;
            };
            let gate = ids.last().map(|after| RingGate {
                ring: ring.name.clone(),
                after: *after,
                gate: plan.gate,
            });
            let id = self
                .start_wave(RolloutRequest {
                    release: release.clone(),
                    wave: index as u32 + 1,
                    deadline,
                    details_url: details_url.map(str::to_owned),
                    scope: Some(scope),
                    gate,
                    ring: Some(ring.name.clone()),
                    placement: saved_as.map(|name| Placement {
                        plan: name.to_owned(),
                        index: index as u32,
                        majors: majors.to_vec(),
                    }),
                })
                .await?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Sends a wave to the server: its declarations, then a plan for every device it covers.
    async fn open_wave(&self, rollout: &Rollout) -> Result<(), ConsoleError> {
        let deadline = NaiveDateTime::parse_from_str(&rollout.deadline_local, "%Y-%m-%dT%H:%M:%S")
            .map_err(|e| StoreError::Corrupt {
                what: format!("rollout {}'s deadline", rollout.id),
                reason: format!("{:?}: {e}", rollout.deadline_local),
            })?;
        let declarations = plan::enforcement_declarations(
            rollout.id,
            rollout.wave,
            &rollout.release,
            deadline,
            rollout.details_url.as_deref(),
        )?;
        for (set, declaration) in &declarations {
            self.backend.put_declaration(declaration).await?;
            self.backend
                .add_to_set(set, &declaration.identifier)
                .await?;
        }
        self.plan_unplanned(rollout.id, false).await
    }

    /// Starts a ring that waits on its gate, or was halted by it, now: the admin's decision,
    /// kept in the audit log.
    pub async fn promote_ring(&self, id: i64) -> Result<(), ConsoleError> {
        let rollout = self.rollout(id).await?;
        if !matches!(rollout.state, RolloutState::Gated | RolloutState::Halted) {
            return Err(ConsoleError::State(format!(
                "rollout {id} is {}: only a ring waiting on its gate, or halted by it, can be promoted",
                rollout.state
            )));
        }
        self.open_ring(&rollout, "by hand").await
    }

    async fn open_ring(&self, rollout: &Rollout, why: &str) -> Result<(), ConsoleError> {
        let rollout = &self.keep_notice(rollout).await?;
        // Active last: if the server fails part way, the ring is still gated and the next tick
        // opens it again (the declarations are put again as they are, the devices planned once).
        self.open_wave(rollout).await?;
        self.store
            .set_rollout_state(rollout.id, RolloutState::Active)
            .await?;
        let ring = rollout.gate.as_ref().map_or("", |g| g.ring.as_str());
        self.record(
            "ring_promoted",
            &format!("rollout {}, ring {ring}: {why}", rollout.id),
        )
        .await
    }

    /// A ring opening too late for its planned deadline gets a day of notices ([`late_deadline`]):
    /// its deadline moves, in the store and the audit log, before any declaration carries it.
    async fn keep_notice(&self, rollout: &Rollout) -> Result<Rollout, ConsoleError> {
        let Some(planned) = local_deadline(&rollout.deadline_local) else {
            return Ok(rollout.clone());
        };
        let Some(moved) = late_deadline(planned, self.clock.now().date_naive()) else {
            return Ok(rollout.clone());
        };
        let text = moved.format("%Y-%m-%dT%H:%M:%S").to_string();
        self.store.set_rollout_deadline(rollout.id, &text).await?;
        self.record(
            "deadline_moved",
            &format!(
                "rollout {}: its ring opened too late for {planned}, so its deadline moves to {moved} (local): a day of notices",
                rollout.id
            ),
        )
        .await?;
        Ok(Rollout {
            deadline_local: text,
            ..rollout.clone()
        })
    }

    /// Where a rollout's ring stands for the gate after it.
    pub async fn ring_progress(
        &self,
        rollout_id: i64,
        now: DateTime<Utc>,
    ) -> Result<RingProgress, ConsoleError> {
        let records = self.store.enforcements(rollout_id).await?;
        let in_scope = self.store.rollout_scope_size(rollout_id).await?;
        Ok(progress_of(&records, in_scope, now))
    }

    /// Judges every gated ring by the ring before it: starts it, halts it (with an alert), or
    /// leaves it waiting.
    async fn judge_gates(
        &self,
        rollouts: &[Rollout],
        now: DateTime<Utc>,
    ) -> Result<(), ConsoleError> {
        for rollout in rollouts.iter().filter(|r| r.state == RolloutState::Gated) {
            let Some(gate) = &rollout.gate else {
                continue;
            };
            // Only a ring that runs is judged: one still gated, halted or cancelled has no
            // devices to judge, and an empty ring would let everything behind it through.
            let after = rollouts.iter().find(|r| r.id == gate.after);
            if after.is_none_or(|r| r.state != RolloutState::Active) {
                continue;
            }
            let before = self.ring_progress(gate.after, now).await?;
            match gate.gate.judge(&before, false) {
                Verdict::Promote { .. } => {
                    let why = format!(
                        "rollout {} passed its gate ({} of {} updated, {} failed)",
                        gate.after, before.updated, before.devices, before.failed
                    );
                    self.open_ring(rollout, &why).await?;
                }
                Verdict::Halt(reason) => {
                    let detail = format!(
                        "rollout {} (ring {}) halted before it started: in rollout {}, {reason}",
                        rollout.id, gate.ring, gate.after
                    );
                    self.store
                        .halt_rollout(rollout.id, &reason.to_string())
                        .await?;
                    self.store
                        .raise_alert(now, AlertKind::RolloutHalted, &detail)
                        .await?;
                    self.record("ring_halted", &detail).await?;
                }
                Verdict::Wait { .. } => {}
            }
        }
        Ok(())
    }

    /// Plans the devices a rollout covers that have no record in it yet (only those that never
    /// reported, when `never_reported`: a device that reports is planned by `sync`).
    async fn plan_unplanned(&self, id: i64, never_reported: bool) -> Result<(), ConsoleError> {
        let now = self.clock.now();
        let rollout = self.rollout(id).await?;
        let mut changes = Changes::default();
        for device in self
            .store
            .devices_without_enforcement(id, rollout.release.platform, never_reported)
            .await?
        {
            self.plan_device(&rollout, &device, now, &mut changes);
        }
        self.store.commit(changes, now).await?;
        Ok(())
    }

    async fn rollout(&self, id: i64) -> Result<Rollout, ConsoleError> {
        Ok(self
            .store
            .rollouts()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("rollout {id}"),
                reason: "no such rollout".into(),
            })?)
    }

    /// Pauses a rollout: devices not yet assigned wait; devices already assigned keep their
    /// declaration (a device holding one installs at its deadline whatever the console does).
    pub async fn pause_rollout(&self, id: i64) -> Result<(), ConsoleError> {
        self.set_state(
            id,
            RolloutState::Active,
            RolloutState::Paused,
            "rollout_paused",
        )
        .await
    }

    /// Resumes a paused rollout (a cancelled one stays cancelled), and plans the devices that
    /// reported while it was paused.
    pub async fn resume_rollout(&self, id: i64) -> Result<(), ConsoleError> {
        self.set_state(
            id,
            RolloutState::Paused,
            RolloutState::Active,
            "rollout_resumed",
        )
        .await?;
        self.plan_unplanned(id, false).await
    }

    async fn set_state(
        &self,
        id: i64,
        from: RolloutState,
        to: RolloutState,
        action: &str,
    ) -> Result<(), ConsoleError> {
        let rollout = self.rollout(id).await?;
        if rollout.state != from {
            return Err(ConsoleError::State(format!(
                "rollout {id} is {}, not {from}",
                rollout.state
            )));
        }
        self.store.set_rollout_state(id, to).await?;
        self.record(action, &format!("rollout {id}")).await?;
        Ok(())
    }

    /// Retries every failed device of a rollout: its declaration's token changes and the device
    /// is pushed, so it fetches the declaration again. Returns how many devices were retried.
    pub async fn retry_failed(&self, id: i64) -> Result<usize, ConsoleError> {
        let now = self.clock.now();
        let mut changes = Changes::default();
        for record in self.store.enforcements(id).await? {
            if !matches!(record.phase, Phase::Failed | Phase::Invalid) {
                continue;
            }
            let (next, effects) = step(&record, &Event::Retry, now, &self.rules);
            changes.effects(&next, effects, now);
            changes.enforcements.push(next);
        }
        let retried = changes.enforcements.len();
        self.store.commit(changes, now).await?;
        self.record(
            "rollout_retried",
            &format!("rollout {id}: {retried} failed devices"),
        )
        .await?;
        Ok(retried)
    }

    /// Cancels a rollout: unassigns everything it assigned.
    pub async fn cancel_rollout(&self, id: i64) -> Result<(), ConsoleError> {
        let now = self.clock.now();
        let mut changes = Changes::default();
        for record in self.store.enforcements(id).await? {
            let (next, effects) = step(&record, &Event::Cancel, now, &self.rules);
            changes.effects(&next, effects, now);
            changes.enforcements.push(next);
        }
        self.store.commit(changes, now).await?;
        self.store
            .set_rollout_state(id, RolloutState::Cancelled)
            .await?;
        self.record("rollout_cancelled", &format!("rollout {id}"))
            .await?;
        Ok(())
    }

    /// Reads the server's status feed until it is exhausted. Returns how many changes it read.
    pub async fn sync(&self) -> Result<usize, ConsoleError> {
        let mut total = 0;
        loop {
            let cursor: i64 = self
                .store
                .setting(CURSOR)
                .await?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let page = self.backend.status_changes(cursor, PAGE).await?;
            if page.changes.is_empty() {
                return Ok(total);
            }
            total += page.changes.len();
            self.apply_changes(&page.changes, page.next).await?;
            // A page short of the limit was the end of the feed: asking again only to hear so
            // would cost a server round trip (and a flush of its writer) on every sync.
            if page.changes.len() < PAGE as usize {
                return Ok(total);
            }
        }
    }

    async fn apply_changes(&self, page: &[StatusChange], next: i64) -> Result<(), ConsoleError> {
        let now = self.clock.now();
        let ids: Vec<String> = page.iter().map(|c| c.enrollment.id.clone()).collect();
        let known: HashMap<String, DeviceRow> = self
            .store
            .devices_by_ids(&ids)
            .await?
            .into_iter()
            .map(|d| (d.facts.enrollment_id.clone(), d))
            .collect();
        // Devices already in a paused rollout go on being followed; only active rollouts take
        // in new devices, and only the devices they cover.
        let rollouts: Vec<Rollout> = self
            .store
            .rollouts()
            .await?
            .into_iter()
            .filter(|r| r.state.is_open())
            .collect();
        let mut records: HashMap<(i64, String), Enforcement> = HashMap::new();
        let mut scopes = HashMap::new();
        for rollout in &rollouts {
            for record in self.store.enforcements_for(rollout.id, &ids).await? {
                records.insert((record.rollout_id, record.enrollment_id.clone()), record);
            }
            scopes.insert(rollout.id, self.store.in_scope(rollout.id, &ids).await?);
        }
        let mut changes = Changes::default();
        let newcomers: Vec<DeviceRow> = page
            .iter()
            .filter(|c| !known.contains_key(&c.enrollment.id))
            .map(|c| device_from_change(c, None, now).0)
            .collect();
        for (rollout, id) in self.late_joiners(&rollouts, &newcomers, now).await? {
            if let Some(Some(scope)) = scopes.get_mut(&rollout) {
                scope.insert(id.clone());
            }
            changes.scope.push((rollout, id));
        }
        let takes_in = |rollout: &Rollout, id: &str| {
            rollout.state == RolloutState::Active
                && scopes
                    .get(&rollout.id)
                    .is_none_or(|scope| scope.as_ref().is_none_or(|s| s.contains(id)))
        };
        for change in page {
            let enrollment = &change.enrollment;
            let previous = known.get(&enrollment.id);
            let (device, status) = device_from_change(change, previous, now);
            if previous.is_none() {
                note_enrollment(&device, now, &mut changes);
            }
            let reported_at = device
                .last_report_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            for rollout in &rollouts {
                match records.remove(&(rollout.id, enrollment.id.clone())) {
                    Some(record) => {
                        let mut observation =
                            Observation::from_status(&status, &record.declaration_id);
                        observation.reported_at = reported_at;
                        observation.bootstrap_requested_at =
                            enrollment.bootstrap_token_requested_at.clone();
                        let (next, effects) = step(
                            &record,
                            &Event::Observed(Box::new(observation)),
                            now,
                            &self.rules,
                        );
                        if next != record || !effects.is_empty() {
                            changes.effects(&next, effects, now);
                            changes.enforcements.push(next);
                        }
                    }
                    None if takes_in(rollout, &enrollment.id) => {
                        self.plan_device(rollout, &device, now, &mut changes)
                    }
                    None => {}
                }
            }
            changes.devices.push(device);
        }
        changes.settings.push((CURSOR.into(), next.to_string()));
        self.store.commit(changes, now).await?;
        Ok(())
    }

    /// The ring rollouts of saved plans that devices seen for the first time join: each goes to
    /// the ring its plan puts it in (as saved now), unless held or pinned below the release, as
    /// `start_rings` placed the devices known then. A ring that was never started (it had no
    /// device) takes no one. Returns (rollout, device) pairs.
    async fn late_joiners(
        &self,
        rollouts: &[Rollout],
        newcomers: &[DeviceRow],
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, String)>, ConsoleError> {
        let rings: Vec<(&Rollout, &Placement)> = rollouts
            .iter()
            .filter_map(|r| r.placement.as_ref().map(|p| (r, p)))
            .collect();
        if rings.is_empty() || newcomers.is_empty() {
            return Ok(Vec::new());
        }
        let plans: HashMap<String, RingPlan> = self.store.ring_plans().await?.into_iter().collect();
        let holds = self.store.holds().await?;
        let pins = self.store.pins().await?;
        let mut joins = Vec::new();
        for device in newcomers {
            let candidate = Candidate::of(&device.facts, device.name.as_deref());
            for (rollout, placement) in &rings {
                let Some(plan) = plans.get(&placement.plan) else {
                    continue;
                };
                let restraints = Restraints {
                    holds: &holds,
                    pins: &pins,
                    majors: &placement.majors,
                };
                if plan.place(&candidate, &rollout.release, &restraints, now)
                    == Some(placement.index as usize)
                {
                    joins.push((rollout.id, device.facts.enrollment_id.clone()));
                }
            }
        }
        Ok(joins)
    }

    /// Decides a device's part in a rollout and records it.
    fn plan_device(
        &self,
        rollout: &Rollout,
        device: &DeviceRow,
        now: DateTime<Utc>,
        changes: &mut Changes,
    ) {
        let mut facts = device.facts.clone();
        // A rollout is for one platform; devices of the others are not part of it at all.
        if facts
            .platform()
            .is_some_and(|platform| platform != rollout.release.platform)
        {
            return;
        }
        let mut decision = plan::decide(&facts, &rollout.release);
        if let Decision::Wait(_) = decision {
            // A device that enrolled but never reported: after the grace period, plan it from its
            // enrollment facts, so it shows up as unresponsive instead of staying invisible.
            let enrolled_at = facts
                .enrolled_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            let silent = device.last_report_at.is_none();
            if silent
                && enrolled_at.is_some_and(|at| now - at.with_timezone(&Utc) > self.facts_grace)
            {
                facts.supported_configurations =
                    Some(vec![SoftwareUpdateEnforcementSpecific::TYPE.into()]);
                decision = plan::decide(&facts, &rollout.release);
            }
        }
        let deadline = NaiveDateTime::parse_from_str(&rollout.deadline_local, "%Y-%m-%dT%H:%M:%S")
            .unwrap_or_default();
        let target_build = match &decision {
            Decision::Enforce { target_build, .. } => target_build.as_deref(),
            _ => None,
        };
        let mut record = Enforcement::planned(
            rollout.id,
            rollout.wave,
            &facts.enrollment_id,
            &rollout.release,
            target_build,
            deadline,
            device
                .time_zone
                .as_deref()
                .and_then(|zone| utc_offset_at(zone, deadline)),
            now,
        );
        record.bootstrap_requested_at = device.bootstrap_token_requested_at.clone();
        match decision {
            Decision::Wait(_) => return,
            Decision::Exclude(exclusion) => {
                let reason = exclusion.to_string();
                record.phase = Phase::Excluded;
                changes.events.push(Note::device(
                    &record.enrollment_id,
                    Some(rollout.id),
                    now,
                    EventKind::Excluded,
                    reason.clone(),
                ));
                record.exclusion_reason = Some(reason);
            }
            Decision::Enforce {
                device_id,
                device_id_source,
                ..
            } => {
                let source = match device_id_source {
                    plan::DeviceIdSource::Reported => "reported by the device",
                    plan::DeviceIdSource::Derived => "derived from the model",
                };
                changes.events.push(Note::device(
                    &record.enrollment_id,
                    Some(rollout.id),
                    now,
                    EventKind::Planned,
                    format!(
                        "{} by {} local; device id {device_id} ({source}); {}",
                        rollout.release.label(),
                        rollout.deadline_local,
                        match &record.target_build {
                            Some(build) => format!("TargetBuildVersion {build}"),
                            None => "no TargetBuildVersion: the version decides".into(),
                        }
                    ),
                ));
                if rollout.release.platform == updraft_feed::Platform::MacOs
                    && self.backend.knows_bootstrap_escrow()
                    && !facts.bootstrap_token_escrowed
                    && facts.is_apple_silicon()
                {
                    changes.alerts.push(Note::device(
                        &record.enrollment_id,
                        Some(rollout.id),
                        now,
                        AlertKind::BootstrapTokenMissing,
                        "a Mac with Apple silicon without an escrowed bootstrap token: its user will have to authorize the update",
                    ));
                }
                changes.outbox.push((
                    Some(rollout.id),
                    record.enrollment_id.clone(),
                    Command::Assign {
                        set: record.set_name.clone(),
                    },
                ));
            }
        }
        changes.enforcements.push(record);
    }

    /// Checks the server's push certificate: an alert when its expiry is 30 days away, again at
    /// 14, 7, 3 and 1 days, and once it has expired (each once per certificate). A lapsed push
    /// certificate cannot be renewed: every device would have to enroll again. Returns whether
    /// an alert was raised.
    pub async fn watch_push_certificate(&self) -> Result<bool, ConsoleError> {
        let Some(certificate) = self.backend.push_certificate().await? else {
            return Ok(false);
        };
        let now = self.clock.now();
        let left = certificate.not_after - now;
        let Some(stage) = push_certificate_stage(left) else {
            return Ok(false);
        };
        let warned = format!(
            "{}|{}|{stage}",
            certificate.topic,
            certificate.not_after.to_rfc3339()
        );
        if self
            .store
            .setting(PUSH_CERTIFICATE_WARNED)
            .await?
            .as_deref()
            == Some(&warned)
        {
            return Ok(false);
        }
        let expiry = certificate.not_after.format("%Y-%m-%d %H:%M UTC");
        let detail = if stage == 0 {
            format!(
                "The push certificate (topic {}) expired on {expiry}: devices are no longer \
                 pushed. Renew it at identity.apple.com with the same Apple ID and restart the \
                 server with it; a new certificate means every device enrolls again.",
                certificate.topic
            )
        } else {
            format!(
                "The push certificate (topic {}) expires on {expiry}, in {} days. Renew it at \
                 identity.apple.com with the same Apple ID and restart the server with it; if it \
                 lapses, every device must enroll again.",
                certificate.topic,
                left.num_days()
            )
        };
        let mut changes = Changes::default();
        changes.alerts.push(Note {
            enrollment_id: None,
            rollout_id: None,
            at: now,
            kind: AlertKind::PushCertificateExpiring,
            detail,
        });
        changes
            .settings
            .push((PUSH_CERTIFICATE_WARNED.into(), warned));
        self.store.commit(changes, now).await?;
        Ok(true)
    }

    /// Moves time-based flags (past deadline, stale, stuck, unresponsive) of the enforcements
    /// whose time for it has come.
    pub async fn tick(&self) -> Result<(), ConsoleError> {
        let now = self.clock.now();
        self.judge_gates(&self.store.rollouts().await?, now).await?;
        let mut changes = Changes::default();
        for rollout in self
            .store
            .rollouts()
            .await?
            .into_iter()
            .filter(|r| r.state.is_open())
        {
            if rollout.state == RolloutState::Active {
                // Devices that report are planned as their reports come in; the tick is for the
                // ones that never did, whose grace period runs out with time alone.
                for device in self
                    .store
                    .devices_without_enforcement(rollout.id, rollout.release.platform, true)
                    .await?
                {
                    self.plan_device(&rollout, &device, now, &mut changes);
                }
            }
            for record in self.store.enforcements_due(rollout.id, now).await? {
                let (next, effects) = step(&record, &Event::Tick, now, &self.rules);
                if next != record || !effects.is_empty() {
                    changes.effects(&next, effects, now);
                    changes.enforcements.push(next);
                }
            }
        }
        self.store.commit(changes, now).await?;
        Ok(())
    }

    /// Carries out pending effects through the backend, and records their consequences with
    /// them marked done, in one transaction. Returns how many were carried out.
    pub async fn drain_outbox(&self) -> Result<usize, ConsoleError> {
        let mut total = 0;
        loop {
            let items = self.store.pending_outbox(OUTBOX_BATCH).await?;
            if items.is_empty() {
                return Ok(total);
            }
            let last_batch = items.len() < OUTBOX_BATCH as usize;
            total += items.len();
            let now = self.clock.now();
            let mut assign = Vec::new();
            let mut unassign = Vec::new();
            let mut touch: BTreeMap<String, ()> = BTreeMap::new();
            for item in &items {
                match &item.command {
                    Command::Assign { set } => assign.push(Assignment {
                        enrollment_id: item.enrollment_id.clone(),
                        set: set.clone(),
                    }),
                    Command::Unassign { set } => unassign.push(Assignment {
                        enrollment_id: item.enrollment_id.clone(),
                        set: set.clone(),
                    }),
                    Command::Touch { declaration } => {
                        touch.insert(declaration.clone(), ());
                    }
                }
            }
            let assigned = match assign.is_empty() {
                true => AssignOutcome::default(),
                false => self.backend.assign(&assign).await?,
            };
            let unassigned = match unassign.is_empty() {
                true => AssignOutcome::default(),
                false => self.backend.unassign(&unassign).await?,
            };
            for declaration in touch.keys() {
                self.backend.touch(declaration).await?;
            }
            // The consequences, committed with the items marked done.
            let mut changes = Changes {
                done: items.iter().map(|i| i.id).collect(),
                ..Changes::default()
            };
            let mut by_rollout: BTreeMap<i64, Vec<&updraft_store::OutboxItem>> = BTreeMap::new();
            for item in &items {
                if let Some(rollout) = item.rollout_id {
                    by_rollout.entry(rollout).or_default().push(item);
                }
            }
            for (rollout, items) in by_rollout {
                let ids: Vec<String> = items.iter().map(|i| i.enrollment_id.clone()).collect();
                let records: HashMap<String, Enforcement> = self
                    .store
                    .enforcements_for(rollout, &ids)
                    .await?
                    .into_iter()
                    .map(|r| (r.enrollment_id.clone(), r))
                    .collect();
                let mut updated: HashMap<String, Enforcement> = HashMap::new();
                let mut push_failures: BTreeMap<String, usize> = BTreeMap::new();
                for item in items {
                    let Some(record) = updated
                        .get(&item.enrollment_id)
                        .or(records.get(&item.enrollment_id))
                        .cloned()
                    else {
                        continue;
                    };
                    let event = match &item.command {
                        Command::Assign { .. } => Event::Assigned {
                            push: push_of(&assigned, &item.enrollment_id),
                        },
                        Command::Unassign { .. } => Event::Unassigned {
                            push: push_of(&unassigned, &item.enrollment_id),
                        },
                        Command::Touch { .. } => continue,
                    };
                    if let Event::Assigned {
                        push: Push::Failed(reason),
                    }
                    | Event::Unassigned {
                        push: Push::Failed(reason),
                    } = &event
                    {
                        *push_failures.entry(reason.clone()).or_default() += 1;
                    }
                    let (next, effects) = step(&record, &event, now, &self.rules);
                    changes.effects(&next, effects, now);
                    updated.insert(next.enrollment_id.clone(), next);
                }
                changes.enforcements.extend(updated.into_values());
                // One alert per rollout and batch, counted by reason: a server without a push
                // certificate fails every push at once.
                if !push_failures.is_empty() {
                    let detail = push_failures
                        .iter()
                        .map(|(reason, count)| format!("{count} × {reason}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    changes.alerts.push(Note {
                        enrollment_id: None,
                        rollout_id: Some(rollout),
                        at: now,
                        kind: AlertKind::PushFailed,
                        detail: format!(
                            "the server stored the change but could not push the devices (they learn of it at their next connection): {detail}"
                        ),
                    });
                }
            }
            let nothing_new = changes.outbox.is_empty();
            self.store.commit(changes, now).await?;
            // Nothing left behind and nothing new: no need to ask the outbox again.
            if last_batch && nothing_new {
                return Ok(total);
            }
        }
    }
}

/// A server's timestamp, or the console's `now` if the server's clock is ahead of it: time-based
/// rules (a silent device, a passed deadline) run on the console's clock, and a server's clock a
/// little ahead, or a lab's server on real time beside a simulated console, must not make a
/// device look as if it reported in the future.
/// The device as a status change shows it, and its merged status. A device not yet asked its
/// time zone keeps the one it gave before.
fn device_from_change(
    change: &StatusChange,
    previous: Option<&DeviceRow>,
    now: DateTime<Utc>,
) -> (DeviceRow, DeviceStatus) {
    let enrollment = &change.enrollment;
    let mut status = DeviceStatus::default();
    if let Some(report) = &change.status
        && let Ok(report) = StatusReport::parse(report.get().as_bytes())
    {
        status.apply(&report);
    }
    let base = DeviceFacts {
        enrollment_id: enrollment.id.clone(),
        model: enrollment.product_name.clone().or(enrollment.model.clone()),
        serial_number: enrollment.serial_number.clone(),
        enrolled_at: not_after(enrollment.enrolled_at.as_deref(), now),
        os_version: enrollment.os_version.clone(),
        build: enrollment.build_version.clone(),
        bootstrap_token_escrowed: enrollment.bootstrap_token_escrowed,
        ..Default::default()
    };
    let device = DeviceRow {
        facts: DeviceFacts::from_status(base, &status),
        name: enrollment.device_name.clone(),
        time_zone: enrollment
            .time_zone
            .clone()
            .or_else(|| previous.and_then(|p| p.time_zone.clone())),
        utc_offset_minutes: None,
        last_report_at: change
            .status
            .as_ref()
            .and(not_after(enrollment.last_seen_at.as_deref(), now)),
        bootstrap_token_requested_at: enrollment.bootstrap_token_requested_at.clone(),
        server_seq: enrollment.seq,
    };
    (device, status)
}

/// A device seen for the first time: the base set assigned (its status subscriptions), and
/// "enrolled" on its timeline.
fn note_enrollment(device: &DeviceRow, now: DateTime<Utc>, changes: &mut Changes) {
    let id = &device.facts.enrollment_id;
    changes.outbox.push((
        None,
        id.clone(),
        Command::Assign {
            set: names::BASE_SET.into(),
        },
    ));
    changes.events.push(Note::device(
        id,
        None,
        now,
        EventKind::Enrolled,
        format!(
            "{} {} {}",
            device.facts.model.as_deref().unwrap_or("unknown model"),
            device.facts.os_version.as_deref().unwrap_or(""),
            device
                .facts
                .build
                .as_deref()
                .map(|b| format!("({b})"))
                .unwrap_or_default()
        ),
    ));
}

fn not_after(server_time: Option<&str>, now: DateTime<Utc>) -> Option<String> {
    let text = server_time?;
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) if at.with_timezone(&Utc) > now => {
            Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        _ => Some(text.to_owned()),
    }
}

fn push_of(outcome: &AssignOutcome, enrollment_id: &str) -> Push {
    match outcome.push_of(enrollment_id) {
        PushResult::Sent => Push::Sent,
        PushResult::Failed(reason) => Push::Failed(reason),
    }
}

/// A rollout's stored local deadline.
fn local_deadline(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").ok()
}

/// The offset from UTC of an IANA zone at a local time, in minutes.
pub fn utc_offset_at(zone: &str, local: NaiveDateTime) -> Option<i32> {
    let zone: chrono_tz::Tz = zone.parse().ok()?;
    let at = zone.from_local_datetime(&local).earliest()?;
    Some(((at.naive_local() - at.naive_utc()).num_minutes()) as i32)
}

/// Where a ring stands for its gate, from its records at `now`, of `in_scope` devices (a device
/// of the ring that has not reported yet has no record, and counts as not updated).
pub fn progress_of(records: &[Enforcement], in_scope: usize, now: DateTime<Utc>) -> RingProgress {
    let count = |f: &dyn Fn(&Enforcement) -> bool| records.iter().filter(|r| f(r)).count();
    let failed = |r: &Enforcement| matches!(r.phase, Phase::Failed | Phase::Invalid);
    RingProgress {
        devices: records.len().max(in_scope),
        updated: count(&|r| {
            matches!(
                r.phase,
                Phase::Updated | Phase::Unassigned | Phase::CleanedUp
            )
        }),
        failed: count(&failed),
        excluded: count(&|r| r.phase == Phase::Excluded),
        failures_last_hour: count(&|r| {
            failed(r)
                && r.phase_since
                    .is_some_and(|since| now - since <= Duration::hours(1))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_is_judged_on_every_device_it_holds_not_only_those_that_reported() {
        let release = Release {
            platform: updraft_feed::Platform::MacOs,
            product_version: "26.4.1".into(),
            product_version_extra: None,
            builds: Vec::new(),
        };
        let now = DateTime::UNIX_EPOCH + Duration::days(30);
        let record = |n: usize, phase: Phase| Enforcement {
            phase,
            phase_since: Some(now - Duration::minutes(20)),
            ..Enforcement::planned(
                1,
                1,
                &format!("E{n}"),
                &release,
                None,
                NaiveDateTime::default(),
                None,
                now,
            )
        };
        // Three of a ring of 25 reported so far, two of them failed at once (no disk space).
        let records = [
            record(1, Phase::Failed),
            record(2, Phase::Failed),
            record(3, Phase::Downloading),
        ];
        let progress = progress_of(&records, 25, now);
        assert_eq!(
            (
                progress.devices,
                progress.failed,
                progress.failures_last_hour
            ),
            (25, 2, 2)
        );
        // Two of 25 is 8%, not the 67% two of three would be.
        assert_eq!(
            updraft_engine::rings::Gate::default().judge(&progress, false),
            Verdict::Halt(updraft_engine::rings::HaltReason::FailedShare {
                failed_percent: 8.0,
                limit_percent: 5.0,
            })
        );
        assert_eq!(
            progress_of(&records, 0, now).devices,
            3,
            "unscoped: its records"
        );
    }
}
