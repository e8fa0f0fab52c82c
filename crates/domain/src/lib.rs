//! Validated domain types and rules. No SQL, no HTTP: the edges convert raw
//! input into these types, so the rest of the code cannot see invalid data.

mod comment;
mod cursor;
pub mod export;
pub mod idempotency;
mod ids;
mod post;
pub mod rate_limit;
pub mod rendering;
pub mod safety;
pub mod timestamp;
pub mod upload;
mod user;
mod validation;

pub use comment::{Comment, CommentBody, CommentDeletion, Remover};
pub use cursor::{CursorKey, FeedCursor, IdCursor};
pub use ids::{AuditId, CommentId, ExportId, PostId, ReportId, UploadId, UserId};
pub use post::{
    AcceptedComment, AltText, Caption, CommentRefusal, EditRefusal, EditRequest, ExpiresIn,
    ImageInfo, LAST_COMMENTS, NewComment, NewPost, Post, PostEdit, PostFilter, PostStatus,
    derived_blob_key,
};
pub use user::{Password, Role, User, Username};
pub use validation::{FieldError, Limit, ValidationErrors, clean_text, refuse_control_characters};

/// Milliseconds since the Unix epoch, UTC: the one clock representation stores use.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

pub fn now() -> Timestamp {
    // Millisecond precision everywhere, so what is stored equals what was returned.
    let now = chrono::Utc::now();
    from_millis(now.timestamp_millis())
}

/// `t` plus `d`, or the last time chrono can hold when the sum does not fit:
/// configured durations may be as large as an operator likes.
pub fn later(t: Timestamp, d: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// `t` minus `d`, or the Unix epoch, before which nothing is stored (and
/// which, unlike chrono's first time, PostgreSQL can hold).
pub fn earlier(t: Timestamp, d: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .map_or(chrono::DateTime::UNIX_EPOCH, |e| {
            e.max(chrono::DateTime::UNIX_EPOCH)
        })
}

pub fn from_millis(ms: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn time_arithmetic_saturates_instead_of_failing() {
        let t = from_millis(1_700_000_000_000);
        assert_eq!(
            later(t, Duration::from_secs(1)),
            from_millis(1_700_000_001_000)
        );
        assert_eq!(
            earlier(t, Duration::from_secs(1)),
            from_millis(1_699_999_999_000)
        );
        assert_eq!(
            later(t, Duration::MAX),
            chrono::DateTime::<chrono::Utc>::MAX_UTC
        );
        assert_eq!(earlier(t, Duration::MAX), chrono::DateTime::UNIX_EPOCH);
        let a_thousand_years = Duration::from_secs(1000 * 366 * 24 * 3600);
        assert_eq!(earlier(t, a_thousand_years), chrono::DateTime::UNIX_EPOCH);
    }
}
