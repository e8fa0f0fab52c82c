//! Posts: validated fields (caption, expiry, filter), the post, and the rules
//! that change it (commenting, editing, visibility).

use super::{Comment, CommentBody, CommentId, PostId, Timestamp, User, UserId};

/// How many of its newest comments a post carries with it.
pub const LAST_COMMENTS: usize = 2;

/// A caption: 0–2,200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption(String);

impl Caption {
    pub const MAX_CHARS: usize = 2200;

    pub fn parse(raw: String) -> Result<Self, String> {
        bounded_text(raw, Self::MAX_CHARS).map(Caption)
    }

    pub fn from_trusted(s: String) -> Self {
        Caption(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Alt text: what the image shows, for people who cannot see it; 0–1,500
/// characters (empty: none given).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AltText(String);

impl AltText {
    pub const MAX_CHARS: usize = 1500;

    pub fn parse(raw: String) -> Result<Self, String> {
        bounded_text(raw, Self::MAX_CHARS).map(AltText)
    }

    pub fn from_trusted(s: String) -> Self {
        AltText(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text as `clean_text` accepts it, of at most `max` characters.
pub(crate) fn bounded_text(raw: String, max: usize) -> Result<String, String> {
    let raw = super::clean_text(raw)?;
    if raw.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(raw)
}

/// A time to live in seconds (≥ 1; at most ten years, so the expiry time always fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiresIn(i64);

impl ExpiresIn {
    pub const MAX_SECONDS: i64 = 10 * 366 * 24 * 3600;

    pub fn parse(seconds: i64) -> Result<Self, String> {
        if !(1..=Self::MAX_SECONDS).contains(&seconds) {
            return Err(format!(
                "must be between 1 and {} seconds",
                Self::MAX_SECONDS
            ));
        }
        Ok(ExpiresIn(seconds))
    }

    pub fn after(self, now: Timestamp) -> Timestamp {
        now + chrono::Duration::seconds(self.0)
    }
}

/// The filter chosen for a post's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PostFilter {
    #[default]
    None,
    Grayscale,
    Dither {
        levels: u8,
    },
}

impl PostFilter {
    pub const DEFAULT_DITHER_LEVELS: u8 = 2;

    /// Parses the `filter` and `dither_levels` request fields together.
    pub fn parse(
        filter: Option<&str>,
        levels: Option<i64>,
    ) -> Result<Self, (&'static str, String)> {
        let levels = match levels {
            None => None,
            Some(n) if (2..=16).contains(&n) => Some(n as u8),
            Some(_) => return Err(("dither_levels", "must be between 2 and 16".into())),
        };
        match (filter.unwrap_or("none"), levels) {
            ("dither", l) => Ok(PostFilter::Dither {
                levels: l.unwrap_or(Self::DEFAULT_DITHER_LEVELS),
            }),
            (_, Some(_)) if matches!(filter, Some("none" | "grayscale") | None) => Err((
                "dither_levels",
                "is only allowed with filter \"dither\"".into(),
            )),
            ("none", None) => Ok(PostFilter::None),
            ("grayscale", None) => Ok(PostFilter::Grayscale),
            _ => Err((
                "filter",
                "must be one of \"none\", \"grayscale\", \"dither\"".into(),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PostFilter::None => "none",
            PostFilter::Grayscale => "grayscale",
            PostFilter::Dither { .. } => "dither",
        }
    }

    pub fn levels(self) -> Option<u8> {
        match self {
            PostFilter::Dither { levels } => Some(levels),
            _ => None,
        }
    }

    /// Rebuilds a filter from its stored name and levels.
    pub fn from_stored(name: &str, levels: Option<i64>) -> Self {
        match name {
            "grayscale" => PostFilter::Grayscale,
            "dither" => PostFilter::Dither {
                levels: levels.unwrap_or(2).clamp(2, 16) as u8,
            },
            _ => PostFilter::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostStatus {
    Processing,
    Ready,
    Failed,
}

impl PostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PostStatus::Processing => "processing",
            PostStatus::Ready => "ready",
            PostStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "processing" => Some(PostStatus::Processing),
            "ready" => Some(PostStatus::Ready),
            "failed" => Some(PostStatus::Failed),
            _ => None,
        }
    }
}

/// The derived JPEG of a ready post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Content-addressed key; the blob is `derived/{key}.jpg`.
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub blurhash: String,
}

impl ImageInfo {
    pub fn blob_key(&self) -> String {
        derived_blob_key(&self.key)
    }

    /// Where the API serves it, relative to its origin.
    pub fn url(&self) -> String {
        format!("/v1/images/{}.jpg", self.key)
    }
}

pub fn derived_blob_key(key: &str) -> String {
    format!("derived/{key}.jpg")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub id: PostId,
    pub author: User,
    pub caption: Caption,
    pub alt_text: AltText,
    pub status: PostStatus,
    pub failure_reason: Option<String>,
    pub filter: PostFilter,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub comment_count: i64,
    pub image: Option<ImageInfo>,
    /// At most the 2 newest comments, newest first.
    pub last_comments: Vec<Comment>,
    /// Bumped by every change to the post's representation.
    pub version: i64,
}

impl Post {
    /// A strong entity tag: every change to the representation bumps `version`.
    pub fn etag(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.id.as_bytes());
        h.update(self.version.to_be_bytes());
        format!("\"{}\"", hex::encode(&h.finalize()[..16]))
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Whether the post takes new comments at `now`: only ready, unexpired posts do.
    pub fn takes_comments(&self, now: Timestamp) -> bool {
        self.status == PostStatus::Ready && !self.is_expired(now)
    }

    /// The rule for commenting: a ready, unexpired post takes the comment
    /// (counted in as `add_comment` says) and its author is notified, unless
    /// the comment is their own; but not from someone its author blocks.
    pub fn accept_comment(&mut self, new: NewComment) -> Result<AcceptedComment, CommentRefusal> {
        if !self.takes_comments(new.at) {
            return Err(CommentRefusal::NoPost);
        }
        if new.blocked_by.contains(&self.author.id) {
            return Err(CommentRefusal::Blocked);
        }
        self.accept_made_comment(Comment {
            id: CommentId::new(),
            post_id: self.id,
            author: new.author,
            body: new.body,
            created_at: new.at,
        })
        .ok_or(CommentRefusal::NoPost)
    }

    /// `accept_comment` for a comment already made: a write that found the
    /// post changed under it applies the rule again, to the post as it now
    /// is, with the same comment (its id and the answer already rendered).
    pub fn accept_made_comment(&mut self, comment: Comment) -> Option<AcceptedComment> {
        if !self.takes_comments(comment.created_at) {
            return None;
        }
        // Commenting on your own post notifies no one.
        let notify = (comment.author.id != self.author.id).then_some(self.author.id);
        self.add_comment(comment.clone());
        Some(AcceptedComment { comment, notify })
    }

    /// The rule for editing: only the author edits, a post they can see, and
    /// with `if_match` (the client's `If-Match` tags) only while one of the
    /// tags (or `*`) names the post as it is. Callers apply it to the post as
    /// the write's transaction holds it, so the check and the change are one.
    pub fn apply_edit(&mut self, request: &EditRequest) -> Result<(), EditRefusal> {
        let EditRequest {
            by,
            edit,
            if_match,
            at: now,
            ..
        } = request;
        let now = *now;
        if !self.visible_to(Some(by), now) {
            return Err(EditRefusal::NotFound);
        }
        if self.author.id != by.id {
            return Err(EditRefusal::NotAuthor);
        }
        if let Some(tags) = if_match {
            let etag = self.etag();
            if !tags.iter().any(|t| t == "*" || *t == etag) {
                return Err(EditRefusal::PreconditionFailed);
            }
        }
        if let Some(caption) = &edit.caption {
            self.caption = caption.clone();
        }
        if let Some(alt_text) = &edit.alt_text {
            self.alt_text = alt_text.clone();
        }
        if let Some(expires_at) = edit.expires_at {
            self.expires_at = expires_at;
        }
        self.updated_at = now;
        self.version += 1;
        Ok(())
    }

    /// Counts a new comment in: the count, the newest comments and the version
    /// change as the comment's insert changes them. Newest is the highest id, so
    /// the kept copy stays exact without reading the post's comments again.
    pub fn add_comment(&mut self, comment: Comment) {
        self.comment_count += 1;
        self.version += 1;
        let at = self
            .last_comments
            .iter()
            .position(|c| c.id < comment.id)
            .unwrap_or(self.last_comments.len());
        self.last_comments.insert(at, comment);
        self.last_comments.truncate(LAST_COMMENTS);
    }

    /// Counts a deleted comment out. Returns whether it was one of the kept
    /// newest comments, whose list must then be read again from the comments.
    pub fn remove_comment(&mut self, id: CommentId) -> bool {
        self.comment_count -= 1;
        self.version += 1;
        let before = self.last_comments.len();
        self.last_comments.retain(|c| c.id != id);
        self.last_comments.len() != before
    }

    /// Whether `viewer` may see this post at `now`: ready and unexpired posts are
    /// public; a post still processing or failed is visible to its author only.
    pub fn visible_to(&self, viewer: Option<&User>, now: Timestamp) -> bool {
        if self.is_expired(now) {
            return false;
        }
        self.status == PostStatus::Ready || viewer.is_some_and(|u| u.id == self.author.id)
    }
}

/// Changes to a post; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct PostEdit {
    pub caption: Option<Caption>,
    pub alt_text: Option<AltText>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<Timestamp>>,
}

/// An edit as asked for: by whom, when, and with which `If-Match` tags.
#[derive(Debug, Clone)]
pub struct EditRequest {
    pub post: PostId,
    pub by: User,
    pub edit: PostEdit,
    /// The client's `If-Match` entity tags (or `*`), if it sent any.
    pub if_match: Option<Vec<String>>,
    pub at: Timestamp,
}

/// Why an edit is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditRefusal {
    /// No such post as far as the editor can see.
    NotFound,
    NotAuthor,
    /// `If-Match` names none of the post's current entity tags.
    PreconditionFailed,
}

/// A comment as asked for, before its post takes it.
#[derive(Debug, Clone)]
pub struct NewComment {
    pub post_id: PostId,
    pub author: User,
    pub body: CommentBody,
    pub at: Timestamp,
    /// The users who block the author: their posts take no comment from them.
    pub blocked_by: std::sync::Arc<[UserId]>,
}

/// Why a post takes no comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentRefusal {
    /// No such post as the commenter sees it (not ready, expired or gone).
    NoPost,
    /// The post's author blocks the commenter.
    Blocked,
}

/// A comment a post took, and whom it notifies.
#[derive(Debug, Clone)]
pub struct AcceptedComment {
    pub comment: Comment,
    pub notify: Option<UserId>,
}

/// Everything needed to insert a post and its processing job.
#[derive(Debug, Clone)]
pub struct NewPost {
    pub id: PostId,
    pub author: User,
    pub caption: Caption,
    pub alt_text: AltText,
    pub filter: PostFilter,
    pub original_key: String,
    pub original_format: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

impl NewPost {
    /// The post as it stands once inserted: processing, without comments.
    pub fn as_post(&self) -> Post {
        Post {
            id: self.id,
            author: self.author.clone(),
            caption: self.caption.clone(),
            alt_text: self.alt_text.clone(),
            status: PostStatus::Processing,
            failure_reason: None,
            filter: self.filter,
            created_at: self.created_at,
            updated_at: self.created_at,
            expires_at: self.expires_at,
            comment_count: 0,
            image: None,
            last_comments: Vec::new(),
            version: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions() {
        assert!(Caption::parse(String::new()).is_ok());
        assert!(Caption::parse("ü".repeat(2200)).is_ok());
        assert!(Caption::parse("x".repeat(2201)).is_err());
        assert!(AltText::parse("ü".repeat(1500)).is_ok());
        assert!(AltText::parse("x".repeat(1501)).is_err());
        assert!(AltText::parse("a\u{7}b".into()).is_err());
    }

    #[test]
    fn filters() {
        assert_eq!(PostFilter::parse(None, None), Ok(PostFilter::None));
        assert_eq!(
            PostFilter::parse(Some("grayscale"), None),
            Ok(PostFilter::Grayscale)
        );
        assert_eq!(
            PostFilter::parse(Some("dither"), None),
            Ok(PostFilter::Dither { levels: 2 })
        );
        assert_eq!(
            PostFilter::parse(Some("dither"), Some(16)),
            Ok(PostFilter::Dither { levels: 16 })
        );
        assert!(PostFilter::parse(Some("dither"), Some(17)).is_err());
        assert!(PostFilter::parse(Some("dither"), Some(1)).is_err());
        assert!(PostFilter::parse(Some("sepia"), None).is_err());
        assert!(PostFilter::parse(Some("none"), Some(4)).is_err());
    }

    fn someone() -> User {
        User {
            id: crate::UserId::new(),
            username: crate::Username::from_trusted("someone".into()),
            created_at: crate::now(),
        }
    }

    fn post_with(last_comments: Vec<Comment>) -> Post {
        let now = crate::now();
        Post {
            id: PostId::new(),
            author: someone(),
            caption: Caption::from_trusted(String::new()),
            alt_text: AltText::default(),
            status: PostStatus::Ready,
            failure_reason: None,
            filter: PostFilter::None,
            created_at: now,
            updated_at: now,
            expires_at: None,
            comment_count: last_comments.len() as i64,
            image: None,
            last_comments,
            version: 3,
        }
    }

    fn comment(id: CommentId) -> Comment {
        Comment {
            id,
            post_id: PostId::new(),
            author: someone(),
            body: crate::CommentBody::from_trusted("hi".into()),
            created_at: crate::now(),
        }
    }

    fn ids(post: &Post) -> Vec<CommentId> {
        post.last_comments.iter().map(|c| c.id).collect()
    }

    #[test]
    fn a_new_comment_is_counted_and_kept_newest_first() {
        let [a, b, c] = [CommentId::new(), CommentId::new(), CommentId::new()];
        let mut post = post_with(vec![]);
        post.add_comment(comment(a));
        assert_eq!(
            (post.comment_count, post.version, ids(&post)),
            (1, 4, vec![a])
        );
        post.add_comment(comment(b));
        assert_eq!(ids(&post), vec![b, a]);
        post.add_comment(comment(c));
        assert_eq!((post.comment_count, ids(&post)), (3, vec![c, b]));
    }

    #[test]
    fn an_older_id_lands_where_its_order_puts_it() {
        let [a, b, c] = [CommentId::new(), CommentId::new(), CommentId::new()];
        let mut post = post_with(vec![comment(c), comment(a)]);
        post.add_comment(comment(b));
        assert_eq!(ids(&post), vec![c, b]);
        let mut post = post_with(vec![comment(c), comment(b)]);
        post.add_comment(comment(a));
        assert_eq!((post.comment_count, ids(&post)), (3, vec![c, b]));
    }

    #[test]
    fn removing_says_whether_the_kept_comments_need_a_refill() {
        let [a, b, c] = [CommentId::new(), CommentId::new(), CommentId::new()];
        let mut post = post_with(vec![comment(c), comment(b)]);
        post.comment_count = 3;
        assert!(!post.remove_comment(a));
        assert_eq!(
            (post.comment_count, post.version, ids(&post)),
            (2, 4, vec![c, b])
        );
        assert!(post.remove_comment(c));
        assert_eq!((post.comment_count, ids(&post)), (1, vec![b]));
    }

    #[test]
    fn only_ready_unexpired_posts_take_comments() {
        let now = crate::now();
        let mut post = post_with(vec![]);
        assert!(post.takes_comments(now));
        post.expires_at = Some(now);
        assert!(!post.takes_comments(now));
        post.expires_at = None;
        post.status = PostStatus::Processing;
        assert!(!post.takes_comments(now));
    }

    fn new_comment(post: &Post, author: &User, blocked_by: &[UserId]) -> NewComment {
        NewComment {
            post_id: post.id,
            author: author.clone(),
            body: crate::CommentBody::from_trusted("hi".into()),
            at: crate::now(),
            blocked_by: blocked_by.into(),
        }
    }

    #[test]
    fn commenting_notifies_the_author_unless_it_is_their_own_post() {
        let mut post = post_with(vec![]);
        let other = someone();
        let accepted = post
            .accept_comment(new_comment(&post, &other, &[]))
            .unwrap();
        assert_eq!(accepted.notify, Some(post.author.id));
        assert_eq!(accepted.comment.post_id, post.id);
        assert_eq!(
            (post.comment_count, ids(&post)),
            (1, vec![accepted.comment.id])
        );
        let own = post
            .accept_comment(new_comment(&post, &post.author.clone(), &[]))
            .unwrap();
        assert_eq!(own.notify, None);
        post.status = PostStatus::Processing;
        assert_eq!(
            post.accept_comment(new_comment(&post, &other, &[]))
                .unwrap_err(),
            CommentRefusal::NoPost
        );
        assert_eq!(post.comment_count, 2);
    }

    #[test]
    fn a_post_takes_no_comment_from_someone_its_author_blocks() {
        let mut post = post_with(vec![]);
        let (blocked, stranger) = (someone(), someone());
        let blockers = [stranger.id, post.author.id];
        assert_eq!(
            post.accept_comment(new_comment(&post, &blocked, &blockers))
                .unwrap_err(),
            CommentRefusal::Blocked
        );
        assert_eq!(post.comment_count, 0, "nothing was counted");
        let unrelated = [stranger.id];
        assert!(
            post.accept_comment(new_comment(&post, &blocked, &unrelated))
                .is_ok()
        );
    }

    #[test]
    fn only_the_author_edits_and_if_match_must_name_the_post_as_it_is() {
        let now = crate::now();
        let mut post = post_with(vec![]);
        let author = post.author.clone();
        let edit = PostEdit {
            caption: Some(Caption::from_trusted("new".into())),
            alt_text: Some(AltText::from_trusted("a red door".into())),
            expires_at: Some(None),
        };
        let request = |by: &User, edit: &PostEdit, if_match: Option<Vec<String>>| EditRequest {
            post: PostId::new(),
            by: by.clone(),
            edit: edit.clone(),
            if_match,
            at: now,
        };
        assert_eq!(
            post.apply_edit(&request(&someone(), &edit, None)),
            Err(EditRefusal::NotAuthor)
        );
        let stale = Some(vec!["\"stale\"".to_owned()]);
        assert_eq!(
            post.apply_edit(&request(&author, &edit, stale)),
            Err(EditRefusal::PreconditionFailed)
        );
        assert_eq!(post.version, 3, "a refused edit changes nothing");
        let current = Some(vec![post.etag()]);
        post.apply_edit(&request(&author, &edit, current)).unwrap();
        assert_eq!((post.caption.as_str(), post.version), ("new", 4));
        assert_eq!(post.alt_text.as_str(), "a red door");
        let any = Some(vec!["*".to_owned()]);
        post.apply_edit(&request(&author, &PostEdit::default(), any))
            .unwrap();
        assert_eq!(post.version, 5);
        post.expires_at = Some(now);
        assert_eq!(
            post.apply_edit(&request(&author, &edit, None)),
            Err(EditRefusal::NotFound)
        );
    }

    #[test]
    fn expiry_bounds() {
        assert!(ExpiresIn::parse(0).is_err());
        assert!(ExpiresIn::parse(1).is_ok());
        assert!(ExpiresIn::parse(i64::MAX).is_err());
    }
}
