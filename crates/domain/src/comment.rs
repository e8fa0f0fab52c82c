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

    fn someone() -> User {
        User {
            id: UserId::new(),
            username: crate::Username::from_trusted("someone".into()),
            created_at: crate::now(),
        }
    }

    #[test]
    fn only_the_author_or_moderation_deletes_a_comment() {
        let (author, other) = (someone(), someone());
        let by_author = Remover::Author(author.clone());
        assert_eq!(
            CommentDeletion::decide(None, &by_author),
            CommentDeletion::NotFound
        );
        assert_eq!(
            CommentDeletion::decide(Some(author.id), &Remover::Author(other)),
            CommentDeletion::NotAuthor
        );
        assert_eq!(
            CommentDeletion::decide(Some(author.id), &by_author),
            CommentDeletion::Deleted
        );
        assert_eq!(
            CommentDeletion::decide(Some(author.id), &Remover::Moderation),
            CommentDeletion::Deleted
        );
        assert_eq!(
            CommentDeletion::decide(None, &Remover::Moderation),
            CommentDeletion::NotFound
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

/// Who removes a comment: its author, moderation taking it down, or the
/// purge of a deleted account.
#[derive(Debug, Clone)]
pub enum Remover {
    Author(User),
    Moderation,
    Purge,
}

impl Remover {
    /// Whether the removal may touch the post: authors and moderators act on
    /// what they can see (`Post::visible_to`: moderation sees what everyone
    /// sees); the purge removes an account's comments wherever they are,
    /// expired posts included.
    pub fn reaches(&self, post: &crate::Post, now: crate::Timestamp) -> bool {
        match self {
            Remover::Author(user) => post.visible_to(Some(user), now),
            Remover::Moderation => post.visible_to(None, now),
            Remover::Purge => true,
        }
    }
}

impl CommentDeletion {
    /// The rule: a comment's author deletes it, and moderation takes down
    /// any. `author` is the comment's author as stored (`None`: no such
    /// comment on that post); `Deleted` means the deletion may go ahead.
    pub fn decide(author: Option<UserId>, by: &Remover) -> Self {
        match (author, by) {
            (None, _) => CommentDeletion::NotFound,
            (Some(_), Remover::Moderation | Remover::Purge) => CommentDeletion::Deleted,
            (Some(author), Remover::Author(by)) if author != by.id => CommentDeletion::NotAuthor,
            (Some(_), Remover::Author(_)) => CommentDeletion::Deleted,
        }
    }
}
