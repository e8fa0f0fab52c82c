//! Reports and the moderation audit log on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{
    COMMENT_COLUMNS, USER_COLUMNS, append_event, comment_from_row, ms, user_from_row, uuid_col,
};
use crate::{
    BlockLists, Filed, NewReport, ReportGroup, Resolution, SafetyStore, StoreResult, StoredAudit,
    StoredGroup, StoredReport,
};
use domain::safety::{AuditEntry, Report, ReportStatus, TargetSnapshot};
use domain::{AuditId, Comment, CommentId, ReportId, Timestamp, User, UserId, from_millis};

/// Report columns in the order `stored_report` reads them.
const REPORT_COLUMNS: &str = "id, target_type, target_id, reason, note, status, created_at";

fn stored_report(r: &Row<'_>, at: usize) -> rusqlite::Result<StoredReport> {
    Ok(StoredReport {
        id: uuid_col(r, at, |b| uuid::Uuid::from_slice(b).ok())?,
        target_type: r.get(at + 1)?,
        target_id: uuid_col(r, at + 2, |b| uuid::Uuid::from_slice(b).ok())?,
        reason: r.get(at + 3)?,
        note: r.get(at + 4)?,
        status: r.get(at + 5)?,
        created_at: from_millis(r.get(at + 6)?),
    })
}

fn open_report(
    conn: &rusqlite::Connection,
    new: &NewReport,
) -> rusqlite::Result<Option<StoredReport>> {
    let sql = format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE reporter_id = ?1 AND target_type = ?2 \
         AND target_id = ?3 AND status = 'open'"
    );
    conn.prepare_cached(&sql)?
        .query_row(
            params![
                new.reporter.as_bytes(),
                new.report.target.kind.as_str(),
                new.report.target.id.as_bytes()
            ],
            |r| stored_report(r, 0),
        )
        .optional()
}

#[async_trait]
impl SafetyStore for SqliteStore {
    async fn comment(&self, id: CommentId) -> StoreResult<Option<Comment>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id \
                 WHERE c.id = ?1"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([id.as_bytes()], comment_from_row)
                .optional()?)
        })
        .await
    }

    async fn file_report(&self, new: NewReport) -> StoreResult<Filed> {
        let snapshot = serde_json::to_string(&new.snapshot).map_err(anyhow::Error::from)?;
        self.write(move |tx| {
            if let Some(existing) = open_report(tx, &new)? {
                return Ok(Filed::Existing(existing.decode()?));
            }
            let r = &new.report;
            tx.prepare_cached(
                "INSERT INTO reports (id, reporter_id, target_type, target_id, reason, note, snapshot, \
                 status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8)",
            )?
            .execute(params![
                r.id.as_bytes(),
                new.reporter.as_bytes(),
                r.target.kind.as_str(),
                r.target.id.as_bytes(),
                r.reason.as_str(),
                r.note.as_str(),
                snapshot,
                ms(r.created_at)
            ])?;
            Ok(Filed::New(new.report))
        })
        .await
    }

    async fn report(&self, id: ReportId) -> StoreResult<Option<(Report, TargetSnapshot)>> {
        let found = self
            .read(move |conn| {
                let sql = format!("SELECT {REPORT_COLUMNS}, snapshot FROM reports WHERE id = ?1");
                Ok(conn
                    .prepare_cached(&sql)?
                    .query_row([id.as_bytes()], |r| Ok((stored_report(r, 0)?, r.get(7)?)))
                    .optional()?)
            })
            .await?;
        Ok(found.map(crate::decode_report_with_snapshot).transpose()?)
    }

    async fn report_groups(
        &self,
        status: ReportStatus,
        after: Option<ReportId>,
        limit: u32,
    ) -> StoreResult<Vec<ReportGroup>> {
        let after = after.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
        let rows = self
            .read(move |conn| {
                // A group is a target's reports of the status; it is named and
                // ordered by its oldest report (UUIDv7 ids sort by time).
                let sql = format!(
                    "SELECT {cols}, f.snapshot, g.n, g.reasons, g.last FROM \
                     (SELECT min(id) AS first, count(*) AS n, group_concat(DISTINCT reason) AS reasons, \
                      max(created_at) AS last FROM reports WHERE status = ?1 \
                      GROUP BY target_type, target_id HAVING min(id) > ?2) g \
                     JOIN reports f ON f.id = g.first ORDER BY g.first LIMIT ?3",
                    cols = REPORT_COLUMNS
                        .split(", ")
                        .map(|c| format!("f.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let mut statement = conn.prepare_cached(&sql)?;
                let rows = statement.query_map(params![status.as_str(), after, limit], |r| {
                    Ok(StoredGroup {
                        first: stored_report(r, 0)?,
                        snapshot: r.get(7)?,
                        count: r.get(8)?,
                        reasons: r.get::<_, String>(9)?.split(',').map(str::to_owned).collect(),
                        last: from_millis(r.get(10)?),
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(StoredGroup::decode)
            .collect::<anyhow::Result<_>>()?)
    }

    async fn resolve_reports(&self, resolution: Resolution) -> StoreResult<u64> {
        let target =
            serde_json::to_string(&resolution.entry.target).map_err(anyhow::Error::from)?;
        let notified = resolution.notify.as_ref().map(|(user, ..)| *user);
        let closed = self
            .write(move |tx| {
                let closed = tx
                    .prepare_cached(
                        "UPDATE reports SET status = 'resolved', resolution = ?1, resolved_at = ?2 \
                         WHERE target_type = ?3 AND target_id = ?4 AND status = 'open'",
                    )?
                    .execute(params![
                        resolution.action.as_str(),
                        ms(resolution.entry.created_at),
                        resolution.target.kind.as_str(),
                        resolution.target.id.as_bytes()
                    ])?;
                insert_audit(tx, &resolution.entry, &target)?;
                if let Some((user, kind, data)) = &resolution.notify {
                    append_event(tx, user.as_bytes(), kind, data)?;
                }
                if let Some(user) = resolution.suspend {
                    suspend(tx, user, resolution.entry.created_at)?;
                }
                Ok(closed as u64)
            })
            .await?;
        if let Some(user) = notified {
            self.event_wakers.wake(user);
        }
        Ok(closed)
    }

    async fn record_audit(&self, entry: AuditEntry) -> StoreResult<()> {
        let target = serde_json::to_string(&entry.target).map_err(anyhow::Error::from)?;
        self.write(move |tx| Ok(insert_audit(tx, &entry, &target)?))
            .await
    }

    async fn reinstate(&self, user: UserId, entry: AuditEntry) -> StoreResult<bool> {
        let target = serde_json::to_string(&entry.target).map_err(anyhow::Error::from)?;
        self.write(move |tx| {
            if !lift_suspension(tx, user)? {
                return Ok(false);
            }
            insert_audit(tx, &entry, &target)?;
            Ok(true)
        })
        .await
    }

    async fn block(&self, blocker: UserId, blocked: UserId, at: Timestamp) -> StoreResult<()> {
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO blocks (id, blocker_id, blocked_id, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
            )?
            .execute(params![
                uuid::Uuid::now_v7().as_bytes(),
                blocker.as_bytes(),
                blocked.as_bytes(),
                ms(at)
            ])?;
            Ok(())
        })
        .await
    }

    async fn unblock(&self, blocker: UserId, blocked: UserId) -> StoreResult<()> {
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2")?
                .execute(params![blocker.as_bytes(), blocked.as_bytes()])?;
            Ok(())
        })
        .await
    }

    async fn blocked_users(&self, blocker: UserId) -> StoreResult<Vec<User>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM blocks b JOIN users u ON u.id = b.blocked_id \
                 WHERE b.blocker_id = ?1 ORDER BY b.id DESC"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map([blocker.as_bytes()], |r| user_from_row(r, 0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn block_lists(&self, user: UserId) -> StoreResult<BlockLists> {
        self.read(move |conn| {
            let mut lists = BlockLists::default();
            let mut statement = conn.prepare_cached(
                "SELECT blocked_id, 1 FROM blocks WHERE blocker_id = ?1 \
                 UNION ALL SELECT blocker_id, 0 FROM blocks WHERE blocked_id = ?1",
            )?;
            let mut rows = statement.query([user.as_bytes()])?;
            while let Some(r) = rows.next()? {
                let id = uuid_col(r, 0, UserId::from_slice)?;
                if r.get::<_, i64>(1)? == 1 {
                    lists.blocked.push(id);
                } else {
                    lists.blocked_by.push(id);
                }
            }
            Ok(lists)
        })
        .await
    }

    async fn ban_image(&self, sha256: [u8; 32], at: Timestamp) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO banned_images (sha256, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![sha256.as_slice(), ms(at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn image_banned(&self, sha256: [u8; 32]) -> StoreResult<bool> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM banned_images WHERE sha256 = ?1")?
                .exists([sha256.as_slice()])?)
        })
        .await
    }

    async fn audit_log(&self, before: Option<AuditId>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let before = before.map(|b| *b.as_bytes()).unwrap_or([0xFF; 16]);
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT id, moderator, action, target, note, created_at FROM moderation_audit \
                     WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                )?;
                let rows = statement.query_map(params![before.as_slice(), limit], |r| {
                    Ok(StoredAudit {
                        id: uuid_col(r, 0, |b| uuid::Uuid::from_slice(b).ok())?,
                        moderator: r.get(1)?,
                        action: r.get(2)?,
                        target: r.get(3)?,
                        note: r.get(4)?,
                        created_at: from_millis(r.get(5)?),
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(StoredAudit::decode)
            .collect::<anyhow::Result<_>>()?)
    }
}

fn insert_audit(
    conn: &rusqlite::Connection,
    entry: &AuditEntry,
    target: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO moderation_audit (id, moderator, action, target, note, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        entry.id.as_bytes(),
        entry.moderator,
        entry.action,
        target,
        entry.note,
        ms(entry.created_at)
    ])?;
    Ok(())
}

/// Suspends the live account `user` from `at` and deletes its sessions.
fn suspend(tx: &rusqlite::Transaction<'_>, user: UserId, at: Timestamp) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE users SET suspended_at = ?1 \
         WHERE id = ?2 AND deleted_at IS NULL AND suspended_at IS NULL",
        params![ms(at), user.as_bytes()],
    )?;
    tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user.as_bytes()])?;
    Ok(())
}

/// Lifts the suspension of `user`; whether it was suspended.
fn lift_suspension(tx: &rusqlite::Transaction<'_>, user: UserId) -> rusqlite::Result<bool> {
    let lifted = tx.execute(
        "UPDATE users SET suspended_at = NULL WHERE id = ?1 AND suspended_at IS NOT NULL",
        [user.as_bytes()],
    )?;
    Ok(lifted > 0)
}
