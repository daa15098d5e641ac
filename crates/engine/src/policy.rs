//! Release policies: what the console does by itself when the lookup service lists a new release
//! of a platform. A policy names a saved ring plan and a delay; the feed poll asks [`due`] which
//! release it now acts on, and the console drafts (or starts) that rollout once per release.

use chrono::{Duration, NaiveDate};

use updraft_feed::{FeedRelease, Platform};

pub use crate::kinds::PolicyAction;
use crate::rings::RingPlan;

/// One platform's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePolicy {
    /// The platform whose releases it acts on.
    pub platform: Platform,
    /// The saved ring plan a rollout takes.
    pub plan: String,
    /// The rollout's base date: this many days after the release's posting date.
    pub base_delay_days: u32,
    /// Draft for an admin, or start at once.
    pub action: PolicyAction,
    /// When the release fixes an actively exploited vulnerability, every ring's offset (and the
    /// delay) shortened to this percent of itself; `None` keeps the plan as it is.
    pub exploited_percent: Option<u32>,
    /// Releases posted before this day are left alone: a policy created today does not draft
    /// last year's releases.
    pub since: NaiveDate,
}

/// What a policy asks for today.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal<'a> {
    /// The release.
    pub release: &'a FeedRelease,
    /// The rollout's base date: never before `today`, so that no ring's deadline is already past
    /// when a console that was off catches up.
    pub base: NaiveDate,
    /// The ring plan to use, shortened when the release fixes an exploited vulnerability.
    pub plan: RingPlan,
    /// The percent the plan was shortened to, if it was.
    pub shortened_to: Option<u32>,
}

/// The newest release of `platform` available on `day`: not a BSI (those come as their own
/// rollouts), with at least one build the feed names and offers that day. Releases come newest
/// first within a platform, as [`updraft_feed::releases::releases`] orders them.
pub fn newest(
    releases: &[FeedRelease],
    platform: Platform,
    day: NaiveDate,
) -> Option<&FeedRelease> {
    releases.iter().find(|release| {
        release.platform == platform
            && !release.is_bsi()
            && release
                .builds
                .iter()
                .any(|b| b.build.is_some() && b.window.contains(day))
    })
}

impl ReleasePolicy {
    /// The rollout this policy asks for on `today`, if any: the platform's newest release, when
    /// it was posted on or after `since` and `handled` does not know it yet (drafted, started or
    /// dismissed before). `exploited` says whether a release fixes an actively exploited
    /// vulnerability (SOFA's word, where it agrees with the lookup service).
    pub fn due<'a>(
        &self,
        releases: &'a [FeedRelease],
        plan: &RingPlan,
        today: NaiveDate,
        handled: impl Fn(&FeedRelease) -> bool,
        exploited: impl Fn(&FeedRelease) -> bool,
    ) -> Option<Proposal<'a>> {
        let release = newest(releases, self.platform, today)?;
        let posted = release.window.posting_date;
        if posted < self.since || handled(release) {
            return None;
        }
        let shortened_to = self.exploited_percent.filter(|_| exploited(release));
        let (plan, delay) = match shortened_to {
            Some(percent) => (
                plan.shortened(percent),
                (self.base_delay_days * percent.min(100)).div_ceil(100),
            ),
            None => (plan.clone(), self.base_delay_days),
        };
        let base = (posted + Duration::days(i64::from(delay))).max(today);
        Some(Proposal {
            release,
            base,
            plan,
            shortened_to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rings::{Gate, Membership, Ring, Weekends};
    use chrono::NaiveTime;
    use updraft_feed::LookupResponse;

    fn capture() -> Vec<FeedRelease> {
        let bytes = include_bytes!("../../../tests/fixtures/gdmf/pmv_2026-04-11_raw.json");
        updraft_feed::releases::releases(&LookupResponse::parse(bytes).unwrap())
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn three_rings() -> RingPlan {
        let ring = |name: &str, membership, offset_days| Ring {
            name: name.into(),
            membership,
            offset_days,
            time_of_day: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
        };
        RingPlan {
            rings: vec![
                ring("IT", Membership::Share(10), 0),
                ring("Pilot", Membership::Share(20), 3),
                ring("Everyone", Membership::Rest, 7),
            ],
            weekends: Weekends::Allowed,
            after_hours: None,
            gate: Gate::default(),
        }
    }

    fn policy(action: PolicyAction) -> ReleasePolicy {
        ReleasePolicy {
            platform: Platform::MacOs,
            plan: "standard".into(),
            base_delay_days: 2,
            action,
            exploited_percent: Some(50),
            since: day("2026-01-01"),
        }
    }

    #[test]
    fn the_newest_release_of_the_day_is_proposed_with_its_base_date_after_posting() {
        let releases = capture();
        let plan = three_rings();
        // On 2026-04-08 the newest macOS was 26.4 (posted 2026-03-24); 26.4.1 came on 04-09.
        let before = policy(PolicyAction::Draft)
            .due(&releases, &plan, day("2026-04-08"), |_| false, |_| false)
            .unwrap();
        assert_eq!(before.release.product_version, "26.4");
        // Posted 03-24 plus two days is past: the base is today, so no deadline is born late.
        assert_eq!(before.base, day("2026-04-08"));

        let after = policy(PolicyAction::Draft)
            .due(&releases, &plan, day("2026-04-09"), |_| false, |_| false)
            .unwrap();
        assert_eq!(after.release.product_version, "26.4.1");
        assert_eq!(after.base, day("2026-04-11"));
        assert_eq!(after.plan, plan);
        assert_eq!(after.shortened_to, None);
    }

    #[test]
    fn a_release_already_handled_or_posted_before_the_policy_is_left_alone() {
        let releases = capture();
        let plan = three_rings();
        let handled = |r: &FeedRelease| r.product_version == "26.4.1";
        assert_eq!(
            policy(PolicyAction::Start)
                .due(&releases, &plan, day("2026-04-10"), handled, |_| false),
            None,
            "a handled release is never proposed again, and an older one does not take its place"
        );
        let late = ReleasePolicy {
            since: day("2026-04-10"),
            ..policy(PolicyAction::Start)
        };
        assert_eq!(
            late.due(&releases, &plan, day("2026-04-10"), |_| false, |_| false),
            None
        );
    }

    #[test]
    fn an_exploited_vulnerability_halves_the_offsets_and_the_delay() {
        let releases = capture();
        let plan = three_rings();
        let proposal = policy(PolicyAction::Draft)
            .due(&releases, &plan, day("2026-04-09"), |_| false, |_| true)
            .unwrap();
        assert_eq!(proposal.shortened_to, Some(50));
        let offsets: Vec<u32> = proposal.plan.rings.iter().map(|r| r.offset_days).collect();
        assert_eq!(offsets, [0, 2, 4]);
        assert_eq!(proposal.base, day("2026-04-10"));

        let unshortened = ReleasePolicy {
            exploited_percent: None,
            ..policy(PolicyAction::Draft)
        };
        let proposal = unshortened
            .due(&releases, &plan, day("2026-04-09"), |_| false, |_| true)
            .unwrap();
        assert_eq!(proposal.plan, plan);
    }

    #[test]
    fn only_the_policys_platform_and_no_bsi_is_proposed() {
        let releases = capture();
        let ios = ReleasePolicy {
            platform: Platform::Ios,
            ..policy(PolicyAction::Draft)
        };
        let proposal = ios
            .due(
                &releases,
                &three_rings(),
                day("2026-04-09"),
                |_| false,
                |_| false,
            )
            .unwrap();
        assert_eq!(proposal.release.platform, Platform::Ios);
        assert_eq!(proposal.release.product_version, "26.4.1");
        assert!(newest(&releases, Platform::MacOs, day("2026-04-09")).is_some_and(|r| !r.is_bsi()));
    }
}
