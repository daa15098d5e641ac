//! Saved ring plans, release policies, the rollouts the policies drafted, and the timeline
//! summaries the compliance report reads.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use std::collections::{BTreeSet, HashMap};

use updraft_engine::policy::ReleasePolicy;
use updraft_engine::rings::{
    AfterHours, DeviceFilter, Gate, Membership, Pattern, Pin, Ring, RingPlan,
};
use updraft_engine::{DraftState, EventKind};
use updraft_feed::Platform;

use crate::{Context, Store, StoreError, stored, ts};

/// A rollout a policy drafted (or started), once per release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// Its id.
    pub id: i64,
    /// The release's platform.
    pub platform: Platform,
    /// The release's version.
    pub product_version: String,
    /// `(a)` for a BSI.
    pub product_version_extra: Option<String>,
    /// The saved ring plan it takes.
    pub plan: String,
    /// The rollout's base date.
    pub base_date: NaiveDate,
    /// The percent the plan's offsets were shortened to, for an exploited vulnerability.
    pub shortened_to: Option<u32>,
    /// The actively exploited CVEs the release fixes.
    pub exploited: Vec<String>,
    /// Waiting, started or set aside.
    pub state: DraftState,
    /// When the policy drafted it.
    pub created_at: DateTime<Utc>,
}

/// A draft before it is recorded.
#[derive(Debug, Clone, Copy)]
pub struct NewDraft<'a> {
    /// The release's platform.
    pub platform: Platform,
    /// The release's version.
    pub product_version: &'a str,
    /// `(a)` for a BSI.
    pub product_version_extra: Option<&'a str>,
    /// The saved ring plan.
    pub plan: &'a str,
    /// The base date.
    pub base_date: NaiveDate,
    /// The shortening, if any.
    pub shortened_to: Option<u32>,
    /// The actively exploited CVEs.
    pub exploited: &'a [String],
    /// Drafted, or started at once.
    pub state: DraftState,
}

const TIME: &str = "%H:%M:%S";

fn corrupt(what: String, text: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: format!("{text:?}: {error}"),
    }
}

fn time_of(text: &str, what: impl FnOnce() -> String) -> Result<NaiveTime, StoreError> {
    NaiveTime::parse_from_str(text, TIME).map_err(|e| corrupt(what(), text, e))
}

fn date_of(text: &str, what: impl FnOnce() -> String) -> Result<NaiveDate, StoreError> {
    text.parse().map_err(|e| corrupt(what(), text, e))
}

fn platform_of(text: &str, what: impl FnOnce() -> String) -> Result<Platform, StoreError> {
    text.parse().map_err(|e| corrupt(what(), text, e))
}

fn percent_of(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

/// A ring's membership as its row says: the kind and the columns that kind uses.
/// The five `filter_*` columns' values: platform, then the model, OS, name and serial patterns
/// as typed. Rings and pinned groups store a filter alike.
fn filter_columns(filter: Option<&DeviceFilter>) -> [Option<String>; 5] {
    let pattern = |get: fn(&DeviceFilter) -> &Option<Pattern>| {
        filter.and_then(|f| get(f).as_ref().map(|p| p.as_str().to_owned()))
    };
    [
        filter
            .and_then(|f| f.platform)
            .map(|p| p.as_str().to_owned()),
        pattern(|f| &f.model),
        pattern(|f| &f.os),
        pattern(|f| &f.name),
        pattern(|f| &f.serial),
    ]
}

/// The filter a row's `filter_*` columns hold.
fn filter_of_row(
    row: &SqliteRow,
    what: impl FnOnce() -> String,
) -> Result<DeviceFilter, StoreError> {
    let pattern = |column: &str| {
        row.get::<Option<String>, _>(column)
            .map(|p| Pattern::new(&p))
    };
    Ok(DeviceFilter {
        platform: match row.get::<Option<String>, _>("filter_platform") {
            Some(text) => Some(platform_of(&text, what)?),
            None => None,
        },
        model: pattern("filter_model"),
        os: pattern("filter_os"),
        name: pattern("filter_name"),
        serial: pattern("filter_serial"),
    })
}

fn membership_of(
    row: &SqliteRow,
    devices: BTreeSet<String>,
    what: impl Fn() -> String,
) -> Result<Membership, StoreError> {
    let kind: String = row.get("membership");
    Ok(match kind.as_str() {
        "devices" => Membership::Devices(devices),
        "filter" => Membership::Filter(filter_of_row(row, &what)?),
        "share" => {
            let percent: Option<i64> = row.get("share_percent");
            Membership::Share(
                percent
                    .and_then(|p| u8::try_from(p).ok())
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| corrupt(what(), &format!("{percent:?}"), "not a share"))?,
            )
        }
        "rest" => Membership::Rest,
        other => return Err(corrupt(what(), other, "not a kind of ring membership")),
    })
}

async fn insert_ring(
    tx: &mut Transaction<'_, Sqlite>,
    plan: &str,
    position: i64,
    ring: &Ring,
) -> Result<(), StoreError> {
    let (kind, share, filter, devices) = match &ring.membership {
        Membership::Devices(ids) => ("devices", None, None, Some(ids)),
        Membership::Filter(filter) => ("filter", None, Some(filter), None),
        Membership::Share(percent) => ("share", Some(i64::from(*percent)), None, None),
        Membership::Rest => ("rest", None, None, None),
    };
    let [platform, model, os, name, serial] = filter_columns(filter);
    sqlx::query(
        "INSERT INTO ring_plan_rings (plan, position, name, membership, share_percent,
            filter_platform, filter_model, filter_os, filter_name, filter_serial, offset_days,
            time_of_day) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(plan)
    .bind(position)
    .bind(&ring.name)
    .bind(kind)
    .bind(share)
    .bind(platform)
    .bind(model)
    .bind(os)
    .bind(name)
    .bind(serial)
    .bind(i64::from(ring.offset_days))
    .bind(ring.time_of_day.format(TIME).to_string())
    .execute(&mut **tx)
    .await
    .context("saving a ring")?;
    for id in devices.into_iter().flatten() {
        sqlx::query(
            "INSERT INTO ring_plan_devices (plan, position, enrollment_id) VALUES (?, ?, ?)",
        )
        .bind(plan)
        .bind(position)
        .bind(id)
        .execute(&mut **tx)
        .await
        .context("saving a ring's devices")?;
    }
    Ok(())
}

impl Store {
    /// Saves a ring plan under its name, replacing the plan of that name.
    pub async fn put_ring_plan(&self, name: &str, plan: &RingPlan) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.context("saving a ring plan")?;
        sqlx::query(
            "INSERT INTO ring_plans (name, weekends, after_hours_start, after_hours_end,
                gate_min_updated_percent, gate_max_failed_percent, gate_max_failures_per_hour)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET weekends = excluded.weekends,
                after_hours_start = excluded.after_hours_start,
                after_hours_end = excluded.after_hours_end,
                gate_min_updated_percent = excluded.gate_min_updated_percent,
                gate_max_failed_percent = excluded.gate_max_failed_percent,
                gate_max_failures_per_hour = excluded.gate_max_failures_per_hour",
        )
        .bind(name)
        .bind(plan.weekends.as_str())
        .bind(plan.after_hours.map(|w| w.start.format(TIME).to_string()))
        .bind(plan.after_hours.map(|w| w.end.format(TIME).to_string()))
        .bind(plan.gate.min_updated_percent)
        .bind(plan.gate.max_failed_percent)
        .bind(plan.gate.max_failures_per_hour.map(|n| n as i64))
        .execute(&mut *tx)
        .await
        .context("saving a ring plan")?;
        sqlx::query("DELETE FROM ring_plan_rings WHERE plan = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .context("replacing a ring plan's rings")?;
        for (position, ring) in plan.rings.iter().enumerate() {
            insert_ring(&mut tx, name, position as i64, ring).await?;
        }
        tx.commit().await.context("saving a ring plan")?;
        self.checkpoint_soon();
        Ok(())
    }

    /// Every saved ring plan, by name.
    pub async fn ring_plans(&self) -> Result<Vec<(String, RingPlan)>, StoreError> {
        let plans = sqlx::query("SELECT * FROM ring_plans ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .context("reading ring plans")?;
        let rings = sqlx::query("SELECT * FROM ring_plan_rings ORDER BY plan, position")
            .fetch_all(&self.pool)
            .await
            .context("reading ring plans' rings")?;
        let devices = sqlx::query(
            "SELECT plan, position, enrollment_id FROM ring_plan_devices
             ORDER BY plan, position, enrollment_id",
        )
        .fetch_all(&self.pool)
        .await
        .context("reading ring plans' devices")?;
        let mut out = Vec::with_capacity(plans.len());
        for row in plans {
            let name: String = row.get("name");
            let what = |field: &str| format!("ring plan {name:?}'s {field}");
            let after_hours = match (
                row.get::<Option<String>, _>("after_hours_start"),
                row.get::<Option<String>, _>("after_hours_end"),
            ) {
                (Some(start), Some(end)) => Some(AfterHours {
                    start: time_of(&start, || what("after-hours start"))?,
                    end: time_of(&end, || what("after-hours end"))?,
                }),
                _ => None,
            };
            let mut plan = RingPlan {
                rings: Vec::new(),
                weekends: stored(&row.get::<String, _>("weekends"), || what("weekends"))?,
                after_hours,
                gate: Gate {
                    min_updated_percent: row.get("gate_min_updated_percent"),
                    max_failed_percent: row.get("gate_max_failed_percent"),
                    max_failures_per_hour: row
                        .get::<Option<i64>, _>("gate_max_failures_per_hour")
                        .and_then(|n| usize::try_from(n).ok()),
                },
            };
            for ring in rings.iter().filter(|r| r.get::<String, _>("plan") == name) {
                let position: i64 = ring.get("position");
                let ring_name: String = ring.get("name");
                let what = || format!("ring {ring_name:?} of plan {name:?}");
                let ids = devices
                    .iter()
                    .filter(|d| {
                        d.get::<String, _>("plan") == name
                            && d.get::<i64, _>("position") == position
                    })
                    .map(|d| d.get::<String, _>("enrollment_id"))
                    .collect();
                plan.rings.push(Ring {
                    membership: membership_of(ring, ids, what)?,
                    offset_days: u32::try_from(ring.get::<i64, _>("offset_days"))
                        .map_err(|e| corrupt(what(), "offset_days", e))?,
                    time_of_day: time_of(&ring.get::<String, _>("time_of_day"), what)?,
                    name: ring_name.clone(),
                });
            }
            out.push((name, plan));
        }
        Ok(out)
    }

    /// The saved ring plan of that name.
    pub async fn ring_plan(&self, name: &str) -> Result<Option<RingPlan>, StoreError> {
        Ok(self
            .ring_plans()
            .await?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, plan)| plan))
    }

    /// Deletes a saved ring plan; whether there was one. A plan a policy uses is kept, and the
    /// error says which policy.
    pub async fn delete_ring_plan(&self, name: &str) -> Result<bool, StoreError> {
        if let Some(policy) = self.policies().await?.iter().find(|p| p.plan == name) {
            return Err(StoreError::InUse(format!(
                "ring plan {name:?} is used by the {} release policy: change or delete the policy first",
                policy.platform
            )));
        }
        let done = sqlx::query("DELETE FROM ring_plans WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .context("deleting a ring plan")?;
        self.checkpoint_soon();
        Ok(done.rows_affected() > 0)
    }

    /// Saves a platform's release policy, replacing the one it had. Its plan must be saved.
    pub async fn put_policy(&self, policy: &ReleasePolicy) -> Result<(), StoreError> {
        if self.ring_plan(&policy.plan).await?.is_none() {
            return Err(StoreError::InUse(format!(
                "the {} policy names ring plan {:?}, which is not saved: save the plan first",
                policy.platform, policy.plan
            )));
        }
        sqlx::query(
            "INSERT INTO release_policies (platform, plan, base_delay_days, action,
                exploited_percent, since) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT(platform) DO UPDATE SET plan = excluded.plan,
                base_delay_days = excluded.base_delay_days, action = excluded.action,
                exploited_percent = excluded.exploited_percent, since = excluded.since",
        )
        .bind(policy.platform.as_str())
        .bind(&policy.plan)
        .bind(i64::from(policy.base_delay_days))
        .bind(policy.action.as_str())
        .bind(policy.exploited_percent.map(i64::from))
        .bind(policy.since.to_string())
        .execute(&self.pool)
        .await
        .context("saving a release policy")?;
        self.checkpoint_soon();
        Ok(())
    }

    /// Deletes a platform's release policy; whether it had one.
    pub async fn delete_policy(&self, platform: Platform) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM release_policies WHERE platform = ?")
            .bind(platform.as_str())
            .execute(&self.pool)
            .await
            .context("deleting a release policy")?;
        self.checkpoint_soon();
        Ok(done.rows_affected() > 0)
    }

    /// Every release policy, by platform.
    pub async fn policies(&self) -> Result<Vec<ReleasePolicy>, StoreError> {
        let rows = sqlx::query("SELECT * FROM release_policies ORDER BY platform")
            .fetch_all(&self.pool)
            .await
            .context("reading release policies")?;
        rows.iter()
            .map(|row| {
                let platform: String = row.get("platform");
                let what = |field: &str| format!("the {platform} release policy's {field}");
                Ok(ReleasePolicy {
                    platform: platform_of(&platform, || what("platform"))?,
                    plan: row.get("plan"),
                    base_delay_days: u32::try_from(row.get::<i64, _>("base_delay_days"))
                        .map_err(|e| corrupt(what("delay"), "base_delay_days", e))?,
                    action: stored(&row.get::<String, _>("action"), || what("action"))?,
                    exploited_percent: percent_of(row.get("exploited_percent")),
                    since: date_of(&row.get::<String, _>("since"), || what("start date"))?,
                })
            })
            .collect()
    }

    /// Records what a policy did with a release, once: the id, or `None` when that release was
    /// already drafted, started or dismissed.
    pub async fn record_draft(
        &self,
        draft: NewDraft<'_>,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let done = sqlx::query(
            "INSERT INTO drafts (platform, product_version, product_version_extra, plan, base_date,
                shortened_to, exploited, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(platform, product_version, product_version_extra) DO NOTHING",
        )
        .bind(draft.platform.as_str())
        .bind(draft.product_version)
        .bind(draft.product_version_extra.unwrap_or_default())
        .bind(draft.plan)
        .bind(draft.base_date.to_string())
        .bind(draft.shortened_to.map(i64::from))
        .bind(draft.exploited.join(","))
        .bind(draft.state.as_str())
        .bind(ts(at))
        .execute(&self.pool)
        .await
        .context("recording a drafted rollout")?;
        self.checkpoint_soon();
        Ok((done.rows_affected() > 0).then(|| done.last_insert_rowid()))
    }

    /// Every draft, newest first.
    pub async fn drafts(&self) -> Result<Vec<Draft>, StoreError> {
        let rows = sqlx::query("SELECT * FROM drafts ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await
            .context("reading drafted rollouts")?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.get("id");
                let what = |field: &str| format!("drafted rollout {id}'s {field}");
                let extra: String = row.get("product_version_extra");
                let exploited: String = row.get("exploited");
                let created_at: String = row.get("created_at");
                Ok(Draft {
                    id,
                    platform: platform_of(&row.get::<String, _>("platform"), || what("platform"))?,
                    product_version: row.get("product_version"),
                    product_version_extra: (!extra.is_empty()).then_some(extra),
                    plan: row.get("plan"),
                    base_date: date_of(&row.get::<String, _>("base_date"), || what("base date"))?,
                    shortened_to: percent_of(row.get("shortened_to")),
                    exploited: exploited
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    state: stored(&row.get::<String, _>("state"), || what("state"))?,
                    created_at: DateTime::parse_from_rfc3339(&created_at)
                        .map_err(|e| corrupt(what("time"), &created_at, e))?
                        .to_utc(),
                })
            })
            .collect()
    }

    /// Saves a pinned group, replacing the one of its name.
    pub async fn put_pin(&self, pin: &Pin) -> Result<(), StoreError> {
        let [platform, model, os, name, serial] = filter_columns(Some(&pin.filter));
        sqlx::query(
            "INSERT INTO pins (name, filter_platform, filter_model, filter_os, filter_name,
                filter_serial, majors_behind) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET filter_platform = excluded.filter_platform,
                filter_model = excluded.filter_model, filter_os = excluded.filter_os,
                filter_name = excluded.filter_name, filter_serial = excluded.filter_serial,
                majors_behind = excluded.majors_behind",
        )
        .bind(&pin.group)
        .bind(platform)
        .bind(model)
        .bind(os)
        .bind(name)
        .bind(serial)
        .bind(i64::from(pin.majors_behind))
        .execute(&self.pool)
        .await
        .context("saving a pinned group")?;
        self.checkpoint_soon();
        Ok(())
    }

    /// Deletes a pinned group; whether there was one.
    pub async fn delete_pin(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM pins WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .context("deleting a pinned group")?;
        self.checkpoint_soon();
        Ok(done.rows_affected() > 0)
    }

    /// Every pinned group, by name.
    pub async fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        let rows = sqlx::query("SELECT * FROM pins ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .context("reading pinned groups")?;
        rows.iter()
            .map(|row| {
                let group: String = row.get("name");
                let what = || format!("pinned group {group:?}");
                Ok(Pin {
                    filter: filter_of_row(row, what)?,
                    majors_behind: u32::try_from(row.get::<i64, _>("majors_behind"))
                        .map_err(|e| corrupt(what(), "majors_behind", e))?,
                    group,
                })
            })
            .collect()
    }

    /// When each device first had a timeline entry of `kind`, in any of `rollouts` (or in any
    /// rollout or none, when `rollouts` is `None`): when it updated, when it enrolled.
    pub async fn first_events(
        &self,
        kind: EventKind,
        rollouts: Option<&[i64]>,
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT enrollment_id, MIN(at) AS first FROM events WHERE kind = ",
        );
        query.push_bind(kind.as_str());
        if let Some(ids) = rollouts {
            if ids.is_empty() {
                return Ok(HashMap::new());
            }
            query.push(" AND rollout_id IN (");
            let mut list = query.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            query.push(")");
        }
        query.push(" GROUP BY enrollment_id");
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .context("reading timelines for the compliance report")?;
        rows.iter()
            .map(|row| {
                let id: String = row.get("enrollment_id");
                let first: String = row.get("first");
                let at = DateTime::parse_from_rfc3339(&first)
                    .map_err(|e| corrupt(format!("a timeline entry of {id}"), &first, e))?
                    .to_utc();
                Ok((id, at))
            })
            .collect()
    }

    /// Marks a draft started or dismissed; whether it was waiting (a draft is decided once).
    pub async fn decide_draft(&self, id: i64, state: DraftState) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE drafts SET state = ? WHERE id = ? AND state = ?")
            .bind(state.as_str())
            .bind(id)
            .bind(DraftState::Drafted.as_str())
            .execute(&self.pool)
            .await
            .context("deciding a drafted rollout")?;
        self.checkpoint_soon();
        Ok(done.rows_affected() > 0)
    }
}
