//! Reports and moderation (PRODUCT.md §3 Safety): filing a report, the
//! moderators' queue, their decisions, and the audit log every decision and
//! role change leaves.

use super::{Account, MAX_BLOCKS, Page, ServiceError, ServiceResult, Services};
use domain::safety::{
    AuditEntry, ModerationAction, Report, ReportNote, ReportReason, ReportStatus, ReportTarget,
    TargetKind, TargetSnapshot,
};
use domain::{
    AuditId, CommentId, IdCursor, Limit, PostId, ReportId, Role, User, UserId, Username,
    ValidationErrors, now,
};
use store::{Filed, NewReport, ReportGroup, Resolution};

/// A report as the client sent it, before validation.
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    pub target_type: String,
    pub target_id: String,
    pub reason: String,
    pub note: Option<String>,
}

/// A moderator's decision as the client sent it, before validation.
#[derive(Debug, Clone, Default)]
pub struct ResolveInput {
    pub action: String,
    pub note: Option<String>,
    pub ban_image: bool,
}

/// What a moderator's decision did.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub action: ModerationAction,
    pub target: ReportTarget,
    /// Open reports on the target it closed.
    pub reports_closed: u64,
}

/// Who a moderation action is recorded under.
pub enum Actor<'a> {
    Staff(&'a Account),
    /// `imagegram admin`, run by whoever operates the instance.
    Operator,
}

impl Actor<'_> {
    fn name(&self) -> String {
        match self {
            Actor::Staff(account) => account.user.username.as_str().to_owned(),
            Actor::Operator => "(operator)".to_owned(),
        }
    }
}

fn audit_entry(
    actor: &Actor<'_>,
    action: &str,
    target: serde_json::Value,
    note: String,
) -> AuditEntry {
    AuditEntry {
        id: AuditId::new(),
        moderator: actor.name(),
        action: action.to_owned(),
        target,
        note,
        created_at: now(),
    }
}

fn target_json(target: &ReportTarget) -> serde_json::Value {
    serde_json::to_value(target).expect("a target serialises")
}

impl Services {
    /// Files `reporter`'s report, or finds their open one on the same target
    /// (`false`: it existed already).
    pub async fn file_report(
        &self,
        reporter: &User,
        input: ReportInput,
    ) -> ServiceResult<(Report, bool)> {
        let mut errors = ValidationErrors::default();
        let kind = errors.check("target.type", TargetKind::parse(&input.target_type));
        let id = errors.check(
            "target.id",
            uuid::Uuid::try_parse(&input.target_id)
                .map_err(|_| "must be a post or comment id".to_owned()),
        );
        let reason = errors.check("reason", ReportReason::parse(&input.reason));
        let note = errors.check("note", ReportNote::parse(input.note.unwrap_or_default()));
        errors.into_result()?;
        let target = ReportTarget {
            kind: kind.expect("checked"),
            id: id.expect("checked"),
        };
        let snapshot = self.snapshot(target, reporter).await?;
        if snapshot.author.id == reporter.id {
            return Err(
                ValidationErrors::single("target", "one cannot report one's own content").into(),
            );
        }
        let report = Report {
            id: ReportId::new(),
            target,
            reason: reason.expect("checked"),
            note: note.expect("checked"),
            status: ReportStatus::Open,
            created_at: now(),
        };
        let filed = self
            .store
            .file_report(NewReport {
                report,
                reporter: reporter.id,
                snapshot,
            })
            .await?;
        Ok(match filed {
            Filed::New(report) => (report, true),
            Filed::Existing(report) => (report, false),
        })
    }

    /// The target as `viewer` sees it now; 404 if they cannot see it.
    async fn snapshot(&self, target: ReportTarget, viewer: &User) -> ServiceResult<TargetSnapshot> {
        match target.kind {
            TargetKind::Post => {
                let post = self
                    .post(PostId::from_uuid(target.id), Some(viewer))
                    .await?;
                Ok(TargetSnapshot {
                    author: post.author,
                    text: post.caption.as_str().to_owned(),
                    image_url: post.image.as_ref().map(|i| i.url()),
                    post_id: None,
                })
            }
            TargetKind::Comment => {
                let comment = self
                    .store
                    .comment(CommentId::from_uuid(target.id))
                    .await?
                    .ok_or(ServiceError::NotFound("no such comment"))?;
                // A comment is visible where its post is.
                self.post(comment.post_id, Some(viewer))
                    .await
                    .map_err(|_| ServiceError::NotFound("no such comment"))?;
                Ok(TargetSnapshot {
                    author: comment.author,
                    text: comment.body.as_str().to_owned(),
                    image_url: None,
                    post_id: Some(*comment.post_id.as_uuid()),
                })
            }
        }
    }

    /// The moderation queue: targets with reports of `status`, oldest first.
    pub async fn report_queue(
        &self,
        status: Option<&str>,
        cursor: Option<&str>,
        limit: Limit,
    ) -> ServiceResult<Page<ReportGroup>> {
        let status = ReportStatus::parse(status.unwrap_or("open"))
            .map_err(|m| ValidationErrors::single("status", m))?;
        let scope = format!("report-queue:{}", status.as_str());
        let after = self
            .id_cursor(cursor, &scope)?
            .map(|c| ReportId::from_uuid(uuid::Uuid::from_bytes(c.0)));
        let rows = self
            .store
            .report_groups(status, after, limit.get() + 1)
            .await?;
        Ok(Page::from_overfetch(rows, limit.get(), |g| {
            IdCursor(*g.first.id.as_bytes()).encode(&scope, &self.cursor_key)
        }))
    }

    /// Acts on the target of `report_id` and closes every open report on it.
    pub async fn resolve_report(
        &self,
        moderator: &Account,
        report_id: ReportId,
        input: ResolveInput,
    ) -> ServiceResult<Resolved> {
        let mut errors = ValidationErrors::default();
        let action = errors.check("action", ModerationAction::parse(&input.action));
        let note = errors.check("note", ReportNote::parse(input.note.unwrap_or_default()));
        errors.into_result()?;
        let (action, note) = (action.expect("checked"), note.expect("checked"));
        let (report, snapshot) = self
            .store
            .report(report_id)
            .await?
            .ok_or(ServiceError::NotFound("no such report"))?;
        if report.status != ReportStatus::Open {
            return Err(ServiceError::Conflict(
                "this report is resolved already; the queue shows what is open".into(),
            ));
        }
        // The author as the report found them: the target may be gone since.
        let suspend = match action {
            ModerationAction::Suspend => Some(self.suspendable(snapshot.author.id).await?),
            _ => None,
        };
        if input.ban_image {
            self.ban_original(report.target, action).await?;
        }
        let notify = if action.takes_down() {
            self.take_down(report.target).await?
        } else {
            None
        };
        let target = report.target;
        let entry = audit_entry(
            &Actor::Staff(moderator),
            action.as_str(),
            target_json(&target),
            note.as_str().to_owned(),
        );
        let reports_closed = self
            .store
            .resolve_reports(Resolution {
                target,
                action,
                entry,
                notify,
                suspend,
            })
            .await?;
        if let Some(user) = suspend {
            // Its tokens and content go at once here, and on the other nodes
            // within the session cache's and the feed cache's bounds.
            self.sessions.revoke_user(user);
            self.forget_gone_authors();
        }
        Ok(Resolved {
            action,
            target,
            reports_closed,
        })
    }

    /// The author of reported content, if moderation may suspend them.
    async fn suspendable(&self, author: UserId) -> ServiceResult<UserId> {
        let refuse = |m: &'static str| Err(ValidationErrors::single("action", m).into());
        match self.store.user_by_id(author).await? {
            None => refuse("the author's account is deleted; use remove"),
            Some((_, role)) if !role.may_be_suspended() => refuse(
                "moderators and admins cannot be suspended; an admin can change their role first",
            ),
            Some(_) => Ok(author),
        }
    }

    /// Lifts the suspension of `username`: they can log in again, and what
    /// they made is shown again (here at once, elsewhere within the caches' bounds).
    pub async fn reinstate(&self, moderator: &Account, username: &str) -> ServiceResult<User> {
        let user = self.user_named(username).await?;
        let entry = audit_entry(
            &Actor::Staff(moderator),
            "reinstate",
            serde_json::json!({ "type": "user", "username": user.username }),
            String::new(),
        );
        if !self.store.reinstate(user.id, entry).await? {
            return Err(ServiceError::Conflict(
                "that account is not suspended".into(),
            ));
        }
        self.forget_gone_authors();
        Ok(user)
    }

    /// Bans the bytes of a reported post's original, before it is taken down.
    async fn ban_original(
        &self,
        target: ReportTarget,
        action: ModerationAction,
    ) -> ServiceResult<()> {
        let refuse = |m: &'static str| Err(ValidationErrors::single("ban_image", m).into());
        if target.kind != TargetKind::Post || !action.takes_down() {
            return refuse("only a post's image can be banned, and only when it is taken down");
        }
        let Some(digest) = self.original_digest(PostId::from_uuid(target.id)).await? else {
            return refuse("the post's original is gone already");
        };
        Ok(self.store.ban_image(digest, now()).await?)
    }

    /// Removes a reported post or comment, if it is still there, as its author
    /// would (counts and the newest comments stay exact); the notice to send
    /// its author, for a post.
    async fn take_down(
        &self,
        target: ReportTarget,
    ) -> ServiceResult<Option<(domain::UserId, &'static str, serde_json::Value)>> {
        match target.kind {
            TargetKind::Post => {
                let id = PostId::from_uuid(target.id);
                let Some(post) = self.store.post(id).await? else {
                    return Ok(None);
                };
                self.remove_post(id).await?;
                Ok(Some((
                    post.author.id,
                    "post.removed",
                    serde_json::json!({ "post_id": id }),
                )))
            }
            TargetKind::Comment => {
                if let Some(comment) = self.store.comment(CommentId::from_uuid(target.id)).await? {
                    self.remove_comment(comment.post_id, comment.id, &domain::Remover::Moderation)
                        .await?;
                }
                Ok(None)
            }
        }
    }

    /// The audit log, newest first.
    pub async fn audit_log(
        &self,
        cursor: Option<&str>,
        limit: Limit,
    ) -> ServiceResult<Page<AuditEntry>> {
        let scope = "moderation-audit";
        let before = self
            .id_cursor(cursor, scope)?
            .map(|c| AuditId::from_uuid(uuid::Uuid::from_bytes(c.0)));
        let rows = self.store.audit_log(before, limit.get() + 1).await?;
        Ok(Page::from_overfetch(rows, limit.get(), |e| {
            IdCursor(*e.id.as_bytes()).encode(scope, &self.cursor_key)
        }))
    }

    /// `blocker` blocks `username`: at once on this node, and on the others
    /// within the session cache's bound (both accounts' lists are re-read).
    pub async fn block(&self, blocker: &Account, username: &str) -> ServiceResult<()> {
        let target = self.user_named(username).await?;
        if target.id == blocker.user.id {
            return Err(ValidationErrors::single("username", "one cannot block oneself").into());
        }
        let hidden = &blocker.blocks.hidden;
        if hidden.len() >= MAX_BLOCKS && !hidden.hides(target.id) {
            return Err(ServiceError::TooMany(
                "an account may block at most 1,000 others",
            ));
        }
        self.store.block(blocker.user.id, target.id, now()).await?;
        self.forget_blocks_of(blocker.user.id, target.id);
        Ok(())
    }

    pub async fn unblock(&self, blocker: &Account, username: &str) -> ServiceResult<()> {
        let target = self.user_named(username).await?;
        self.store.unblock(blocker.user.id, target.id).await?;
        self.forget_blocks_of(blocker.user.id, target.id);
        Ok(())
    }

    /// Whom the account blocks, most recent first.
    pub async fn blocked_users(&self, account: &Account) -> ServiceResult<Vec<User>> {
        Ok(self.store.blocked_users(account.user.id).await?)
    }

    async fn user_named(&self, username: &str) -> ServiceResult<User> {
        let name = Username::parse(username).map_err(|_| ServiceError::NotFound("no such user"))?;
        self.store
            .user_by_username(&name)
            .await?
            .ok_or(ServiceError::NotFound("no such user"))
    }

    /// Both sides of a block see it at their next request on this node.
    fn forget_blocks_of(&self, blocker: UserId, blocked: UserId) {
        self.sessions.revoke_user(blocker);
        self.sessions.revoke_user(blocked);
    }

    /// Records a role change in the audit log.
    pub(crate) async fn audit_role_change(
        &self,
        actor: &Actor<'_>,
        user: &User,
        role: Role,
    ) -> ServiceResult<()> {
        let entry = audit_entry(
            actor,
            "set-role",
            serde_json::json!({ "type": "user", "username": user.username, "role": role }),
            String::new(),
        );
        Ok(self.store.record_audit(entry).await?)
    }
}
