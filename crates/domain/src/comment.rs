//! Comments: the validated body, the comment, and the deletion rule.

use serde::{Deserialize, Serialize};

use super::{CommentId, PostId, Timestamp, User, UserId};

/// A comment's text: 1–1,000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommentBody(String);

impl CommentBody {
    pub const MAX_CHARS: usize = 1000;

    pub fn parse(raw: String) -> Result<Self, String> {
        let raw = super::clean_text(raw)?;
        let n = raw.chars().count();
        if n == 0 || raw.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if n > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(CommentBody(raw))
    }

    pub fn from_trusted(s: String) -> Self {
        CommentBody(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: CommentId,
    pub post_id: PostId,
    pub author: User,
    pub body: CommentBody,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_author_deletes_a_comment() {
        let (author, other) = (UserId::new(), UserId::new());
        assert_eq!(
            CommentDeletion::decide(None, author),
            CommentDeletion::NotFound
        );
        assert_eq!(
            CommentDeletion::decide(Some(author), other),
            CommentDeletion::NotAuthor
        );
        assert_eq!(
            CommentDeletion::decide(Some(author), author),
            CommentDeletion::Deleted
        );
    }

    #[test]
    fn bodies() {
        assert!(CommentBody::parse(String::new()).is_err());
        assert!(CommentBody::parse("   ".into()).is_err());
        assert!(CommentBody::parse("x".repeat(1000)).is_ok());
        assert!(CommentBody::parse("é".repeat(1000)).is_ok());
        assert!(CommentBody::parse("x".repeat(1001)).is_err());
    }
}

/// What asking to delete a comment comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentDeletion {
    Deleted,
    /// No such post as far as the one deleting can see (`Post::visible_to`).
    PostNotFound,
    NotFound,
    NotAuthor,
}

impl CommentDeletion {
    /// The rule: only a comment's author deletes it. `author` is the comment's
    /// author as stored (`None`: no such comment on that post); `Deleted` means
    /// the deletion may go ahead.
    pub fn decide(author: Option<UserId>, by: UserId) -> Self {
        match author {
            None => CommentDeletion::NotFound,
            Some(author) if author != by => CommentDeletion::NotAuthor,
            Some(_) => CommentDeletion::Deleted,
        }
    }
}
