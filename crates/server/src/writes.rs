//! The writes device requests and the bulk admin calls make. Each runs on the writer's thread
//! (see [`crate::writer`]) inside the transaction of its batch, so a thousand devices checking in
//! at once cost a few commits, not a thousand, and no two connections wait on each other for
//! SQLite's write lock.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};

use updraft_ddm::DeclarationItemsResponse;
use updraft_ddm::checkin::{
    Authenticate, CommandStatus, DeclarativeManagementCommand, DeviceInformationCommand,
    QueryResponses, TokenUpdate,
};

use crate::db::{Context, DbError, assigned_declarations, new_uuid, timestamp};

/// Allocates `count` change numbers; returns the first. The writer is the only writer of
/// enrollments' change numbers, so they commit in the order they are allocated.
pub(crate) fn next_seqs(connection: &Connection, count: i64) -> Result<i64, DbError> {
    let last: i64 = connection
        .prepare_cached("UPDATE counters SET value = value + ?1 WHERE name = 'seq' RETURNING value")
        .and_then(|mut statement| statement.query_row([count], |row| row.get(0)))
        .context("allocating change numbers")?;
    Ok(last - count + 1)
}

/// Records an Authenticate: a (re-)enrollment starts clean, with no sets, no status, no
/// commands and no raw reports.
pub(crate) fn authenticate(
    connection: &Connection,
    message: &Authenticate,
    id: &str,
    now: &str,
) -> Result<(), DbError> {
    let seq = next_seqs(connection, 1)?;
    connection
        .prepare_cached(
            "DELETE FROM status_reports WHERE id IN (
                 SELECT value FROM json_each('[' || (SELECT recent_reports FROM enrollments WHERE id = ?1) || ']'))",
        )
        .and_then(|mut statement| statement.execute([id]))
        .context("clearing a re-enrollment's raw reports")?;
    connection
        .prepare_cached(
            "INSERT INTO enrollments (id, udid, topic, serial_number, product_name, model, model_name, device_name,
                 os_version, build_version, enrolled_at, last_seen_at, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)
             ON CONFLICT(id) DO UPDATE SET udid = excluded.udid, topic = excluded.topic,
                 serial_number = excluded.serial_number, product_name = excluded.product_name,
                 model = excluded.model, model_name = excluded.model_name, device_name = excluded.device_name,
                 os_version = excluded.os_version, build_version = excluded.build_version,
                 enrolled_at = excluded.enrolled_at, last_seen_at = excluded.last_seen_at,
                 push_token = NULL, push_magic = NULL, checked_out_at = NULL, seq = excluded.seq,
                 recent_reports = ''",
        )
        .and_then(|mut statement| {
            statement.execute(rusqlite::params![
                id,
                message.enrollment.udid,
                message.topic,
                message.serial_number,
                message.product_name,
                message.model,
                message.model_name,
                message.device_name,
                message.os_version,
                message.build_version,
                now,
                seq,
            ])
        })
        .context("recording Authenticate")?;
    for table in ["enrollment_sets", "status", "commands"] {
        connection
            .prepare_cached(&format!("DELETE FROM {table} WHERE enrollment_id = ?1"))
            .and_then(|mut statement| statement.execute([id]))
            .context("clearing a re-enrollment")?;
    }
    Ok(())
}

/// Binds `identity` to `device_id` at an Authenticate, unless another device holds it: then
/// nothing is written and that device's id is returned.
pub(crate) fn bind_identity(
    connection: &Connection,
    device_id: &str,
    identity: &crate::identity::Identity,
    now: &str,
) -> Result<Option<String>, DbError> {
    let holder: Option<String> = connection
        .prepare_cached(
            "SELECT device_id FROM identity_bindings WHERE fingerprint = ?1 AND device_id <> ?2 LIMIT 1",
        )
        .and_then(|mut statement| {
            statement
                .query_row([&identity.fingerprint, device_id], |row| row.get(0))
                .optional()
        })
        .context("looking up a certificate's device")?;
    if holder.is_some() {
        return Ok(holder);
    }
    connection
        .prepare_cached(
            "INSERT INTO identity_bindings (device_id, fingerprint, subject, bound_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute([device_id, &identity.fingerprint, &identity.subject, now])
        })
        .context("binding a device's certificate")?;
    Ok(None)
}

/// Records a TokenUpdate. Returns whether it was the enrollment's first.
pub(crate) fn token_update(
    connection: &Connection,
    message: &TokenUpdate,
    id: &str,
    now: &str,
) -> Result<bool, DbError> {
    let seq = next_seqs(connection, 1)?;
    let previous: Option<Option<String>> = connection
        .prepare_cached("SELECT token_updated_at FROM enrollments WHERE id = ?1")
        .and_then(|mut statement| statement.query_row([id], |row| row.get(0)).optional())
        .context("reading the enrollment")?;
    connection
        .prepare_cached(
            "INSERT INTO enrollments (id, udid, topic, push_token, push_magic, token_updated_at, last_seen_at, enrolled_at, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET topic = excluded.topic, push_token = excluded.push_token,
                 push_magic = excluded.push_magic, token_updated_at = excluded.token_updated_at,
                 last_seen_at = excluded.last_seen_at, checked_out_at = NULL, seq = excluded.seq",
        )
        .and_then(|mut statement| {
            statement.execute(rusqlite::params![
                id,
                message.enrollment.udid,
                message.topic,
                message.token,
                message.push_magic,
                now,
                seq,
            ])
        })
        .context("recording TokenUpdate")?;
    Ok(!matches!(previous, Some(Some(_))))
}

/// Records a CheckOut.
pub(crate) fn check_out(connection: &Connection, id: &str, now: &str) -> Result<(), DbError> {
    let seq = next_seqs(connection, 1)?;
    connection
        .prepare_cached(
            "UPDATE enrollments SET checked_out_at = ?1, push_token = NULL, seq = ?2 WHERE id = ?3",
        )
        .and_then(|mut statement| statement.execute(rusqlite::params![now, seq, id]))
        .context("recording CheckOut")?;
    Ok(())
}

/// Stores (Some) or removes (None) the sealed bootstrap token.
pub(crate) fn set_bootstrap_token(
    connection: &Connection,
    id: &str,
    sealed: Option<&[u8]>,
    now: &str,
) -> Result<(), DbError> {
    let seq = next_seqs(connection, 1)?;
    let escrowed_at = sealed.map(|_| now);
    connection
        .prepare_cached(
            "UPDATE enrollments SET bootstrap_token = ?1, bootstrap_token_escrowed_at = ?2, seq = ?3
             WHERE id = ?4",
        )
        .and_then(|mut statement| statement.execute(rusqlite::params![sealed, escrowed_at, seq, id]))
        .context("escrowing the bootstrap token")?;
    Ok(())
}

/// The sealed bootstrap token, noting that the device asked for it.
pub(crate) fn take_bootstrap_request(
    connection: &Connection,
    id: &str,
    now: &str,
) -> Result<Option<Vec<u8>>, DbError> {
    let seq = next_seqs(connection, 1)?;
    let sealed: Option<Option<Vec<u8>>> = connection
        .prepare_cached(
            "UPDATE enrollments SET bootstrap_token_requested_at = ?1, seq = ?2 WHERE id = ?3
             RETURNING bootstrap_token",
        )
        .and_then(|mut statement| {
            statement
                .query_row(rusqlite::params![now, seq, id], |row| row.get(0))
                .optional()
        })
        .context("serving the bootstrap token")?;
    Ok(sealed.flatten())
}

/// One command-connection round: records the result the device reports (if any), notes the
/// contact, and hands out the next command, marked as sent.
///
/// A command's body is built as it is sent, with the enrollment's declarations token of that
/// moment in its `Data` (Apple: the device then compares it with its own and skips the `tokens`
/// request). A token written when the command was queued could be older than the assignments
/// the device would be told about, and a device holding that token would not sync at all.
///
/// An acknowledged command is deleted: nothing reads it again. `NotNow` keeps it for the
/// device's next `Idle`, as Apple asks; other results stay on the row for diagnosis.
pub(crate) fn connect(
    connection: &Connection,
    id: &str,
    result: Option<(&str, CommandStatus)>,
    now: DateTime<Utc>,
) -> Result<Option<Vec<u8>>, DbError> {
    let now_text = timestamp(now);
    match result {
        Some((uuid, CommandStatus::Acknowledged)) => connection
            .prepare_cached("DELETE FROM commands WHERE uuid = ?1 AND enrollment_id = ?2")
            .and_then(|mut statement| statement.execute((uuid, id)))
            .context("recording a command result")?,
        Some((uuid, status)) => connection
            .prepare_cached(
                "UPDATE commands SET result = ?1 WHERE uuid = ?2 AND enrollment_id = ?3",
            )
            .and_then(|mut statement| statement.execute((status.as_str(), uuid, id)))
            .context("recording a command result")?,
        None => 0,
    };
    connection
        .prepare_cached("UPDATE enrollments SET last_seen_at = ?1 WHERE id = ?2")
        .and_then(|mut statement| statement.execute((&now_text, id)))
        .context("noting contact")?;
    // After a result, only what was never sent; at `Idle`, also what went unanswered or NotNow.
    let next: Option<(String, String, Vec<u8>)> = connection
        .prepare_cached(
            "SELECT uuid, request_type, body FROM commands WHERE enrollment_id = ?1
                 AND (result IS NULL AND sent_at IS NULL OR ?2 AND (result IS NULL OR result = 'NotNow'))
             ORDER BY queued_at, rowid LIMIT 1",
        )
        .and_then(|mut statement| {
            statement
                .query_row((id, result.is_none()), |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()
        })
        .context("dequeuing a command")?;
    let Some((uuid, request_type, queued_body)) = next else {
        return Ok(None);
    };
    if request_type != "DeclarativeManagement" {
        connection
            .prepare_cached("UPDATE commands SET sent_at = ?1, result = NULL WHERE uuid = ?2")
            .and_then(|mut statement| statement.execute((&now_text, &uuid)))
            .context("sending a command")?;
        return Ok(Some(queued_body));
    }
    let declarations = assigned_declarations(connection, id)?;
    // A declaration the manifest cannot take: no token, so the device asks for one and meets the
    // same error at the `tokens` endpoint, where it is reported.
    let tokens = DeclarationItemsResponse::from_declarations(&declarations)
        .ok()
        .and_then(|items| serde_json::to_vec(&items.tokens_response(now)).ok());
    let body = DeclarativeManagementCommand::new(&uuid, tokens).to_xml();
    connection
        .prepare_cached(
            "UPDATE commands SET sent_at = ?1, body = ?2, result = NULL WHERE uuid = ?3",
        )
        .and_then(|mut statement| statement.execute(rusqlite::params![now_text, body, uuid]))
        .context("sending a command")?;
    Ok(Some(body))
}

/// Queues a DeviceInformation command asking the device's name and time zone, handed out before
/// any command queued after it.
pub(crate) fn queue_device_information(
    connection: &Connection,
    id: &str,
    now: &str,
) -> Result<(), DbError> {
    let uuid = new_uuid();
    let body = DeviceInformationCommand::new(&uuid).to_xml();
    connection
        .prepare_cached(
            "INSERT INTO commands (uuid, enrollment_id, body, queued_at, request_type)
             VALUES (?1, ?2, ?3, ?4, 'DeviceInformation')",
        )
        .and_then(|mut statement| statement.execute(rusqlite::params![uuid, id, body, now]))
        .context("queueing DeviceInformation")?;
    Ok(())
}

/// Records what a device answered to DeviceInformation: its name and time zone.
pub(crate) fn device_information(
    connection: &Connection,
    id: &str,
    answers: &QueryResponses,
) -> Result<(), DbError> {
    let seq = next_seqs(connection, 1)?;
    connection
        .prepare_cached(
            "UPDATE enrollments SET device_name = COALESCE(?1, device_name),
                 time_zone = COALESCE(?2, time_zone), seq = ?3 WHERE id = ?4",
        )
        .and_then(|mut statement| {
            statement.execute(rusqlite::params![
                answers.device_name,
                answers.time_zone,
                seq,
                id
            ])
        })
        .context("recording DeviceInformation")?;
    Ok(())
}

/// Queues a DeclarativeManagement command for each enrollment that has none waiting to be sent.
/// One already sent but not yet answered does not count: the change being announced may have
/// come after the device read its tokens for that one, so it needs a sync of its own.
pub(crate) fn queue_declarative_management(
    connection: &Connection,
    ids: &[String],
    now: &str,
) -> Result<(), DbError> {
    let mut waiting = connection
        .prepare_cached(
            "SELECT 1 FROM commands WHERE enrollment_id = ?1 AND request_type = 'DeclarativeManagement'
                 AND (result IS NULL AND sent_at IS NULL OR result = 'NotNow') LIMIT 1",
        )
        .context("checking queued commands")?;
    // The body is written when the command is sent (see `connect`).
    let mut insert = connection
        .prepare_cached(
            "INSERT INTO commands (uuid, enrollment_id, body, queued_at) VALUES (?1, ?2, x'', ?3)",
        )
        .context("queueing a command")?;
    for id in ids {
        if waiting.exists([id]).context("checking queued commands")? {
            continue;
        }
        insert
            .execute(rusqlite::params![new_uuid(), id, now])
            .context("queueing a command")?;
    }
    Ok(())
}

/// Runs `statement` (with the enrollment id and the set name as its two parameters) for each
/// assignment; returns the enrollments it changed, in order, possibly repeated.
pub(crate) fn change_assignments(
    connection: &Connection,
    statement: &str,
    assignments: &[(String, String)],
) -> Result<Vec<String>, DbError> {
    let mut statement = connection
        .prepare_cached(statement)
        .context("changing assignments")?;
    let mut changed = Vec::new();
    for (enrollment_id, set) in assignments {
        if statement
            .execute([enrollment_id, set])
            .context("changing assignments")?
            > 0
        {
            changed.push(enrollment_id.clone());
        }
    }
    Ok(changed)
}
