//! One conformance suite per port, run against every server Updraft supports (`updraft serve` in
//! CI, NanoHUB when a binary is given) and against a deliberately wrong one, to show each check
//! can fail. Each check returns what broke instead of panicking, so a caller can assert either
//! way.
//!
//! `reader` is the server's own KMFDDM API, used to see what a port did; `run` makes the names
//! unique, so a suite can run again on the same server.

use std::collections::BTreeMap;

use updraft_ddm::{ActivationSimple, Declaration};

use crate::{
    Assignment, AssignmentStore, DeclarationStore, KmfddmClient, Notifier, PushResult, StatusSource,
};

/// What a suite found wrong.
pub type Failure = String;

fn check(condition: bool, what: impl FnOnce() -> String) -> Result<(), Failure> {
    if condition { Ok(()) } else { Err(what()) }
}

fn activation(identifier: &str, configuration: &str) -> Result<Declaration, Failure> {
    Declaration::new(
        identifier,
        &ActivationSimple {
            standard_configurations: vec![configuration.into()],
            predicate: None,
        },
    )
    .map_err(|e| e.to_string())
}

/// Declarations and sets: a new declaration is a change and the same one again is not; so for
/// set membership; a missing declaration cannot join a set or be touched (404 is an error, not
/// success); touching changes the token devices see.
pub async fn declaration_store(
    store: &dyn DeclarationStore,
    reader: &KmfddmClient,
    run: &str,
) -> Result<(), Failure> {
    let id = format!("com.updraft.conformance.{run}.act");
    let set = format!("com.updraft.conformance.{run}.set");
    let first = activation(&id, "a")?;
    check(
        store
            .put_declaration(&first)
            .await
            .map_err(|e| e.to_string())?,
        || "a new declaration was not reported as a change".into(),
    )?;
    check(
        !store
            .put_declaration(&first)
            .await
            .map_err(|e| e.to_string())?,
        || "the same declaration again was reported as a change".into(),
    )?;
    check(
        store
            .put_declaration(&activation(&id, "b")?)
            .await
            .map_err(|e| e.to_string())?,
        || "a changed payload was not reported as a change".into(),
    )?;
    check(
        store
            .add_to_set(&set, &id)
            .await
            .map_err(|e| e.to_string())?,
        || "joining a set was not reported as a change".into(),
    )?;
    check(
        !store
            .add_to_set(&set, &id)
            .await
            .map_err(|e| e.to_string())?,
        || "joining the same set again was reported as a change".into(),
    )?;
    let missing = format!("com.updraft.conformance.{run}.missing");
    check(store.add_to_set(&set, &missing).await.is_err(), || {
        "a declaration that does not exist joined a set".into()
    })?;
    check(store.touch(&missing).await.is_err(), || {
        "touching a declaration that does not exist succeeded (a 404 taken as success?)".into()
    })?;
    let before = reader.declaration(&id).await.map_err(|e| e.to_string())?;
    store.touch(&id).await.map_err(|e| e.to_string())?;
    let after = reader.declaration(&id).await.map_err(|e| e.to_string())?;
    check(
        before.is_some()
            && before.as_ref().map(|d| &d.server_token) != after.as_ref().map(|d| &d.server_token),
        || "touching did not change the declaration's ServerToken".into(),
    )
}

/// Assignments: a change is counted once, read back as stored, and undone by unassigning; when
/// the server cannot push (`can_push` false), every changed enrollment is reported with its push
/// failed, never as pushed.
pub async fn assignment_store(
    store: &dyn AssignmentStore,
    reader: &KmfddmClient,
    run: &str,
    enrollment_id: &str,
    can_push: bool,
) -> Result<(), Failure> {
    let set = format!("com.updraft.conformance.{run}.set");
    let pair = [Assignment {
        enrollment_id: enrollment_id.into(),
        set: set.clone(),
    }];
    let assigned = store.assign(&pair).await.map_err(|e| e.to_string())?;
    check(assigned.changed == 1, || {
        format!("assigning counted {} changes, not 1", assigned.changed)
    })?;
    check(
        can_push || assigned.push_failed.contains_key(enrollment_id),
        || "a server that cannot push reported the assignment's push as sent".into(),
    )?;
    check(
        reader
            .enrollment_sets(enrollment_id)
            .await
            .map_err(|e| e.to_string())?
            .contains(&set),
        || "the assignment is not on the server".into(),
    )?;
    let again = store.assign(&pair).await.map_err(|e| e.to_string())?;
    check(again.changed == 0, || {
        format!("assigning again counted {} changes", again.changed)
    })?;
    let removed = store.unassign(&pair).await.map_err(|e| e.to_string())?;
    check(removed.changed == 1, || {
        format!("unassigning counted {} changes, not 1", removed.changed)
    })?;
    check(
        !reader
            .enrollment_sets(enrollment_id)
            .await
            .map_err(|e| e.to_string())?
            .contains(&set),
        || "the unassigned set is still on the server".into(),
    )?;
    let again = store.unassign(&pair).await.map_err(|e| e.to_string())?;
    check(again.changed == 0, || {
        format!("unassigning again counted {} changes", again.changed)
    })
}

/// Pushes: one result per enrollment asked; a server that cannot push says so for each, with a
/// reason an admin can read.
pub async fn notifier(
    notifier: &dyn Notifier,
    enrollment_ids: &[String],
    can_push: bool,
) -> Result<(), Failure> {
    let results: BTreeMap<String, PushResult> = notifier
        .push(enrollment_ids)
        .await
        .map_err(|e| e.to_string())?;
    for id in enrollment_ids {
        match (results.get(id), can_push) {
            (None, _) => return Err(format!("no push result for {id}")),
            (Some(PushResult::Sent), false) => {
                return Err(format!(
                    "{id}: a server that cannot push reported a push as sent"
                ));
            }
            (Some(PushResult::Failed(reason)), _) if reason.trim().is_empty() => {
                return Err(format!("{id}: a failed push without a reason"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Status: after `report` makes the device send `first` and then `second` (an increment), the
/// feed lists the device after the cursor it had, with the increment merged over the first
/// report, and then nothing new.
pub async fn status_source<F, Fut>(
    source: &dyn StatusSource,
    enrollment_id: &str,
    mut report: F,
) -> Result<(), Failure>
where
    F: FnMut(&'static str) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let start = drain(source, 0).await?;
    report(r#"{"StatusItems":{"device":{"operating-system":{"version":"26.3","build-version":"25D125"}},"softwareupdate":{"install-state":"downloading"}},"Errors":[]}"#).await?;
    report(r#"{"StatusItems":{"softwareupdate":{"install-state":"prepared"}},"Errors":[]}"#)
        .await?;
    let (cursor, seen) = collect(source, start, enrollment_id).await?;
    let status =
        seen.ok_or_else(|| format!("{enrollment_id} is not in the feed after its reports"))?;
    let merged = updraft_ddm::StatusReport::parse(status.as_bytes()).map_err(|e| e.to_string())?;
    let mut device = updraft_ddm::DeviceStatus::default();
    device.apply(&merged);
    check(
        device.install_state() == Some(&updraft_ddm::InstallState::Prepared),
        || format!("the newest install-state is not merged: {status}"),
    )?;
    check(device.os_version() == Some("26.3"), || {
        format!("the first report's OS version is lost under the increment: {status}")
    })?;
    let (_, again) = collect(source, cursor, enrollment_id).await?;
    check(again.is_none(), || {
        "the feed lists the device again with nothing new".into()
    })
}

/// Reads the feed to its end from `after`; the cursor at the end.
async fn drain(source: &dyn StatusSource, mut after: i64) -> Result<i64, Failure> {
    loop {
        let page = source
            .status_changes(after, 500)
            .await
            .map_err(|e| e.to_string())?;
        if page.changes.is_empty() {
            return Ok(after);
        }
        after = page.next;
    }
}

/// Reads the feed to its end from `after`; the cursor, and the newest status of one enrollment.
async fn collect(
    source: &dyn StatusSource,
    mut after: i64,
    enrollment_id: &str,
) -> Result<(i64, Option<String>), Failure> {
    let mut seen = None;
    loop {
        let page = source
            .status_changes(after, 500)
            .await
            .map_err(|e| e.to_string())?;
        if page.changes.is_empty() {
            return Ok((after, seen));
        }
        for change in &page.changes {
            if change.enrollment.id == enrollment_id
                && let Some(status) = &change.status
            {
                seen = Some(status.get().to_owned());
            }
        }
        after = page.next;
    }
}
