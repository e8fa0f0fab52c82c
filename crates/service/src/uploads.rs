//! Resumable uploads (tus 1.0.0): the rules, independent of HTTP. An upload's
//! bytes are stored as one blob per append ("chunk"), committed with the new
//! offset in one transaction, so an acknowledged offset always has durable
//! bytes behind it, on any backend and whichever node served the append.
//! Chunks are joined only when a post is created from the upload; on S3 this
//! avoids multipart parts' 5 MiB minimum entirely, at the cost of one copy.

use std::io::Write;
use std::time::{Duration, Instant};

use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use super::posts::StagedImage;
use super::{CreatePost, MAX_IMAGE_BYTES, ServiceError, ServiceResult, Services};
use domain::{Post, Timestamp, UploadId, User, earlier, later, now};
use store::{ChunkCommit, KeyAnswer, Upload, UploadChunk, UploadLock};

/// How long an append is presumed alive after its last commit. Past it, its
/// lock is taken without asking; the holder has nothing uncommitted by then,
/// since it commits whatever it holds at least every `COMMIT_EVERY`.
const APPEND_LEASE: Duration = Duration::from_secs(3);
/// A running append commits what it received at least this often…
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// …and whenever this much is waiting, so a dropped connection loses little.
const COMMIT_BYTES: u64 = 1024 * 1024;
/// How long a new request waits for a holder to let go before it takes the
/// lock anyway (fencing the holder, whose next commit then fails)…
const TAKEOVER_WAIT: Duration = Duration::from_millis(900);
/// …unless the holder answered that it is committing what it received: it is
/// alive, and waiting a little longer saves those bytes from being sent again.
const RELEASING_WAIT: Duration = Duration::from_secs(3);
/// How often a waiting request looks again, and a holder looks for release requests.
const LOCK_POLL: Duration = Duration::from_millis(50);
const HOLDER_POLL: Duration = Duration::from_millis(150);
/// A holder asked to let go first keeps what already arrived: it reads on until
/// the body pauses this long, for at most `DRAIN_MAX`.
const DRAIN_QUIET: Duration = Duration::from_millis(150);
const DRAIN_MAX: Duration = Duration::from_secs(1);

/// The right to append to an upload, held by one request at a time. It moves
/// forward with each commit (`start` is where the next byte goes).
pub struct AppendLease {
    pub upload: Upload,
    pub start: u64,
    token: uuid::Uuid,
}

impl AppendLease {
    /// Bytes this append may still add.
    pub fn room(&self) -> u64 {
        self.upload.length - self.start
    }
}

/// Whether a lock can be taken without asking its holder: nobody holds it,
/// or the holder has been silent past its lease (its node may be gone).
fn lock_is_free(lock: &UploadLock, at: Timestamp) -> bool {
    match (lock.token, lock.until) {
        (None, _) => true,
        (Some(_), None) => true,
        (Some(_), Some(until)) => until <= at,
    }
}

/// Upload-Metadata: comma-separated `key` or `key base64value` pairs.
fn check_metadata(raw: &str) -> Result<(), String> {
    if raw.len() > 4096 {
        return Err("Upload-Metadata must be at most 4096 bytes".into());
    }
    use base64::Engine;
    for pair in raw.split(',') {
        let mut parts = pair.trim().split(' ');
        let key = parts.next().unwrap_or_default();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "Upload-Metadata keys must be non-empty ASCII without spaces or commas".into(),
            );
        }
        if let Some(value) = parts.next()
            && base64::engine::general_purpose::STANDARD
                .decode(value)
                .is_err()
        {
            return Err(format!(
                "the Upload-Metadata value of {key:?} is not base64"
            ));
        }
        if parts.next().is_some() {
            return Err("Upload-Metadata pairs are \"key base64value\"".into());
        }
    }
    Ok(())
}

impl Services {
    pub async fn create_upload(
        &self,
        owner: &User,
        length: u64,
        metadata: Option<String>,
        answer: Option<KeyAnswer<Upload>>,
    ) -> ServiceResult<Upload> {
        if length > MAX_IMAGE_BYTES {
            return Err(ServiceError::PayloadTooLarge {
                max: MAX_IMAGE_BYTES,
            });
        }
        if let Some(m) = metadata.as_deref().filter(|m| !m.is_empty()) {
            check_metadata(m)
                .map_err(|e| domain::ValidationErrors::single("Upload-Metadata", e))?;
        }
        let created_at = now();
        let upload = Upload {
            id: UploadId::new(),
            owner: owner.id,
            length,
            offset: 0,
            metadata: metadata.filter(|m| !m.is_empty()),
            created_at,
            expires_at: later(created_at, self.settings.upload_ttl),
        };
        self.store.create_upload(&upload, answer).await?;
        Ok(upload)
    }

    /// The caller's own upload. Others' uploads are indistinguishable from missing ones.
    pub async fn upload(&self, id: UploadId, owner: &User) -> ServiceResult<Upload> {
        match self.store.upload(id).await? {
            Some(u) if u.owner == owner.id => {
                if u.expires_at <= now() {
                    return Err(ServiceError::Gone("the upload expired"));
                }
                Ok(u)
            }
            _ => Err(ServiceError::NotFound("no such upload")),
        }
    }

    /// Waits until no other request holds the upload's lock: a holder is asked
    /// to commit what it has and let go, and after `TAKEOVER_WAIT` it is fenced
    /// (this is how a connection that died silently gives its upload back).
    /// Then swaps the lock to `next` (a new holder, or none) and returns the
    /// offset the upload settled at. Works across nodes: all of it goes through
    /// the store.
    async fn take_upload_lock(
        &self,
        id: UploadId,
        next: impl Fn(&UploadLock) -> Option<(uuid::Uuid, Timestamp)>,
    ) -> ServiceResult<UploadLock> {
        let started = Instant::now();
        let mut deadline = started + TAKEOVER_WAIT;
        loop {
            let lock = self
                .store
                .upload_lock(id)
                .await?
                .ok_or(ServiceError::NotFound("no such upload"))?;
            let holder = lock.token;
            if lock.releasing {
                deadline = deadline.max(started + RELEASING_WAIT);
            }
            if lock_is_free(&lock, now()) || Instant::now() >= deadline {
                if holder.is_none() && next(&lock).is_none() {
                    return Ok(lock);
                }
                if self
                    .store
                    .swap_upload_lock(id, holder, lock.offset, next(&lock))
                    .await?
                {
                    if holder.is_some() {
                        tracing::info!(upload = %id, offset = lock.offset, "took over an upload from a silent request");
                    }
                    return Ok(lock);
                }
                continue; // the holder committed or let go meanwhile: look again
            }
            if let (Some(token), false) = (holder, lock.release_wanted) {
                self.store.request_upload_release(id, token).await?;
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// The caller's upload as it stands once no request is appending to it
    /// (HEAD): a silent append is made to commit and let go first, so the offset
    /// is final and the client can resume from it at once.
    pub async fn settled_upload(&self, id: UploadId, owner: &User) -> ServiceResult<Upload> {
        let mut upload = self.upload(id, owner).await?;
        upload.offset = self.take_upload_lock(id, |_| None).await?.offset;
        Ok(upload)
    }

    /// Takes the append lock at `offset`, before any byte of the body is read.
    pub async fn lease_append(
        &self,
        id: UploadId,
        owner: &User,
        offset: u64,
    ) -> ServiceResult<AppendLease> {
        let upload = self.upload(id, owner).await?;
        let token = uuid::Uuid::new_v4();
        let until = later(now(), APPEND_LEASE);
        // Only the right offset takes the lock; a wrong one still settles the
        // upload (so the 409 reports the final offset) and leaves it free.
        let lock = self
            .take_upload_lock(id, |lock| (lock.offset == offset).then_some((token, until)))
            .await?;
        if lock.offset != offset {
            return Err(ServiceError::OffsetMismatch {
                current: lock.offset,
            });
        }
        Ok(AppendLease {
            upload,
            start: offset,
            token,
        })
    }

    /// Stores `file` (the next `length` bytes) durably, then advances the offset.
    /// With `keep`, the lease stays held for more; the answer says whether
    /// another request asked for the upload meanwhile. A fenced lease (taken
    /// over by a newer request) gets a 409 and its bytes are discarded.
    pub async fn commit_append(
        &self,
        lease: &mut AppendLease,
        file: TempPath,
        length: u64,
        keep: bool,
    ) -> ServiceResult<bool> {
        if length == 0 {
            if !keep {
                self.abandon_append(lease).await;
            }
            return Ok(false);
        }
        let chunk = UploadChunk {
            key: format!(
                "uploads/{}/{:012}-{}",
                lease.upload.id,
                lease.start,
                lease.token.simple()
            ),
            start: lease.start,
            length,
        };
        self.blobs.put_file(&chunk.key, &file).await?;
        let t = now();
        // An error here is ambiguous (the commit may have happened): the blob is
        // left for the orphan sweep rather than deleted under a row that may name it.
        let committed = self
            .store
            .commit_chunk(ChunkCommit {
                upload: lease.upload.id,
                token: lease.token,
                chunk: chunk.clone(),
                expires_at: later(t, self.settings.upload_ttl),
                keep_until: keep.then(|| later(t, APPEND_LEASE)),
            })
            .await?;
        let Some(release_wanted) = committed else {
            // Fenced: a newer request owns the upload; these bytes were never acknowledged.
            self.store.queue_blob_deletion(&chunk.key).await?;
            return Err(ServiceError::Conflict(
                "the upload was taken over by a newer request".into(),
            ));
        };
        lease.start += length;
        metrics::counter!("upload_chunks_committed_total").increment(1);
        Ok(release_wanted)
    }

    /// Whether the holder of `lease` should stop: another request asked for
    /// the upload, or already took it.
    pub async fn append_superseded(&self, lease: &AppendLease) -> ServiceResult<bool> {
        Ok(match self.store.upload_lock(lease.upload.id).await? {
            Some(lock) if lock.token != Some(lease.token) => true,
            Some(lock) => lock.release_wanted,
            None => true,
        })
    }

    /// Gives the lock back without storing anything more (e.g. a checksum mismatch).
    pub async fn abandon_append(&self, lease: &AppendLease) {
        if let Err(e) = self.store.unlock_upload(lease.upload.id, lease.token).await {
            tracing::warn!(error = %e, "releasing an upload lock; it will expire by itself");
        }
    }

    /// Receives an append's body: bytes are staged and committed as they
    /// arrive (every `COMMIT_BYTES` or `COMMIT_EVERY`), so a connection that
    /// drops, silently or not, loses at most what it sent since the last commit,
    /// and a request that asks for the upload meanwhile gets it within
    /// `HOLDER_POLL` plus one commit. With a promised checksum, the body is
    /// all-or-nothing instead (tus: a mismatching chunk is discarded whole).
    /// Returns the offset reached.
    pub async fn receive_append<S, E>(
        &self,
        mut lease: AppendLease,
        mut body: S,
        expected: Option<Digest>,
    ) -> ServiceResult<u64>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        let id = lease.upload.id;
        let incremental = expected.is_none();
        let mut staged = Staged::new(&self.settings.staging_dir, expected)?;
        let mut last_commit = Instant::now();
        let mut poll = tokio::time::interval(HOLDER_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ended = false;
        let outcome: ServiceResult<()> = loop {
            tokio::select! {
                frame = body.next() => match frame {
                    Some(Ok(bytes)) => {
                        if staged.len + bytes.len() as u64 > lease.room() {
                            break Err(ServiceError::PayloadTooLarge { max: MAX_IMAGE_BYTES });
                        }
                        staged.write(&bytes).await?;
                        if incremental && staged.len >= COMMIT_BYTES {
                            last_commit = Instant::now();
                            if self.commit_staged(&mut lease, &mut staged).await? {
                                break self.let_go(&lease, &mut body, &mut staged).await;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::info!(upload = %id, error = %e, "upload body broke off");
                        break Ok(());
                    }
                    None => {
                        ended = true;
                        break Ok(());
                    }
                },
                _ = poll.tick() => {
                    if incremental && staged.len > 0 && last_commit.elapsed() >= COMMIT_EVERY {
                        last_commit = Instant::now();
                        if self.commit_staged(&mut lease, &mut staged).await? {
                            break self.let_go(&lease, &mut body, &mut staged).await;
                        }
                    } else if self.append_superseded(&lease).await? {
                        break self.let_go(&lease, &mut body, &mut staged).await;
                    }
                }
            }
        };
        metrics::counter!("upload_bytes_total", "kind" => "tus").increment(staged.received);
        if let Err(e) = outcome {
            // What was committed stays; what is staged is dropped with the lock.
            self.abandon_append(&lease).await;
            return Err(e);
        }
        let intact = ended && staged.digest_matches();
        if !incremental && !intact {
            self.abandon_append(&lease).await;
            return Err(ServiceError::ChecksumMismatch);
        }
        let (file, len) = staged.finish().await?;
        self.commit_append(&mut lease, file, len, false).await?;
        Ok(lease.start)
    }

    /// Commits what is staged and goes on holding the upload; true if the
    /// holder was asked to let go.
    async fn commit_staged(
        &self,
        lease: &mut AppendLease,
        staged: &mut Staged,
    ) -> ServiceResult<bool> {
        let (file, len) = staged.take(&self.settings.staging_dir).await?;
        self.commit_append(lease, file, len, true).await
    }

    /// Another request asked for the upload: tell it this holder is letting go,
    /// and stage what already reached this server, so that it is committed
    /// (by the caller's last commit) rather than sent again.
    async fn let_go<S, E>(
        &self,
        lease: &AppendLease,
        body: &mut S,
        staged: &mut Staged,
    ) -> ServiceResult<()>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    {
        tracing::info!(upload = %lease.upload.id, "another request asked for this upload; letting go");
        self.store
            .acknowledge_upload_release(lease.upload.id, lease.token)
            .await?;
        drain_arrived(body, staged, lease.room()).await
    }

    pub async fn terminate_upload(&self, id: UploadId, owner: &User) -> ServiceResult<()> {
        self.upload(id, owner).await?;
        self.store.delete_upload(id).await?;
        if let Err(e) = self.collect_garbage().await {
            tracing::warn!(error = %e, "deleting the chunks of a terminated upload; the sweeper will retry");
        }
        Ok(())
    }

    /// Creates a post from a finished upload, consuming it exactly once.
    pub async fn create_post_from_upload(
        &self,
        author: &User,
        input: CreatePost,
        id: UploadId,
        answer: Option<KeyAnswer<Post>>,
    ) -> ServiceResult<Post> {
        let unavailable = || ServiceError::from(store::StoreError::UploadUnavailable);
        let upload = self.upload(id, author).await.map_err(|_| unavailable())?;
        if upload.offset != upload.length {
            return Err(unavailable());
        }
        let staged = self.join_chunks(&upload).await?;
        self.create_post_with(author, input, staged, Some(id), answer)
            .await
    }

    /// Joins an upload's chunks into one local file, in order.
    async fn join_chunks(&self, upload: &Upload) -> ServiceResult<StagedImage> {
        let chunks = self.store.upload_chunks(upload.id).await?;
        let mut joined = tempfile::NamedTempFile::new_in(&self.settings.staging_dir)
            .map_err(anyhow::Error::from)?;
        let mut expected = 0;
        for chunk in chunks {
            if chunk.start != expected {
                return Err(ServiceError::Internal(anyhow::anyhow!(
                    "upload {} has a gap at {expected}",
                    upload.id
                )));
            }
            let local = self
                .blobs
                .local_copy(&chunk.key, &self.settings.staging_dir)
                .await?;
            let path = local.path().to_owned();
            joined = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                std::io::copy(&mut std::fs::File::open(path)?, joined.as_file_mut())?;
                joined.flush()?;
                Ok(joined)
            })
            .await
            .map_err(anyhow::Error::from)??;
            expected += chunk.length;
        }
        if expected != upload.length {
            return Err(ServiceError::Internal(anyhow::anyhow!(
                "upload {} is incomplete",
                upload.id
            )));
        }
        Ok(StagedImage {
            file: joined.into_temp_path(),
            size: expected,
        })
    }

    /// Removes expired uploads and idempotency records; run periodically by any node.
    pub async fn sweep_expired(&self) -> anyhow::Result<u64> {
        let t = now();
        let mut removed = self.store.purge_keys(t).await?;
        removed += self
            .store
            .purge_sessions(earlier(t, self.settings.session_ttl))
            .await?;
        removed += self
            .store
            .purge_events(earlier(t, self.settings.event_retention))
            .await?;
        // Expired posts already vanished from every read; now their rows and blobs go.
        for id in self.store.expired_posts(t, 500).await? {
            removed += u64::from(self.store.delete_post(id).await?.is_some());
            self.feed_cache.invalidate();
        }
        removed += self.store.purge_exports(t).await?;
        for id in self.store.expired_uploads(t, 500).await? {
            removed += u64::from(self.store.delete_upload(id).await?);
        }
        if let Some((limits, _)) = &self.settings.rate_limits {
            limits.forget_idle().await?;
        }
        self.collect_garbage().await?;
        Ok(removed)
    }
}

/// Stages the body's bytes that have already reached this server: frames keep
/// coming while the connection's buffers empty, so it reads until the body
/// pauses for `DRAIN_QUIET` (a silent link has nothing more) or `DRAIN_MAX`
/// has passed (the asker is waiting for the lock).
async fn drain_arrived<S, E>(body: &mut S, staged: &mut Staged, room: u64) -> ServiceResult<()>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    use futures_util::StreamExt;
    let deadline = Instant::now() + DRAIN_MAX;
    while let Ok(Some(Ok(bytes))) = tokio::time::timeout(DRAIN_QUIET, body.next()).await {
        if staged.len + bytes.len() as u64 > room {
            break;
        }
        staged.write(&bytes).await?;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(())
}

/// A digest the client promised for an append's body (tus `checksum`).
pub enum Digest {
    Sha1(Vec<u8>),
    Sha256(Vec<u8>),
}

/// The bytes of an append not committed yet, in a staging file.
struct Staged {
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: TempPath,
    /// Bytes staged since the last commit.
    len: u64,
    /// Bytes received by this request in all.
    received: u64,
    expected: Option<Digest>,
    sha1: sha1::Sha1,
    sha256: sha2::Sha256,
}

impl Staged {
    fn new(dir: &std::path::Path, expected: Option<Digest>) -> ServiceResult<Self> {
        use sha2::Digest as _;
        let (file, path) = tempfile::NamedTempFile::new_in(dir)
            .map_err(anyhow::Error::from)?
            .into_parts();
        Ok(Staged {
            file: tokio::io::BufWriter::with_capacity(64 * 1024, tokio::fs::File::from_std(file)),
            path,
            len: 0,
            received: 0,
            expected,
            sha1: sha1::Sha1::new(),
            sha256: sha2::Sha256::new(),
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> ServiceResult<()> {
        use sha2::Digest as _;
        match self.expected {
            Some(Digest::Sha1(_)) => self.sha1.update(bytes),
            Some(Digest::Sha256(_)) => self.sha256.update(bytes),
            None => {}
        }
        self.file
            .write_all(bytes)
            .await
            .map_err(anyhow::Error::from)?;
        self.len += bytes.len() as u64;
        self.received += bytes.len() as u64;
        Ok(())
    }

    fn digest_matches(&self) -> bool {
        use sha2::Digest as _;
        match &self.expected {
            None => true,
            Some(Digest::Sha1(d)) => self.sha1.clone().finalize().as_slice() == d.as_slice(),
            Some(Digest::Sha256(d)) => self.sha256.clone().finalize().as_slice() == d.as_slice(),
        }
    }

    /// Hands over the last staged bytes.
    async fn finish(mut self) -> ServiceResult<(TempPath, u64)> {
        self.file.flush().await.map_err(anyhow::Error::from)?;
        Ok((self.path, self.len))
    }

    /// Hands over the staged bytes and starts a new staging file.
    async fn take(&mut self, dir: &std::path::Path) -> ServiceResult<(TempPath, u64)> {
        self.file.flush().await.map_err(anyhow::Error::from)?;
        let next = Staged::new(dir, None)?;
        let file = std::mem::replace(&mut self.file, next.file);
        drop(file);
        let path = std::mem::replace(&mut self.path, next.path);
        Ok((path, std::mem::take(&mut self.len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_format() {
        assert!(check_metadata("filename d29ybGQucG5n,is_confidential").is_ok());
        assert!(check_metadata("filename d29ybGQucG5n, type aW1hZ2UvcG5n").is_ok());
        assert!(check_metadata("filename not*base64").is_err());
        assert!(check_metadata(",").is_err());
        assert!(check_metadata("a b c").is_err());
    }
}
