//! The console's runtime, the same for the lab and a real server and for every shell (the
//! desktop, a headless process): when to follow the server (every 30 s), move the lab's clock,
//! poll Apple's lookup service and SOFA (every 6 hours on a real server), and which events a shell shows
//! (the fleet changed, desktop notices, the alert count, whether the last sync failed). The shell
//! forwards events and decides nothing.
//!
//! Time is injected: cadences run on a [`SharedClock`], so tests drive them with a manual one.
#![deny(missing_docs)]

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::sync::Arc;

use updraft_app::Session;
use updraft_app::notices::Notice;
use updraft_clock::SharedClock;
use updraft_feed::LookupResponse;
use updraft_feed::sofa::SofaFeed;

/// How often things happen.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// Between two reads of a real server's changes.
    pub server_refresh: Duration,
    /// Between two polls of Apple's lookup service (Apple updates it a few times a week; an
    /// unchanged answer costs nothing with the saved etag).
    pub feed_poll: Duration,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            server_refresh: Duration::seconds(30),
            feed_poll: Duration::hours(6),
        }
    }
}

/// Where newer lookup-service answers come from (the desktop: Apple's service into a saved copy).
#[async_trait]
pub trait FeedSource: Send + Sync {
    /// A newer answer, if there is one; an error leaves the releases the console knows.
    async fn poll(&self) -> anyhow::Result<Option<LookupResponse>>;

    /// Newer SOFA feeds (every platform's, when any changed); an error leaves the ones the
    /// console knows. Polled with the lookup service.
    async fn poll_sofa(&self) -> anyhow::Result<Option<Vec<SofaFeed>>> {
        Ok(None)
    }
}

/// Whether the console's view of the server is current.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct SyncHealth {
    /// The last sync that worked, RFC 3339.
    pub last_good: Option<String>,
    /// The last sync that failed, RFC 3339, and why; cleared by the next good one.
    pub last_failure: Option<SyncFailure>,
}

/// A failed sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct SyncFailure {
    /// When, RFC 3339.
    pub at: String,
    /// Why, as the backend said it.
    pub reason: String,
}

impl SyncHealth {
    /// Whether what the console shows may be out of date.
    pub fn is_stale(&self) -> bool {
        self.last_failure.is_some()
    }
}

/// What a shell shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The fleet's data changed; the time the console stands at (simulated in the lab).
    FleetChanged(String),
    /// A desktop notice (grouped alerts).
    Notice(Notice),
    /// Alerts raised since the runtime started.
    AlertCount(u64),
    /// The sync's health changed (it failed, or it recovered).
    Health(SyncHealth),
}

/// The runtime of one session.
pub struct Runtime {
    session: Arc<Session>,
    wall: SharedClock,
    cadence: Cadence,
    feed: Option<Box<dyn FeedSource>>,
    last_refresh: Option<DateTime<Utc>>,
    last_feed_poll: Option<DateTime<Utc>>,
    last_alert: i64,
    alerts_seen: u64,
    health: SyncHealth,
}

impl Runtime {
    /// A runtime for `session`, its cadences on `wall`; `feed` for a real server (the lab's
    /// releases are its capture's).
    pub async fn new(
        session: Arc<Session>,
        wall: SharedClock,
        cadence: Cadence,
        feed: Option<Box<dyn FeedSource>>,
    ) -> Self {
        let last_alert = session.last_alert_id().await.unwrap_or(0);
        Self {
            session,
            wall,
            cadence,
            feed,
            last_refresh: None,
            last_feed_poll: None,
            last_alert,
            alerts_seen: 0,
            health: SyncHealth::default(),
        }
    }

    /// The session.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Whether the console's view is current.
    pub fn health(&self) -> &SyncHealth {
        &self.health
    }

    /// One turn: polls the lookup service and follows the server when their time has come, or
    /// moves the lab's clock by `lab_minutes` (0: stopped); then turns new alerts into notices.
    pub async fn turn(&mut self, lab_minutes: i64) -> Vec<Event> {
        let now = self.wall.now();
        let mut events = Vec::new();
        let due =
            |last: Option<DateTime<Utc>>, every: Duration| last.is_none_or(|l| now - l >= every);
        if let Some(feed) = &self.feed
            && due(self.last_feed_poll, self.cadence.feed_poll)
        {
            self.last_feed_poll = Some(now);
            match feed.poll().await {
                // New releases arrive as alerts, shown below with the rest.
                Ok(Some(response)) => {
                    if let Err(error) = self.session.update_feed(&response).await {
                        tracing::warn!("taking the lookup service's answer: {error}");
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!("polling the lookup service: {error:#}"),
            }
            match feed.poll_sofa().await {
                Ok(Some(feeds)) => {
                    if let Err(error) = self.session.update_sofa(feeds).await {
                        tracing::warn!("taking SOFA's feeds: {error}");
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!("polling SOFA: {error:#}"),
            }
        }
        if !self.session.is_lab() {
            if due(self.last_refresh, self.cadence.server_refresh) {
                self.last_refresh = Some(now);
                let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                match self.session.refresh().await {
                    Ok(()) => {
                        let recovered = self.health.last_failure.take().is_some();
                        self.health.last_good = Some(at);
                        events.push(Event::FleetChanged(self.session.now().to_rfc3339()));
                        if recovered {
                            tracing::info!("following the DDM server again");
                            events.push(Event::Health(self.health.clone()));
                        }
                    }
                    Err(error) => {
                        tracing::warn!("following the DDM server: {error}");
                        self.health.last_failure = Some(SyncFailure {
                            at,
                            reason: error.to_string(),
                        });
                        events.push(Event::Health(self.health.clone()));
                    }
                }
            }
        } else if lab_minutes > 0 {
            match self.session.advance(lab_minutes).await {
                Ok(now) => events.push(Event::FleetChanged(now.to_rfc3339())),
                Err(error) => tracing::error!("the lab's clock stopped: {error}"),
            }
        }
        match self.session.notices_after(self.last_alert).await {
            Ok((notices, last)) => {
                if last > self.last_alert {
                    self.alerts_seen += (last - self.last_alert) as u64;
                    events.push(Event::AlertCount(self.alerts_seen));
                }
                self.last_alert = last;
                events.extend(notices.into_iter().map(Event::Notice));
            }
            Err(error) => tracing::error!("reading alerts: {error}"),
        }
        events
    }
}
