//! The Policies screen: saved ring plans and their editor, each platform's release policy, and
//! the rollouts the policies drafted, which the admin starts or dismisses.

use chrono::{NaiveDate, NaiveTime};
use std::collections::BTreeSet;

use updraft_engine::policy::ReleasePolicy;
use updraft_engine::rings::{
    AfterHours, Candidate, DeviceFilter, Gate, Hold, Membership, Pattern, Pin, Restraints, Ring,
    RingPlan, majors_of,
};
use updraft_engine::{DraftState, Release};
use updraft_feed::Platform;
use updraft_store::{DeviceRow, Draft};

use crate::view::*;
use crate::{AppError, Session};

/// The most rings a plan has.
pub const MAX_RINGS: usize = 10;

fn invalid(message: String) -> AppError {
    AppError::Invalid(message)
}

fn time_of(text: &str, what: &str) -> Result<NaiveTime, AppError> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(text.trim(), "%H:%M:%S"))
        .map_err(|_| {
            invalid(format!(
                "{what}: {text:?} is not a time of day; write it as 17:00"
            ))
        })
}

fn pattern(text: &Option<String>) -> Option<Pattern> {
    text.as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Pattern::new)
}

fn platform_of(text: &str, what: &str) -> Result<Platform, AppError> {
    text.parse().map_err(|_| {
        invalid(format!(
            "{what}: {text:?} is not a platform; choose macOS or iOS"
        ))
    })
}

/// A filter as the editor and the pin form send it (platform, then model, OS, name and serial
/// patterns), checked: `what` names where, `noun` what needs a field.
fn filter_of(
    what: &str,
    noun: &str,
    platform: &Option<String>,
    [model, os, name, serial]: [&Option<String>; 4],
) -> Result<DeviceFilter, AppError> {
    let filter = DeviceFilter {
        platform: match platform.as_deref().filter(|p| !p.is_empty()) {
            Some(text) => Some(platform_of(text, what)?),
            None => None,
        },
        model: pattern(model),
        os: pattern(os),
        name: pattern(name),
        serial: pattern(serial),
    };
    if filter == DeviceFilter::default() {
        return Err(invalid(format!(
            "{what}: {noun} needs at least one field (model, OS, name, serial or platform)"
        )));
    }
    Ok(filter)
}

/// The plan the editor sent, checked: every rule broken is named with its ring.
pub fn plan_of(view: &RingPlanView) -> Result<RingPlan, AppError> {
    if view.name.trim().is_empty() {
        return Err(invalid("the plan needs a name".into()));
    }
    if view.rings.is_empty() || view.rings.len() > MAX_RINGS {
        return Err(invalid(format!(
            "a plan has 1 to {MAX_RINGS} rings; this one has {}",
            view.rings.len()
        )));
    }
    let mut names = BTreeSet::new();
    let mut shares = 0u32;
    let mut rings = Vec::with_capacity(view.rings.len());
    for (index, ring) in view.rings.iter().enumerate() {
        let what = format!("ring {} ({:?})", index + 1, ring.name);
        if ring.name.trim().is_empty() || !names.insert(ring.name.trim()) {
            return Err(invalid(format!(
                "{what}: each ring needs a name of its own"
            )));
        }
        if index > 0 && matches!(view.rings[index - 1].kind, MembershipKind::Rest) {
            return Err(invalid(format!(
                "{what}: the ring before it takes every device left, so this one would stay empty; make \"every device left\" the last ring"
            )));
        }
        if index > 0 && ring.offset_days < view.rings[index - 1].offset_days {
            return Err(invalid(format!(
                "{what}: day {} comes before the ring before it (day {}); a later ring cannot be due earlier",
                ring.offset_days,
                view.rings[index - 1].offset_days
            )));
        }
        let membership = match ring.kind {
            MembershipKind::Share => {
                let percent = ring
                    .share_percent
                    .filter(|p| (1..=100).contains(p))
                    .ok_or_else(|| {
                        invalid(format!("{what}: give a share between 1 and 100 percent"))
                    })?;
                shares += u32::from(percent);
                if shares > 100 {
                    return Err(invalid(format!(
                        "{what}: the shares add up to {shares}%, more than the whole fleet"
                    )));
                }
                Membership::Share(percent)
            }
            MembershipKind::Filter => Membership::Filter(filter_of(
                &what,
                "a filter",
                &ring.filter_platform,
                [
                    &ring.filter_model,
                    &ring.filter_os,
                    &ring.filter_name,
                    &ring.filter_serial,
                ],
            )?),
            MembershipKind::Devices => {
                let ids: BTreeSet<String> = ring
                    .devices
                    .iter()
                    .map(|d| d.trim().to_owned())
                    .filter(|d| !d.is_empty())
                    .collect();
                if ids.is_empty() {
                    return Err(invalid(format!("{what}: name at least one device")));
                }
                Membership::Devices(ids)
            }
            MembershipKind::Rest => Membership::Rest,
        };
        rings.push(Ring {
            name: ring.name.trim().to_owned(),
            membership,
            offset_days: ring.offset_days,
            time_of_day: time_of(&ring.time_of_day, &what)?,
        });
    }
    let after_hours = match (&view.after_hours_start, &view.after_hours_end) {
        (Some(start), Some(end)) if !start.is_empty() && !end.is_empty() => Some(AfterHours {
            start: time_of(start, "after hours, from")?,
            end: time_of(end, "after hours, until")?,
        }),
        _ => None,
    };
    let percent = |value: f64, what: &str| {
        if (0.0..=100.0).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(format!(
                "the gate's {what}: {value} is not between 0 and 100"
            )))
        }
    };
    Ok(RingPlan {
        rings,
        weekends: view.weekends,
        after_hours,
        gate: Gate {
            min_updated_percent: percent(view.min_updated_percent, "updated share")?,
            max_failed_percent: percent(view.max_failed_percent, "failed share")?,
            max_failures_per_hour: view.max_failures_per_hour.map(|n| n as usize),
        },
    })
}

fn ring_view(ring: &Ring) -> RingView {
    let mut view = RingView {
        name: ring.name.clone(),
        kind: MembershipKind::Rest,
        share_percent: None,
        filter_platform: None,
        filter_model: None,
        filter_os: None,
        filter_name: None,
        filter_serial: None,
        devices: Vec::new(),
        offset_days: ring.offset_days,
        time_of_day: ring.time_of_day.format("%H:%M").to_string(),
    };
    let text = |p: &Option<Pattern>| p.as_ref().map(|p| p.as_str().to_owned());
    match &ring.membership {
        Membership::Share(percent) => {
            view.kind = MembershipKind::Share;
            view.share_percent = Some(*percent);
        }
        Membership::Filter(filter) => {
            view.kind = MembershipKind::Filter;
            view.filter_platform = filter.platform.map(|p| p.as_str().to_owned());
            view.filter_model = text(&filter.model);
            view.filter_os = text(&filter.os);
            view.filter_name = text(&filter.name);
            view.filter_serial = text(&filter.serial);
        }
        Membership::Devices(ids) => {
            view.kind = MembershipKind::Devices;
            view.devices = ids.iter().cloned().collect();
        }
        Membership::Rest => {}
    }
    view
}

/// A saved plan as the editor shows it.
pub fn plan_view(name: &str, plan: &RingPlan, used_by: Vec<String>) -> RingPlanView {
    RingPlanView {
        name: name.to_owned(),
        rings: plan.rings.iter().map(ring_view).collect(),
        weekends: plan.weekends,
        after_hours_start: plan
            .after_hours
            .map(|w| w.start.format("%H:%M").to_string()),
        after_hours_end: plan.after_hours.map(|w| w.end.format("%H:%M").to_string()),
        min_updated_percent: plan.gate.min_updated_percent,
        max_failed_percent: plan.gate.max_failed_percent,
        max_failures_per_hour: plan.gate.max_failures_per_hour.map(|n| n as u32),
        used_by,
    }
}

/// The plan a new admin starts from: IT on day 0, a pilot of 20% on day 3, everyone on day 7.
fn starter_plan() -> RingPlanView {
    let ring = |name: &str, kind, share_percent, offset_days| RingView {
        name: name.into(),
        kind,
        share_percent,
        filter_platform: None,
        filter_model: None,
        filter_os: None,
        filter_name: None,
        filter_serial: None,
        devices: Vec::new(),
        offset_days,
        time_of_day: "17:00".into(),
    };
    RingPlanView {
        name: "Standard".into(),
        rings: vec![
            ring("IT", MembershipKind::Share, Some(5), 0),
            ring("Pilot", MembershipKind::Share, Some(20), 3),
            ring("Everyone", MembershipKind::Rest, None, 7),
        ],
        weekends: Weekends::NextMonday,
        after_hours_start: None,
        after_hours_end: None,
        min_updated_percent: 90.0,
        max_failed_percent: 5.0,
        max_failures_per_hour: None,
        used_by: Vec::new(),
    }
}

fn policy_view(policy: &ReleasePolicy) -> PolicyView {
    PolicyView {
        platform: policy.platform.as_str().to_owned(),
        plan: policy.plan.clone(),
        base_delay_days: policy.base_delay_days,
        action: policy.action,
        exploited_percent: policy.exploited_percent,
        since: policy.since.to_string(),
    }
}

/// Which ring of `plan` each device of `platform` falls in today, counted; held and pinned
/// devices are left out as `start_rings` leaves them out.
fn ring_counts(
    plan: &RingPlan,
    release: &Release,
    devices: &[DeviceRow],
    restraints: &Restraints,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<usize> {
    let mut counts = vec![0; plan.rings.len()];
    for device in devices {
        let candidate = Candidate::of(&device.facts, device.name.as_deref());
        if let Some(ring) = plan.place(&candidate, release, restraints, now) {
            counts[ring] += 1;
        }
    }
    counts
}

fn gate_text(gate: &Gate) -> String {
    let rate = gate
        .max_failures_per_hour
        .map(|n| format!(", or more than {n} failures in an hour"))
        .unwrap_or_default();
    format!(
        "each ring waits for {}% updated in the ring before; more than {}% failed{rate} halts the rollout",
        gate.min_updated_percent, gate.max_failed_percent
    )
}

impl Session {
    /// The plan the editor offers when the admin makes a new one.
    pub fn ring_plan_template(&self) -> RingPlanView {
        starter_plan()
    }

    /// Every saved ring plan, with the policies that use it.
    pub async fn ring_plans(&self) -> Result<Vec<RingPlanView>, AppError> {
        let policies = self.store().policies().await?;
        Ok(self
            .store()
            .ring_plans()
            .await?
            .iter()
            .map(|(name, plan)| {
                let used_by = policies
                    .iter()
                    .filter(|p| &p.plan == name)
                    .map(|p| format!("{} policy", p.platform))
                    .collect();
                plan_view(name, plan, used_by)
            })
            .collect())
    }

    /// Saves a ring plan (replacing the plan of its name), checked first; audited.
    pub async fn save_ring_plan(&self, view: &RingPlanView) -> Result<(), AppError> {
        let plan = plan_of(view)?;
        let name = view.name.trim();
        self.store().put_ring_plan(name, &plan).await?;
        let rings: Vec<String> = plan
            .rings
            .iter()
            .map(|r| format!("{} day {}", r.name, r.offset_days))
            .collect();
        self.console()
            .record(
                "ring_plan_saved",
                &format!("{name:?}: {}", rings.join(", ")),
            )
            .await?;
        Ok(())
    }

    /// Deletes a ring plan no policy uses; audited.
    pub async fn delete_ring_plan(&self, name: &str) -> Result<(), AppError> {
        match self.store().delete_ring_plan(name).await {
            Ok(true) => {}
            Ok(false) => return Err(AppError::NotFound(format!("no ring plan {name:?}"))),
            Err(updraft_store::StoreError::InUse(message)) => return Err(invalid(message)),
            Err(other) => return Err(other.into()),
        }
        self.console()
            .record("ring_plan_deleted", &format!("{name:?}"))
            .await?;
        Ok(())
    }

    /// Every platform's release policy.
    pub async fn policies(&self) -> Result<Vec<PolicyView>, AppError> {
        Ok(self
            .store()
            .policies()
            .await?
            .iter()
            .map(policy_view)
            .collect())
    }

    /// Saves a platform's release policy and applies it at once to the releases the console
    /// knows (a policy whose start date lies before the newest release drafts it now).
    /// Returns the drafts waiting after it.
    pub async fn save_policy(&self, view: &PolicyView) -> Result<Vec<DraftView>, AppError> {
        let policy = ReleasePolicy {
            platform: platform_of(&view.platform, "the policy's platform")?,
            plan: view.plan.clone(),
            base_delay_days: view.base_delay_days,
            action: view.action,
            exploited_percent: match view.exploited_percent {
                Some(percent) if !(1..=100).contains(&percent) => {
                    return Err(invalid(format!(
                        "shorten to {percent}%: give a percent between 1 and 100, or none"
                    )));
                }
                other => other,
            },
            since: view.since.trim().parse::<NaiveDate>().map_err(|_| {
                invalid(format!(
                    "from {:?}: not a date; write it as YYYY-MM-DD",
                    view.since
                ))
            })?,
        };
        match self.store().put_policy(&policy).await {
            Ok(()) => {}
            Err(updraft_store::StoreError::InUse(message)) => return Err(invalid(message)),
            Err(other) => return Err(other.into()),
        }
        self.console()
            .record(
                "policy_saved",
                &format!(
                    "{}: {} in ring plan {:?}, {} days after posting, releases from {}",
                    policy.platform,
                    policy.action,
                    policy.plan,
                    policy.base_delay_days,
                    policy.since
                ),
            )
            .await?;
        self.apply_policies().await?;
        self.drafts().await
    }

    /// Deletes a platform's release policy; audited. Its drafts stay.
    pub async fn delete_policy(&self, platform: &str) -> Result<(), AppError> {
        let platform = platform_of(platform, "the policy's platform")?;
        if !self.store().delete_policy(platform).await? {
            return Err(AppError::NotFound(format!("no {platform} release policy")));
        }
        self.console()
            .record("policy_deleted", &platform.to_string())
            .await?;
        Ok(())
    }

    /// Lets every policy act on the releases the console knows today.
    pub(crate) async fn apply_policies(&self) -> Result<(), AppError> {
        let releases = self.cache.feed_releases();
        self.console()
            .apply_policies(&releases, &self.cache.sofa(), self.now().date_naive())
            .await?;
        self.cache.invalidate();
        Ok(())
    }

    /// The drafts waiting for an admin, newest first, each with its rings as they stand today.
    pub async fn drafts(&self) -> Result<Vec<DraftView>, AppError> {
        let drafts = self.waiting_drafts().await?;
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let devices = self.store().devices().await?;
        self.draft_views(&drafts, &devices).await
    }

    /// The drafts still waiting for an admin.
    pub(crate) async fn waiting_drafts(&self) -> Result<Vec<Draft>, AppError> {
        Ok(self
            .store()
            .drafts()
            .await?
            .into_iter()
            .filter(|d| d.state == DraftState::Drafted)
            .collect())
    }

    /// The waiting drafts' views, their rings counted over `devices` (the dashboard passes the
    /// devices it already read: a fleet is read once a refresh).
    pub(crate) async fn draft_views(
        &self,
        drafts: &[Draft],
        devices: &[DeviceRow],
    ) -> Result<Vec<DraftView>, AppError> {
        let holds = self.store().holds().await?;
        let pins = self.store().pins().await?;
        let plans = self.store().ring_plans().await?;
        let now = self.now();
        Ok(drafts
            .iter()
            .map(|draft| {
                let release = self.cache.release_of(
                    draft.platform,
                    &draft.product_version,
                    draft.product_version_extra.as_deref(),
                );
                let release = release.as_ref();
                let plan = plans
                    .iter()
                    .find(|(name, _)| *name == draft.plan)
                    .map(|(_, plan)| match draft.shortened_to {
                        Some(percent) => plan.shortened(percent),
                        None => plan.clone(),
                    });
                let majors = majors_of(&self.cache.feed_releases(), draft.platform);
                let restraints = Restraints {
                    holds: &holds,
                    pins: &pins,
                    majors: &majors,
                };
                let rings = plan
                    .as_ref()
                    .zip(release)
                    .map_or_else(Vec::new, |(plan, r)| {
                        let counts = ring_counts(plan, &r.release, devices, &restraints, now);
                        plan.rings
                            .iter()
                            .enumerate()
                            .map(|(index, ring)| DraftRingView {
                                name: ring.name.clone(),
                                devices: counts[index],
                                deadline: plan
                                    .deadline(index, draft.base_date)
                                    .map(|d| d.format("%Y-%m-%dT%H:%M").to_string())
                                    .unwrap_or_default(),
                            })
                            .collect()
                    });
                DraftView {
                    id: draft.id,
                    release: release.map(|r| r.key.clone()).unwrap_or_default(),
                    label: release.map_or_else(
                        || format!("{} {}", draft.platform, draft.product_version),
                        |r| format!("{} {}", r.release.platform, r.release.label()),
                    ),
                    posted: release
                        .map(|r| r.window.posting_date.to_string())
                        .unwrap_or_default(),
                    plan: draft.plan.clone(),
                    base_date: draft.base_date.to_string(),
                    shortened_to: draft.shortened_to,
                    exploited: draft.exploited.clone(),
                    state: draft.state,
                    rings,
                    gate: plan
                        .as_ref()
                        .map(|p| gate_text(&p.gate))
                        .unwrap_or_default(),
                    drafted_at: draft.created_at.to_rfc3339(),
                }
            })
            .collect())
    }

    /// Starts a drafted rollout as its policy planned it, from `base_date` (`YYYY-MM-DD`; the
    /// draft's own when empty) with `details_url`. Returns the rings' rollouts.
    pub async fn start_draft(
        &self,
        id: i64,
        base_date: Option<&str>,
        details_url: Option<&str>,
    ) -> Result<Vec<i64>, AppError> {
        let draft = self
            .store()
            .drafts()
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| AppError::NotFound(format!("no drafted rollout {id}")))?;
        let base = match base_date.map(str::trim).filter(|b| !b.is_empty()) {
            Some(text) => text.parse::<NaiveDate>().map_err(|_| {
                invalid(format!(
                    "base date {text:?}: not a date; write it as YYYY-MM-DD"
                ))
            })?,
            None => draft.base_date,
        };
        if base < self.now().date_naive() {
            return Err(invalid(format!(
                "base date {base} is in the past: the first ring's deadline would have passed; choose today or later"
            )));
        }
        let details_url = match details_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Some(crate::wizard::check_details_url(url).map_err(invalid)?),
            None => None,
        };
        let release: Release = self
            .cache
            .release_of(
                draft.platform,
                &draft.product_version,
                draft.product_version_extra.as_deref(),
            )
            .map(|r| r.release)
            .ok_or_else(|| {
                AppError::NotFound(format!(
                    "{} {} is no longer in the lookup service's feed",
                    draft.platform, draft.product_version
                ))
            })?;
        let majors = majors_of(&self.cache.feed_releases(), release.platform);
        let ids = self
            .console()
            .start_draft(id, &release, base, details_url.as_deref(), &majors)
            .await?;
        self.console().drain_outbox().await?;
        self.cache.invalidate();
        Ok(ids)
    }

    /// Every pinned group.
    pub async fn pins(&self) -> Result<Vec<PinView>, AppError> {
        Ok(self
            .store()
            .pins()
            .await?
            .iter()
            .map(|pin| PinView {
                name: pin.group.clone(),
                filter_platform: pin.filter.platform.map(|p| p.as_str().to_owned()),
                filter_model: pin.filter.model.as_ref().map(|p| p.as_str().to_owned()),
                filter_os: pin.filter.os.as_ref().map(|p| p.as_str().to_owned()),
                filter_name: pin.filter.name.as_ref().map(|p| p.as_str().to_owned()),
                filter_serial: pin.filter.serial.as_ref().map(|p| p.as_str().to_owned()),
                majors_behind: pin.majors_behind,
            })
            .collect())
    }

    /// Saves a pinned group (replacing the one of its name), checked; audited. Every rollout
    /// started from now on leaves its devices out of releases above their major.
    pub async fn save_pin(&self, view: &PinView) -> Result<(), AppError> {
        let name = view.name.trim();
        if name.is_empty() {
            return Err(invalid("the pinned group needs a name".into()));
        }
        if !(1..=3).contains(&view.majors_behind) {
            return Err(invalid(format!(
                "{name}: keep the group 1 to 3 majors behind the newest, not {}",
                view.majors_behind
            )));
        }
        let filter = filter_of(
            name,
            "a pinned group",
            &view.filter_platform,
            [
                &view.filter_model,
                &view.filter_os,
                &view.filter_name,
                &view.filter_serial,
            ],
        )?;
        let pin = Pin {
            group: name.to_owned(),
            filter,
            majors_behind: view.majors_behind,
        };
        self.store().put_pin(&pin).await?;
        self.console()
            .record(
                "pin_saved",
                &format!("{name:?}: {} majors behind the newest", pin.majors_behind),
            )
            .await?;
        Ok(())
    }

    /// Deletes a pinned group; audited.
    pub async fn delete_pin(&self, name: &str) -> Result<(), AppError> {
        if !self.store().delete_pin(name).await? {
            return Err(AppError::NotFound(format!("no pinned group {name:?}")));
        }
        self.console()
            .record("pin_deleted", &format!("{name:?}"))
            .await?;
        Ok(())
    }

    /// Holds, pins and the platform's majors in the feed: what keeps devices out of a release.
    pub(crate) async fn restraints(
        &self,
        platform: Platform,
    ) -> Result<(Vec<Hold>, Vec<Pin>, Vec<u32>), AppError> {
        Ok((
            self.store().holds().await?,
            self.store().pins().await?,
            majors_of(&self.cache.feed_releases(), platform),
        ))
    }

    /// Sets a drafted rollout aside; its policy does not draft that release again.
    pub async fn dismiss_draft(&self, id: i64) -> Result<(), AppError> {
        self.console().dismiss_draft(id).await?;
        Ok(())
    }
}
