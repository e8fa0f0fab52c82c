//! Validated domain types and rules. No SQL, no HTTP: the edges convert raw
//! input into these types, so the rest of the code cannot see invalid data.

mod comment;
mod cursor;
pub mod idempotency;
mod ids;
mod post;
pub mod rate_limit;
pub mod rendering;
pub mod timestamp;
pub mod upload;
mod user;
mod validation;

pub use comment::{Comment, CommentBody, CommentDeletion};
pub use cursor::{CursorKey, FeedCursor, IdCursor};
pub use ids::{CommentId, PostId, UploadId, UserId};
pub use post::{
    AcceptedComment, Caption, EditRefusal, EditRequest, ExpiresIn, ImageInfo, LAST_COMMENTS,
    NewComment, NewPost, Post, PostEdit, PostFilter, PostStatus, derived_blob_key,
};
pub use user::{Password, User, Username};
pub use validation::{FieldError, Limit, ValidationErrors, clean_text, refuse_control_characters};

/// Milliseconds since the Unix epoch, UTC: the one clock representation stores use.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

pub fn now() -> Timestamp {
    // Millisecond precision everywhere, so what is stored equals what was returned.
    let now = chrono::Utc::now();
    from_millis(now.timestamp_millis())
}

pub fn from_millis(ms: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
