//! The prompts a user is expected to see before an enforced deadline (Apple's phase 4). No
//! protocol traffic reports them, so the timeline shows them as expected, never as observed.
//!
//! Apple does not document the cadence. What Mac admins observe on macOS 14 and later (Fleet's
//! and Primo's documentation, `../shared/reference/release-feeds.md`): a notice once a day, hourly
//! within the last 24 hours, then at 30 and at 10 minutes before the deadline. iOS and iPadOS
//! show theirs once the deadline has passed, until the update is installed.

use chrono::{Duration, NaiveDateTime};
use updraft_feed::Platform;

/// Which stretch of the schedule a prompt belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Once a day, at the deadline's time of day.
    Daily,
    /// Every hour within the last 24 hours.
    Hourly,
    /// 30 and 10 minutes before.
    LastHour,
    /// At the deadline (iOS, iPadOS, visionOS).
    AtDeadline,
}

/// One prompt, on the device's own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedPrompt {
    /// When, in the device's local time (as the deadline is).
    pub at: NaiveDateTime,
    /// Its stretch of the schedule.
    pub cadence: Cadence,
}

/// The prompts expected between `assigned` (when the device took the declaration) and
/// `deadline`, both on the device's clock, oldest first.
pub fn expected_prompts(
    platform: Platform,
    assigned: NaiveDateTime,
    deadline: NaiveDateTime,
) -> Vec<ExpectedPrompt> {
    if platform != Platform::MacOs {
        return vec![ExpectedPrompt {
            at: deadline,
            cadence: Cadence::AtDeadline,
        }];
    }
    let mut prompts = Vec::new();
    let mut push = |at: NaiveDateTime, cadence| {
        if at >= assigned && at < deadline {
            prompts.push(ExpectedPrompt { at, cadence });
        }
    };
    let days = (deadline - assigned).num_days();
    for day in (2..=days).rev() {
        push(deadline - Duration::days(day), Cadence::Daily);
    }
    for hour in (1..=24).rev() {
        push(deadline - Duration::hours(hour), Cadence::Hourly);
    }
    push(deadline - Duration::minutes(30), Cadence::LastHour);
    push(deadline - Duration::minutes(10), Cadence::LastHour);
    prompts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        text.parse().unwrap()
    }

    #[test]
    fn a_mac_is_prompted_daily_then_hourly_then_at_30_and_10_minutes() {
        let prompts = expected_prompts(
            Platform::MacOs,
            at("2026-12-03T09:30:00"),
            at("2026-12-07T17:00:00"),
        );
        let daily: Vec<_> = prompts
            .iter()
            .filter(|p| p.cadence == Cadence::Daily)
            .map(|p| p.at)
            .collect();
        assert_eq!(
            daily,
            [
                at("2026-12-03T17:00:00"),
                at("2026-12-04T17:00:00"),
                at("2026-12-05T17:00:00")
            ],
            "each day at the deadline's hour from the first after the assignment, until the hourly stretch"
        );
        let hourly: Vec<_> = prompts
            .iter()
            .filter(|p| p.cadence == Cadence::Hourly)
            .collect();
        assert_eq!(hourly.len(), 24);
        assert_eq!(hourly[0].at, at("2026-12-06T17:00:00"));
        assert_eq!(hourly[23].at, at("2026-12-07T16:00:00"));
        let last: Vec<_> = prompts.iter().rev().take(2).map(|p| p.at).collect();
        assert_eq!(last, [at("2026-12-07T16:50:00"), at("2026-12-07T16:30:00")]);
        assert!(
            prompts.windows(2).all(|w| w[0].at < w[1].at),
            "oldest first"
        );
    }

    #[test]
    fn nothing_is_expected_before_the_device_took_the_declaration() {
        let prompts = expected_prompts(
            Platform::MacOs,
            at("2026-12-07T14:05:00"),
            at("2026-12-07T17:00:00"),
        );
        let times: Vec<_> = prompts
            .iter()
            .map(|p| p.at.format("%H:%M").to_string())
            .collect();
        assert_eq!(times, ["15:00", "16:00", "16:30", "16:50"]);
    }

    #[test]
    fn an_iphone_is_prompted_at_its_deadline() {
        let deadline = at("2026-12-07T17:00:00");
        assert_eq!(
            expected_prompts(Platform::Ios, at("2026-12-01T00:00:00"), deadline),
            [ExpectedPrompt {
                at: deadline,
                cadence: Cadence::AtDeadline
            }]
        );
    }
}
