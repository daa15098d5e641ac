//! Release policies at work: after each feed poll, every platform's policy drafts (or starts) a
//! rollout of the newest release in its saved ring plan, once per release.

use chrono::NaiveDate;
use std::collections::BTreeSet;

use updraft_engine::policy::Proposal;
use updraft_engine::rings::majors_of;
use updraft_engine::{AlertKind, DraftState, PolicyAction, Release};
use updraft_feed::sofa::{SofaFeed, Vulnerabilities, vulnerabilities_of};
use updraft_feed::{FeedRelease, Platform};
use updraft_store::{Draft, NewDraft, StoreError};

use crate::{Console, ConsoleError, RingStart};

/// What a policy did after a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The draft's id.
    pub draft: i64,
    /// Drafted for an admin, or started.
    pub state: DraftState,
    /// The rollouts it started, one per ring that holds devices (none for a draft).
    pub rollouts: Vec<i64>,
}

fn exploited_cves(sofa: &[SofaFeed], release: &FeedRelease) -> Vec<String> {
    match vulnerabilities_of(sofa, release) {
        Vulnerabilities::Known { exploited, .. } => exploited,
        Vulnerabilities::Mismatch(_) | Vulnerabilities::NotListed => Vec::new(),
    }
}

impl Console {
    /// Applies every saved release policy to the feed as it stands on `today`: each drafts, or
    /// starts, the newest release of its platform it has not acted on before and no open
    /// rollout covers, raises a `rollout_drafted` alert (the desktop's notice) and writes the
    /// audit log. A policy whose plan is gone is skipped with an error in the log, never guessed.
    pub async fn apply_policies(
        &self,
        releases: &[FeedRelease],
        sofa: &[SofaFeed],
        today: NaiveDate,
    ) -> Result<Vec<PolicyOutcome>, ConsoleError> {
        let now = self.clock.now();
        let key = |platform: Platform, version: &str, extra: Option<&str>| {
            (platform, version.to_owned(), extra.map(str::to_owned))
        };
        let drafted = self.store.drafts().await?;
        let rolling = self.store.rollouts().await?;
        // A release drafted before, or one an admin already rolls out by hand, is left alone.
        let handled: BTreeSet<(Platform, String, Option<String>)> = drafted
            .iter()
            .map(|d| {
                key(
                    d.platform,
                    &d.product_version,
                    d.product_version_extra.as_deref(),
                )
            })
            .chain(rolling.iter().filter(|r| r.state.is_open()).map(|r| {
                key(
                    r.release.platform,
                    &r.release.product_version,
                    r.release.product_version_extra.as_deref(),
                )
            }))
            .collect();
        let mut outcomes = Vec::new();
        for policy in self.store.policies().await? {
            let Some(plan) = self.store.ring_plan(&policy.plan).await? else {
                tracing::error!(platform = %policy.platform, plan = %policy.plan,
                    "a release policy names a ring plan that is not saved; it did nothing");
                continue;
            };
            let Some(proposal) = policy.due(
                releases,
                &plan,
                today,
                |r| {
                    handled.contains(&key(
                        r.platform,
                        &r.product_version,
                        r.product_version_extra.as_deref(),
                    ))
                },
                |r| !exploited_cves(sofa, r).is_empty(),
            ) else {
                continue;
            };
            let exploited = exploited_cves(sofa, proposal.release);
            let Some(draft) = self
                .store
                .record_draft(
                    NewDraft {
                        platform: policy.platform,
                        product_version: &proposal.release.product_version,
                        product_version_extra: proposal.release.product_version_extra.as_deref(),
                        plan: &policy.plan,
                        base_date: proposal.base,
                        shortened_to: proposal.shortened_to,
                        exploited: &exploited,
                        state: DraftState::Drafted,
                    },
                    now,
                )
                .await?
            else {
                continue;
            };
            let outcome = match policy.action {
                PolicyAction::Draft => PolicyOutcome {
                    draft,
                    state: DraftState::Drafted,
                    rollouts: Vec::new(),
                },
                PolicyAction::Start => {
                    // Recorded as drafted first: if the start fails part way, the draft still
                    // waits for an admin instead of being started twice by the next poll.
                    let majors = majors_of(releases, policy.platform);
                    let rollouts = self
                        .start_rings(RingStart {
                            release: &Release::from(proposal.release),
                            plan: &proposal.plan,
                            saved_as: Some(&policy.plan),
                            base: proposal.base,
                            details_url: None,
                            majors: &majors,
                        })
                        .await?;
                    self.store.decide_draft(draft, DraftState::Started).await?;
                    PolicyOutcome {
                        draft,
                        state: DraftState::Started,
                        rollouts,
                    }
                }
            };
            let detail = describe(&policy.plan, &proposal, &exploited, &outcome);
            self.store
                .raise_alert(now, AlertKind::RolloutDrafted, &detail)
                .await?;
            self.record("policy_applied", &detail).await?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Starts a drafted rollout as its policy planned it (the admin confirmed it): the draft's
    /// ring plan, shortened as it was, from `base` (the draft's base date unless the admin
    /// moved it); `majors` as [`Console::start_rings`] takes them. Returns the rings' rollouts.
    pub async fn start_draft(
        &self,
        id: i64,
        release: &Release,
        base: NaiveDate,
        details_url: Option<&str>,
        majors: &[u32],
    ) -> Result<Vec<i64>, ConsoleError> {
        let draft = self.draft(id).await?;
        if draft.state != DraftState::Drafted {
            return Err(ConsoleError::State(format!(
                "drafted rollout {id} is {}: only a waiting draft can be started",
                draft.state
            )));
        }
        if release.platform != draft.platform || release.product_version != draft.product_version {
            return Err(ConsoleError::State(format!(
                "drafted rollout {id} is for {} {}, not {} {}",
                draft.platform, draft.product_version, release.platform, release.product_version
            )));
        }
        let plan = self.store.ring_plan(&draft.plan).await?.ok_or_else(|| {
            ConsoleError::State(format!(
                "drafted rollout {id} takes ring plan {:?}, which is no longer saved: save it again or start the release from the wizard",
                draft.plan
            ))
        })?;
        let plan = match draft.shortened_to {
            Some(percent) => plan.shortened(percent),
            None => plan,
        };
        let rollouts = self
            .start_rings(RingStart {
                release,
                plan: &plan,
                saved_as: Some(&draft.plan),
                base,
                details_url,
                majors,
            })
            .await?;
        self.store.decide_draft(id, DraftState::Started).await?;
        self.record(
            "draft_started",
            &format!(
                "drafted rollout {id}: {} {} in plan {:?} from {base}, rollouts {rollouts:?}",
                release.platform,
                release.label(),
                draft.plan
            ),
        )
        .await?;
        Ok(rollouts)
    }

    /// Sets a drafted rollout aside: its policy will not draft that release again.
    pub async fn dismiss_draft(&self, id: i64) -> Result<(), ConsoleError> {
        let draft = self.draft(id).await?;
        if !self.store.decide_draft(id, DraftState::Dismissed).await? {
            return Err(ConsoleError::State(format!(
                "drafted rollout {id} is {}: only a waiting draft can be dismissed",
                draft.state
            )));
        }
        self.record(
            "draft_dismissed",
            &format!(
                "drafted rollout {id}: {} {}",
                draft.platform, draft.product_version
            ),
        )
        .await
    }

    async fn draft(&self, id: i64) -> Result<Draft, ConsoleError> {
        Ok(self
            .store
            .drafts()
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("drafted rollout {id}"),
                reason: "no such draft".into(),
            })?)
    }
}

fn describe(
    plan: &str,
    proposal: &Proposal,
    exploited: &[String],
    outcome: &PolicyOutcome,
) -> String {
    let release = proposal.release;
    let what = match outcome.state {
        DraftState::Started => format!("started in {} rings", outcome.rollouts.len()),
        _ => "drafted: confirm it on the dashboard".to_owned(),
    };
    let shortened = match proposal.shortened_to {
        Some(percent) => format!(
            "; offsets shortened to {percent}%: it fixes actively exploited {}",
            exploited.join(", ")
        ),
        None => String::new(),
    };
    format!(
        "{} {} (posted {}) {what}, ring plan {plan:?} from {}{shortened}",
        release.platform, release.product_version, release.window.posting_date, proposal.base
    )
}
