//! Storage: narrow traits the services depend on, one implementation per
//! backend. SQL never leaves this module.

pub mod blobs;
pub mod last_comments;
pub mod postgres;
pub mod sqlite;
pub mod transfer;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{
    Comment, CommentBody, CommentId, FeedCursor, IdCursor, ImageInfo, NewPost, Post, PostFilter,
    PostId, Timestamp, User, UserId, Username,
};

pub use blobs::{BlobStore, LocalBlobStore, ObjectBlobStore};

/// Failures a caller can act on are values; everything else is `Backend`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("username is taken")]
    UsernameTaken,
    #[error("storage backend error: {0}")]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user with the stored password hash, for logging in.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_user(&self, user: &User, password_hash: &str) -> StoreResult<()>;
    async fn credentials(&self, username: &Username) -> StoreResult<Option<Credentials>>;
    async fn user_by_username(&self, username: &Username) -> StoreResult<Option<User>>;
    async fn create_session(
        &self,
        token_hash: &[u8; 32],
        user_id: UserId,
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn user_by_session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<User>>;
    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()>;
}

/// What a deleted post leaves behind for the blob store to remove.
#[derive(Debug, Clone)]
pub struct DeletedPost {
    pub blob_keys: Vec<String>,
}

#[async_trait]
pub trait PostStore: Send + Sync {
    /// Inserts the post (status processing) and its processing job in one transaction.
    async fn create_post(&self, post: &NewPost) -> StoreResult<Post>;
    async fn post(&self, id: PostId) -> StoreResult<Option<Post>>;
    /// Ready, unexpired posts by (comment_count desc, id desc), after `after`.
    async fn feed(
        &self,
        after: Option<FeedCursor>,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Post>>;
    /// A user's ready, unexpired posts, newest first, after `after`.
    async fn posts_by_author(
        &self,
        author: UserId,
        after: Option<IdCursor>,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Post>>;
    /// Deletes the post, its comments and its job; the blobs it referenced are
    /// queued for deletion in the same transaction and returned.
    async fn delete_post(&self, id: PostId) -> StoreResult<Option<DeletedPost>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentDeletion {
    Deleted,
    NotFound,
    NotAuthor,
}

#[async_trait]
pub trait CommentStore: Send + Sync {
    /// Adds a comment to a ready, unexpired post, keeping `comment_count` and
    /// the stored last comments exact. `None` when no such post is visible.
    async fn create_comment(
        &self,
        post_id: PostId,
        author: &User,
        body: &CommentBody,
        now: Timestamp,
    ) -> StoreResult<Option<Comment>>;
    async fn comments(
        &self,
        post_id: PostId,
        after: Option<IdCursor>,
        limit: u32,
    ) -> StoreResult<Vec<Comment>>;
    async fn delete_comment(
        &self,
        post_id: PostId,
        comment_id: CommentId,
        by: UserId,
    ) -> StoreResult<CommentDeletion>;
}

/// A claimed image-processing job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: uuid::Uuid,
    pub post_id: PostId,
    pub original_key: String,
    pub filter: PostFilter,
    /// How many times this job had been claimed before, including this claim.
    pub attempt: u32,
    pub lease_token: uuid::Uuid,
}

/// How a job's post ends up when the job finishes for good.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    Ready(ImageInfo),
    Failed(String),
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Claims the oldest runnable job with a lease of `lease`.
    async fn claim_job(&self, lease: Duration, now: Timestamp) -> StoreResult<Option<Job>>;
    /// Extends the lease; false if the lease was lost (another worker took over).
    async fn extend_lease(&self, job: &Job, lease: Duration, now: Timestamp) -> StoreResult<bool>;
    /// Finishes the job and updates its post in one transaction. Returns false
    /// if the lease was lost or the post no longer exists (the caller then
    /// discards what it produced).
    async fn finish_job(&self, job: &Job, outcome: JobOutcome, now: Timestamp)
    -> StoreResult<bool>;
    /// Releases the job to run again at `retry_at`, recording `error`.
    async fn retry_job(&self, job: &Job, error: &str, retry_at: Timestamp) -> StoreResult<()>;
    /// Waits until a job may be runnable or `timeout` passes (whichever first).
    async fn wait_for_jobs(&self, timeout: Duration);
}

/// Blob deletions recorded by a committed transaction, done after it.
#[async_trait]
pub trait BlobGc: Send + Sync {
    async fn pending_blob_deletions(&self, limit: u32) -> StoreResult<Vec<String>>;
    async fn blob_deletion_done(&self, key: &str) -> StoreResult<()>;
    /// Queues a blob produced for a post that vanished meanwhile.
    async fn queue_blob_deletion(&self, key: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait Store:
    AccountStore + PostStore + CommentStore + JobQueue + BlobGc + transfer::Transfer
{
    /// The key that authenticates pagination cursors, shared by every node.
    async fn cursor_key(&self) -> StoreResult<Vec<u8>>;
    /// Answers when the database does.
    async fn ping(&self) -> StoreResult<()>;
}
