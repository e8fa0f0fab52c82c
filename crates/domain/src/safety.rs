//! Safety (PRODUCT.md §3): what can be reported and why, the report itself,
//! what moderators do about it, and the audit entry each action leaves.

use serde::{Deserialize, Serialize};

use super::{AuditId, ReportId, Timestamp, User};

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Post,
    Comment,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Post => "post",
            TargetKind::Comment => "comment",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "post" => Ok(TargetKind::Post),
            "comment" => Ok(TargetKind::Comment),
            _ => Err("must be \"post\" or \"comment\"".into()),
        }
    }
}

/// A post or a comment, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportTarget {
    #[serde(rename = "type")]
    pub kind: TargetKind,
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
}

/// Why something is reported: the reasons app stores' policies name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportReason {
    Spam,
    Harassment,
    Nudity,
    Violence,
    Illegal,
    Other,
}

impl ReportReason {
    pub const ALL: [ReportReason; 6] = [
        ReportReason::Spam,
        ReportReason::Harassment,
        ReportReason::Nudity,
        ReportReason::Violence,
        ReportReason::Illegal,
        ReportReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportReason::Spam => "spam",
            ReportReason::Harassment => "harassment",
            ReportReason::Nudity => "nudity",
            ReportReason::Violence => "violence",
            ReportReason::Illegal => "illegal",
            ReportReason::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| {
                "must be one of spam, harassment, nudity, violence, illegal, other".into()
            })
    }
}

/// The reporter's words for the moderators: 0–1,000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReportNote(String);

impl ReportNote {
    pub const MAX_CHARS: usize = 1000;

    pub fn parse(raw: String) -> Result<Self, String> {
        super::post::bounded_text(raw, Self::MAX_CHARS).map(ReportNote)
    }

    pub fn from_trusted(s: String) -> Self {
        ReportNote(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    Open,
    Resolved,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Open => "open",
            ReportStatus::Resolved => "resolved",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "open" => Ok(ReportStatus::Open),
            "resolved" => Ok(ReportStatus::Resolved),
            _ => Err("must be \"open\" or \"resolved\"".into()),
        }
    }
}

/// A report as its reporter sees it. It never names the reporter: only its
/// reporter and moderators see it at all, and moderators see it grouped by
/// target, without reporters (PRODUCT.md: reporters are never exposed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Report {
    #[schema(value_type = String, format = Uuid)]
    pub id: ReportId,
    pub target: ReportTarget,
    pub reason: ReportReason,
    #[schema(value_type = String)]
    pub note: ReportNote,
    pub status: ReportStatus,
    #[serde(serialize_with = "super::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// The target as it was when it was first reported, so that a moderator sees
/// what was reported even if its author edited or deleted it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetSnapshot {
    pub author: User,
    /// The caption of a post, the body of a comment.
    pub text: String,
    /// A post's derived image, relative to the API's origin.
    pub image_url: Option<String>,
    /// The post a comment is on.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub post_id: Option<uuid::Uuid>,
}

/// What a moderator does about a target's reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModerationAction {
    /// Nothing wrong: every open report on the target is closed.
    Dismiss,
    /// The target is taken down.
    Remove,
    /// The target is taken down and its author suspended.
    Suspend,
}

impl ModerationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationAction::Dismiss => "dismiss",
            ModerationAction::Remove => "remove",
            ModerationAction::Suspend => "suspend",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "dismiss" => Ok(ModerationAction::Dismiss),
            "remove" => Ok(ModerationAction::Remove),
            "suspend" => Ok(ModerationAction::Suspend),
            _ => Err("must be one of dismiss, remove, suspend".into()),
        }
    }

    /// Whether the action takes the target down.
    pub fn takes_down(self) -> bool {
        matches!(self, ModerationAction::Remove | ModerationAction::Suspend)
    }
}

/// One line of the moderation audit log: who did what to what, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    #[schema(value_type = String, format = Uuid)]
    pub id: AuditId,
    /// The moderator's username when they acted.
    pub moderator: String,
    /// `dismiss`, `remove`, `suspend`, `reinstate`, `set-role`…
    pub action: String,
    /// What it was done to: `{type, id}` for a post or comment, `{type: "user", username}`.
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
    pub note: String,
    #[serde(serialize_with = "super::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_actions_and_statuses_round_trip() {
        for reason in ReportReason::ALL {
            assert_eq!(ReportReason::parse(reason.as_str()), Ok(reason));
        }
        assert!(ReportReason::parse("rude").is_err());
        for action in [
            ModerationAction::Dismiss,
            ModerationAction::Remove,
            ModerationAction::Suspend,
        ] {
            assert_eq!(ModerationAction::parse(action.as_str()), Ok(action));
        }
        assert!(!ModerationAction::Dismiss.takes_down());
        assert!(ModerationAction::Remove.takes_down() && ModerationAction::Suspend.takes_down());
        assert_eq!(ReportStatus::parse("open"), Ok(ReportStatus::Open));
        assert!(ReportStatus::parse("closed").is_err());
        assert_eq!(TargetKind::parse("comment"), Ok(TargetKind::Comment));
    }

    #[test]
    fn notes_are_bounded_clean_text() {
        assert!(ReportNote::parse(String::new()).is_ok());
        assert!(ReportNote::parse("x".repeat(1000)).is_ok());
        assert!(ReportNote::parse("x".repeat(1001)).is_err());
        assert!(ReportNote::parse("bad\u{0}".into()).is_err());
    }

    #[test]
    fn a_target_is_type_and_id() {
        let target = ReportTarget {
            kind: TargetKind::Post,
            id: uuid::Uuid::nil(),
        };
        assert_eq!(
            serde_json::to_value(target).unwrap(),
            serde_json::json!({"type": "post", "id": "00000000-0000-0000-0000-000000000000"})
        );
    }
}
