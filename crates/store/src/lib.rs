//! Storage: narrow traits the services depend on, one implementation per
//! backend. SQL never leaves this module.

mod answers;
pub mod blobs;
pub mod last_comments;
pub mod postgres;
pub mod rate_limits;
pub mod sqlite;
pub mod transfer;
pub mod wakers;

use std::time::Duration;

use async_trait::async_trait;

use domain::export::{Export, ExportStatus};
use domain::safety::{
    AuditEntry, ModerationAction, Report, ReportReason, ReportStatus, ReportTarget, TargetKind,
    TargetSnapshot,
};
use domain::{
    AuditId, Comment, CommentId, CommentRefusal, EditRefusal, EditRequest, ExportId, FeedCursor,
    IdCursor, ImageInfo, NewComment, NewPost, Post, PostFilter, PostId, Remover, ReportId, Role,
    Timestamp, UploadId, User, UserId, Username,
};

pub use blobs::{BlobStore, LocalBlobStore, ObjectBlobStore};
pub use domain::idempotency::{KeyAnswer, KeyClaim, NewClaim, StoredResponse};
pub use domain::rendering::FeedEntry;
pub use domain::upload::{ChunkCommit, Upload, UploadChunk, UploadLock};

/// Failures a caller can act on are values; everything else is `Backend`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("username is taken")]
    UsernameTaken,
    #[error("the upload is unknown, unfinished or already used")]
    UploadUnavailable,
    #[error("storage backend error: {0}")]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

pub use domain::rendering::{POST_RENDERER, PostRenderer};

/// A user with the stored password hash, for logging in.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    /// Suspended by moderation: the password is right, but no session is given.
    pub suspended: bool,
}

/// The account a session token belongs to, as authentication needs it.
#[derive(Debug, Clone)]
pub struct SessionAccount {
    pub user: User,
    pub role: Role,
    pub last_used_at: Timestamp,
}

/// One of an account's sessions, for listing and revoking them.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub token_hash: [u8; 32],
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
}

/// The idempotency keys a user's requests claimed: stored as "<scope> <key>",
/// they are the range from "<scope> " up to "<scope>!" (' ' + 1).
pub(crate) fn idempotency_scope_range(user: UserId) -> (String, String) {
    let scope = domain::idempotency::user_scope(user);
    (format!("{scope} "), format!("{scope}!"))
}

/// A stored role. The column's CHECK admits only the three; were anything
/// else ever read, it grants nothing.
pub(crate) fn role_from_column(raw: &str) -> Role {
    Role::parse(raw).unwrap_or_default()
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_user(
        &self,
        user: &User,
        password_hash: &str,
        answer: Option<KeyAnswer<User>>,
    ) -> StoreResult<()>;
    async fn credentials(&self, username: &Username) -> StoreResult<Option<Credentials>>;
    /// A live (not deleted) user by id, with their role.
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<(User, Role)>>;
    async fn user_by_username(&self, username: &Username) -> StoreResult<Option<User>> {
        Ok(self.credentials(username).await?.map(|c| c.user))
    }
    async fn create_session(
        &self,
        token_hash: &[u8; 32],
        user: &User,
        now: Timestamp,
        answer: Option<KeyAnswer<User>>,
    ) -> StoreResult<()>;
    async fn user_by_session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionAccount>>;
    /// The user's sessions, most recently used first, at most `limit`.
    async fn sessions_of(&self, user: UserId, limit: u32) -> StoreResult<Vec<SessionRecord>>;
    /// Replaces the password hash and deletes every session of the user but
    /// `keep`, in one transaction (callers forget the user's cached tokens).
    async fn set_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<[u8; 32]>,
    ) -> StoreResult<()>;
    /// Gives the user `role`; the user, if there is one by that name.
    async fn set_role(&self, username: &Username, role: Role) -> StoreResult<Option<User>>;
    /// Starts deleting an account, in one transaction: marks it deleted (its
    /// content hidden from then on), frees its username, and deletes its
    /// sessions, blocks, events, exports and idempotency answers. Nothing if
    /// the account is gone or going already.
    async fn begin_account_deletion(&self, user: UserId, at: Timestamp) -> StoreResult<()>;
    /// Accounts whose deletion has begun and not finished.
    async fn accounts_being_deleted(&self) -> StoreResult<Vec<UserId>>;
    /// Accounts whose content every read hides: being deleted, or suspended.
    async fn hidden_accounts(&self) -> StoreResult<Vec<UserId>>;
    /// Up to `limit` of the author's comments, as (post, comment).
    async fn comments_by_author(
        &self,
        author: UserId,
        limit: u32,
    ) -> StoreResult<Vec<(PostId, CommentId)>>;
    /// Up to `limit` of the author's posts, whatever their status.
    async fn post_ids_by_author(&self, author: UserId, limit: u32) -> StoreResult<Vec<PostId>>;
    /// Up to `limit` of the owner's unfinished uploads.
    async fn upload_ids_of(&self, owner: UserId, limit: u32) -> StoreResult<Vec<UploadId>>;
    /// Deletes the account's row, once the purge removed what it made.
    async fn finish_account_deletion(&self, user: UserId) -> StoreResult<()>;
    /// How many comments each of `posts` has by any of `authors` (posts with none left out).
    async fn comment_counts_by(
        &self,
        authors: &[UserId],
        posts: &[PostId],
    ) -> StoreResult<Vec<(PostId, i64)>>;
    async fn touch_session(&self, token_hash: &[u8; 32], now: Timestamp) -> StoreResult<()>;
    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()>;
    /// Deletes sessions last used before `before`.
    async fn purge_sessions(&self, before: Timestamp) -> StoreResult<u64>;
}

/// What a deleted post leaves behind for the blob store to remove.
#[derive(Debug, Clone)]
pub struct DeletedPost {
    pub blob_keys: Vec<String>,
}

/// Comments a feed page reads for one of its entries: its post's newest
/// that are older than `before`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OlderComments {
    pub before: CommentId,
    pub limit: u32,
}

/// Which feed entries `PostStore::feed_with_comments` reads comments for,
/// and which: asked once per entry read, in feed order.
pub type CommentsWanted = std::sync::Arc<dyn Fn(&FeedEntry) -> Option<OlderComments> + Send + Sync>;

/// A window of the feed: `limit` entries after `after`, as ranked at `now`.
#[derive(Debug, Clone, Copy)]
pub struct FeedWindow {
    pub after: Option<FeedCursor>,
    pub limit: u32,
    pub now: Timestamp,
}

/// What `PostStore::feed_with_comments` read.
#[derive(Debug, Default)]
pub struct FeedWithComments {
    pub entries: Vec<FeedEntry>,
    /// The entries `wanted` picked, in feed order, with what it asked.
    pub wanted: Vec<(PostId, OlderComments)>,
    /// The comments read for them, newest first (those without any left out).
    pub comments: Vec<(PostId, Vec<Comment>)>,
}

#[async_trait]
pub trait PostStore: Send + Sync {
    /// Inserts the post (status processing) and its processing job in one
    /// transaction. With `from_upload`, that finished upload is consumed in the
    /// same transaction (its chunks queued for deletion); if it is no longer
    /// there, nothing is inserted and the error is `UploadUnavailable`.
    async fn create_post(
        &self,
        post: &NewPost,
        from_upload: Option<UploadId>,
        answer: Option<KeyAnswer<Post>>,
    ) -> StoreResult<Post>;
    async fn post(&self, id: PostId) -> StoreResult<Option<Post>>;
    /// Ready, unexpired posts by (comment_count desc, id desc), after `after`,
    /// rendered.
    async fn feed(
        &self,
        after: Option<FeedCursor>,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<FeedEntry>>;
    /// `feed`, and for each entry `wanted` picks, the comments it asks for:
    /// for a reader who hides someone, whose page patches the renderings
    /// that show them. One read where the backend can do both in one (the
    /// embedded database: one hand-off to a reader thread, not two).
    async fn feed_with_comments(
        &self,
        window: FeedWindow,
        wanted: CommentsWanted,
    ) -> StoreResult<FeedWithComments>;
    /// A user's ready, unexpired posts, newest first, after `after`.
    async fn posts_by_author(
        &self,
        author: UserId,
        after: Option<IdCursor>,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Post>>;
    /// Applies an edit by `by` if `Post::apply_edit` allows it, on the post as
    /// the write's transaction holds it; the edited post, or why not.
    async fn edit_post(&self, request: EditRequest) -> StoreResult<Result<Post, EditRefusal>>;
    /// Posts whose expiry has passed, for the sweeper.
    async fn expired_posts(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<PostId>>;
    /// Deletes the post, its comments and its job; the blobs it referenced are
    /// queued for deletion in the same transaction and returned.
    async fn delete_post(&self, id: PostId) -> StoreResult<Option<DeletedPost>>;
}

pub use domain::CommentDeletion;

/// A new comment and its post's comment count including it (which tells the
/// feed cache whether the post can have moved into a cached page).
pub struct CreatedComment {
    pub comment: Comment,
    pub post_comment_count: i64,
}

#[async_trait]
pub trait CommentStore: Send + Sync {
    /// Adds a comment to a post that takes it (`Post::accept_comment`),
    /// keeping `comment_count` and the stored last comments exact.
    async fn create_comment(
        &self,
        new: NewComment,
        answer: Option<KeyAnswer<Comment>>,
    ) -> StoreResult<Result<CreatedComment, CommentRefusal>>;
    async fn comments(
        &self,
        post_id: PostId,
        after: Option<IdCursor>,
        limit: u32,
    ) -> StoreResult<Vec<Comment>>;
    /// The newest `per_post` comments of each post, newest first, in one
    /// call (posts without comments left out).
    async fn newest_comments_of(
        &self,
        posts: &[PostId],
        per_post: u32,
    ) -> StoreResult<Vec<(PostId, Vec<Comment>)>>;
    /// Deletes the comment if `CommentDeletion::decide` allows it, on a post
    /// `by` can see at `now`, keeping the post's count and newest comments exact.
    async fn delete_comment(
        &self,
        post_id: PostId,
        comment_id: CommentId,
        by: &Remover,
        now: Timestamp,
    ) -> StoreResult<CommentDeletion>;
}

/// A claimed image-processing job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: uuid::Uuid,
    pub post_id: PostId,
    pub original_key: String,
    /// The original's format (`png`, `jpeg`, `bmp`), for metrics.
    pub format: String,
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
    /// Jobs waiting or running, and the age of the oldest.
    async fn queue_stats(&self, now: Timestamp) -> StoreResult<(u64, Option<Duration>)>;
    /// Waits until a job may be runnable or `timeout` passes (whichever first).
    async fn wait_for_jobs(&self, timeout: Duration);
}

/// A report about to be filed, with what its target looked like.
#[derive(Debug, Clone)]
pub struct NewReport {
    pub report: Report,
    pub reporter: UserId,
    pub snapshot: TargetSnapshot,
}

/// What filing a report came to: one open report per reporter and target.
#[derive(Debug, Clone)]
pub enum Filed {
    New(Report),
    /// The reporter's open report on that target, filed earlier.
    Existing(Report),
}

/// A target's reports of one status, as the moderation queue shows them.
#[derive(Debug, Clone)]
pub struct ReportGroup {
    /// The oldest report: its id names the group, its snapshot shows the target.
    pub first: Report,
    pub snapshot: TargetSnapshot,
    pub report_count: i64,
    /// The reasons given, each once, in the order of `ReportReason`.
    pub reasons: Vec<ReportReason>,
    pub last_reported_at: Timestamp,
}

/// A moderator's decision as stored, in one transaction: the target's open
/// reports closed, the audit entry, and a notice to the author.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub target: ReportTarget,
    pub action: ModerationAction,
    pub entry: AuditEntry,
    /// An event for the target's author: (user, kind, data).
    pub notify: Option<(UserId, &'static str, serde_json::Value)>,
    /// The account to suspend (its sessions deleted) in the same transaction.
    pub suspend: Option<UserId>,
}

/// The distinct reasons a group's reports gave, as stored, in `ReportReason` order.
pub(crate) fn group_reasons<'a>(stored: impl IntoIterator<Item = &'a str>) -> Vec<ReportReason> {
    let given: Vec<ReportReason> = stored
        .into_iter()
        .filter_map(|r| ReportReason::parse(r).ok())
        .collect();
    ReportReason::ALL
        .into_iter()
        .filter(|r| given.contains(r))
        .collect()
}

/// A stored value that only this crate writes, read back: a value it could
/// not have written is a corrupt row.
pub(crate) fn stored<T>(parsed: Result<T, String>, column: &str) -> anyhow::Result<T> {
    parsed.map_err(|e| anyhow::anyhow!("stored {column} unreadable: {e}"))
}

/// A report row as both backends read it, decoded in one place.
pub(crate) struct StoredReport {
    pub id: uuid::Uuid,
    pub target_type: String,
    pub target_id: uuid::Uuid,
    pub reason: String,
    pub note: String,
    pub status: String,
    pub created_at: Timestamp,
}

impl StoredReport {
    pub fn decode(self) -> anyhow::Result<Report> {
        Ok(Report {
            id: ReportId::from_uuid(self.id),
            target: ReportTarget {
                kind: stored(TargetKind::parse(&self.target_type), "target_type")?,
                id: self.target_id,
            },
            reason: stored(ReportReason::parse(&self.reason), "reason")?,
            note: domain::safety::ReportNote::from_trusted(self.note),
            status: stored(ReportStatus::parse(&self.status), "status")?,
            created_at: self.created_at,
        })
    }
}

/// A queue group as both backends read it, decoded in one place.
pub(crate) struct StoredGroup {
    pub first: StoredReport,
    pub snapshot: String,
    pub count: i64,
    pub reasons: Vec<String>,
    pub last: Timestamp,
}

impl StoredGroup {
    pub fn decode(self) -> anyhow::Result<ReportGroup> {
        Ok(ReportGroup {
            first: self.first.decode()?,
            snapshot: decode_snapshot(&self.snapshot)?,
            report_count: self.count,
            reasons: group_reasons(self.reasons.iter().map(String::as_str)),
            last_reported_at: self.last,
        })
    }
}

pub(crate) fn decode_snapshot(stored: &str) -> anyhow::Result<TargetSnapshot> {
    serde_json::from_str(stored).map_err(|e| anyhow::anyhow!("stored snapshot unreadable: {e}"))
}

/// A report row and its snapshot, decoded.
pub(crate) fn decode_report_with_snapshot(
    (report, snapshot): (StoredReport, String),
) -> anyhow::Result<(Report, TargetSnapshot)> {
    Ok((report.decode()?, decode_snapshot(&snapshot)?))
}

/// An audit row as both backends read it, decoded in one place.
pub(crate) struct StoredAudit {
    pub id: uuid::Uuid,
    pub moderator: String,
    pub action: String,
    pub target: String,
    pub note: String,
    pub created_at: Timestamp,
}

impl StoredAudit {
    pub fn decode(self) -> anyhow::Result<AuditEntry> {
        Ok(AuditEntry {
            id: AuditId::from_uuid(self.id),
            moderator: self.moderator,
            action: self.action,
            target: serde_json::from_str(&self.target)
                .map_err(|e| anyhow::anyhow!("stored audit target unreadable: {e}"))?,
            note: self.note,
            created_at: self.created_at,
        })
    }
}

#[async_trait]
pub trait SafetyStore: Send + Sync {
    /// A comment by id, on whatever post.
    async fn comment(&self, id: CommentId) -> StoreResult<Option<Comment>>;
    async fn file_report(&self, new: NewReport) -> StoreResult<Filed>;
    /// The report and the snapshot of its target taken when it was filed.
    async fn report(&self, id: ReportId) -> StoreResult<Option<(Report, TargetSnapshot)>>;
    /// Targets with reports of `status`, oldest first report first, after the
    /// group whose first report is `after`.
    async fn report_groups(
        &self,
        status: ReportStatus,
        after: Option<ReportId>,
        limit: u32,
    ) -> StoreResult<Vec<ReportGroup>>;
    /// Resolves the target's open reports and records the decision; how many
    /// reports it closed.
    async fn resolve_reports(&self, resolution: Resolution) -> StoreResult<u64>;
    /// Records an action that resolves no report (a role change, a reinstatement).
    async fn record_audit(&self, entry: AuditEntry) -> StoreResult<()>;
    /// Lifts the suspension of `user` and records `entry`, in one transaction;
    /// false (and nothing recorded) if the account is not suspended.
    async fn reinstate(&self, user: UserId, entry: AuditEntry) -> StoreResult<bool>;
    /// The audit log, newest first, before `before`.
    async fn audit_log(&self, before: Option<AuditId>, limit: u32) -> StoreResult<Vec<AuditEntry>>;
    /// `blocker` blocks `blocked` (again: nothing changes).
    async fn block(&self, blocker: UserId, blocked: UserId, at: Timestamp) -> StoreResult<()>;
    async fn unblock(&self, blocker: UserId, blocked: UserId) -> StoreResult<()>;
    /// Whom `blocker` blocks, most recent first.
    async fn blocked_users(&self, blocker: UserId) -> StoreResult<Vec<User>>;
    /// Whom the user blocks, and who blocks them.
    async fn block_lists(&self, user: UserId) -> StoreResult<BlockLists>;
    /// Bans an original's bytes by their SHA-256 (again: nothing changes).
    async fn ban_image(&self, sha256: [u8; 32], at: Timestamp) -> StoreResult<()>;
    async fn image_banned(&self, sha256: [u8; 32]) -> StoreResult<bool>;
}

/// A user's blocks both ways.
#[derive(Debug, Clone, Default)]
pub struct BlockLists {
    pub blocked: Vec<UserId>,
    pub blocked_by: Vec<UserId>,
}

#[async_trait]
pub trait ExportStore: Send + Sync {
    /// Records a new export to build, unless the user has one being built:
    /// then that one.
    async fn create_export(&self, export: &Export) -> StoreResult<Export>;
    async fn export(&self, id: ExportId) -> StoreResult<Option<Export>>;
    /// Takes an export to build whose builder's lease lapsed (or that has
    /// none), leased until `lease_until`.
    async fn claim_export(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<Export>>;
    /// Marks it ready or failed and, when ready, tells its owner with an
    /// `export.ready` event carrying `data`, in one transaction.
    async fn finish_export(
        &self,
        id: ExportId,
        status: ExportStatus,
        data: serde_json::Value,
    ) -> StoreResult<()>;
    /// Deletes exports past their expiry, their zips queued for deletion; how many.
    async fn purge_exports(&self, now: Timestamp) -> StoreResult<u64>;
    /// The author's comments in (post, id) order after `after`, for the export.
    async fn comments_of_author(
        &self,
        author: UserId,
        after: Option<(PostId, CommentId)>,
        limit: u32,
    ) -> StoreResult<Vec<Comment>>;
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
pub trait UploadStore: Send + Sync {
    async fn create_upload(
        &self,
        upload: &Upload,
        answer: Option<KeyAnswer<Upload>>,
    ) -> StoreResult<()>;
    async fn upload(&self, id: UploadId) -> StoreResult<Option<Upload>>;
    async fn upload_lock(&self, id: UploadId) -> StoreResult<Option<UploadLock>>;
    /// Compare-and-swap of the lock: if the holder is still `expected` and the
    /// offset still `offset`, the lock becomes `new` (a token and its lease, or
    /// free) and any release request is cleared. False if either had changed.
    async fn swap_upload_lock(
        &self,
        id: UploadId,
        expected: Option<uuid::Uuid>,
        offset: u64,
        new: Option<(uuid::Uuid, Timestamp)>,
    ) -> StoreResult<bool>;
    /// Asks the holder `token` to commit what it received and let go.
    async fn request_upload_release(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()>;
    /// The holder `token` says it is letting go (committing what it has).
    async fn acknowledge_upload_release(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()>;
    /// Records a stored chunk at the locked offset, advances the offset and moves
    /// the expiry, atomically; with `keep_until` the lock stays held (its lease
    /// renewed), without it the lock is released. `None` if the lock or the
    /// offset had changed (a takeover fenced this request); else whether a
    /// release was asked for.
    async fn commit_chunk(&self, commit: ChunkCommit) -> StoreResult<Option<bool>>;
    async fn unlock_upload(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()>;
    /// The chunks in byte order.
    async fn upload_chunks(&self, id: UploadId) -> StoreResult<Vec<UploadChunk>>;
    /// Whether a committed chunk is stored under `key`.
    async fn chunk_exists(&self, key: &str) -> StoreResult<bool>;
    /// Deletes the upload and queues its chunk blobs for deletion; false if there was none.
    async fn delete_upload(&self, id: UploadId) -> StoreResult<bool>;
    async fn expired_uploads(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<UploadId>>;
}

/// One notification for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub kind: String,
    /// JSON.
    pub data: String,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// The user's events after `after`, oldest first.
    async fn events_after(&self, user: UserId, after: i64, limit: u32) -> StoreResult<Vec<Event>>;
    /// The user's latest event number (0 if none).
    async fn last_event_seq(&self, user: UserId) -> StoreResult<i64>;
    /// Waits until `user` may have a new event, or `timeout`.
    async fn wait_for_events(&self, user: UserId, timeout: Duration);
    async fn purge_events(&self, before: Timestamp) -> StoreResult<u64>;
}

/// An event's key, "<user id>:<seq, zero-padded>", the same on every backend:
/// it sorts by user, then by seq, so a user's events are one key range.
pub fn event_key(user: &uuid::Uuid, seq: i64) -> String {
    format!("{}:{seq:020}", user.simple())
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Atomically claims `scope_key` for a request with `fingerprint`, leased
    /// until `lease_until`. An in-flight claim whose lease lapsed before `now`
    /// is taken over (its request's node died).
    async fn claim_key(&self, claim: NewClaim) -> StoreResult<KeyClaim>;
    /// Extends the lease of an in-flight claim while its request runs.
    async fn renew_key(&self, scope_key: &str, lease_until: Timestamp) -> StoreResult<()>;
    async fn complete_key(&self, scope_key: &str, response: &StoredResponse) -> StoreResult<()>;
    /// Forgets a claim whose request failed, so a retry runs afresh.
    async fn release_key(&self, scope_key: &str) -> StoreResult<()>;
    async fn purge_keys(&self, now: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait Store:
    AccountStore
    + PostStore
    + CommentStore
    + JobQueue
    + BlobGc
    + UploadStore
    + IdempotencyStore
    + EventStore
    + SafetyStore
    + ExportStore
    + transfer::Transfer
{
    /// The key that authenticates pagination cursors, shared by every node.
    async fn cursor_key(&self) -> StoreResult<Vec<u8>>;
    /// Answers when the database does.
    async fn ping(&self) -> StoreResult<()>;
    /// Takes the turn named `name` until `until` if nobody holds it at `now`
    /// (periodic chores that one node at a time should do, across all nodes).
    async fn take_turn(&self, name: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool>;
}

/// A turn's holder-until time as a settings value: big-endian, so that the
/// byte order the databases compare is the time order.
pub fn turn_value(until: Timestamp) -> Vec<u8> {
    until.timestamp_millis().to_be_bytes().to_vec()
}
