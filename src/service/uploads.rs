//! Resumable uploads (tus 1.0.0): the rules, independent of HTTP. An upload's
//! bytes are stored as one blob per append ("chunk"), committed with the new
//! offset in one transaction, so an acknowledged offset always has durable
//! bytes behind it, on any backend and whichever node served the append.
//! Chunks are joined only when a post is created from the upload; on S3 this
//! avoids multipart parts' 5 MiB minimum entirely, at the cost of one copy.

use std::io::Write;
use std::time::Duration;

use tempfile::TempPath;

use super::posts::StagedImage;
use super::{CreatePost, MAX_IMAGE_BYTES, ServiceError, ServiceResult, Services};
use crate::domain::{Post, Timestamp, UploadId, User, now};
use crate::store::{AppendLock, Upload, UploadChunk};

/// How long an append holds its lock without renewing it; a crashed node's lock frees itself.
const APPEND_LEASE: Duration = Duration::from_secs(30);

/// The right to append to an upload at `start`, held by one request at a time.
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

fn later(t: Timestamp, d: Duration) -> Timestamp {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(1))
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
    ) -> ServiceResult<Upload> {
        if length > MAX_IMAGE_BYTES {
            return Err(ServiceError::PayloadTooLarge {
                max: MAX_IMAGE_BYTES,
            });
        }
        if let Some(m) = metadata.as_deref().filter(|m| !m.is_empty()) {
            check_metadata(m)
                .map_err(|e| crate::domain::ValidationErrors::single("Upload-Metadata", e))?;
        }
        let created_at = now();
        let upload = Upload {
            id: UploadId::new(),
            owner: owner.id,
            length,
            offset: 0,
            metadata: metadata.filter(|m| !m.is_empty()),
            created_at,
            expires_at: later(created_at, self.upload_ttl),
        };
        self.store.create_upload(&upload).await?;
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

    /// Takes the append lock at `offset`, before any byte of the body is read.
    pub async fn lease_append(
        &self,
        id: UploadId,
        owner: &User,
        offset: u64,
    ) -> ServiceResult<AppendLease> {
        let upload = self.upload(id, owner).await?;
        let token = uuid::Uuid::new_v4();
        let t = now();
        match self
            .store
            .lock_upload(id, offset, token, later(t, APPEND_LEASE), t)
            .await?
        {
            AppendLock::Granted => Ok(AppendLease {
                upload,
                start: offset,
                token,
            }),
            AppendLock::OffsetMismatch { current } => Err(ServiceError::OffsetMismatch { current }),
            AppendLock::Busy => Err(ServiceError::Conflict(
                "another PATCH to this upload is in progress".into(),
            )),
            AppendLock::NotFound => Err(ServiceError::NotFound("no such upload")),
        }
    }

    /// Keeps the lock while a slow body streams in; false if it was lost.
    pub async fn renew_append(&self, lease: &AppendLease) -> ServiceResult<bool> {
        Ok(self
            .store
            .extend_upload_lock(lease.upload.id, lease.token, later(now(), APPEND_LEASE))
            .await?)
    }

    pub fn append_renewal_period(&self) -> Duration {
        APPEND_LEASE / 3
    }

    /// Stores the received bytes durably, then advances the offset; the new offset is returned.
    pub async fn commit_append(
        &self,
        lease: AppendLease,
        file: TempPath,
        length: u64,
    ) -> ServiceResult<u64> {
        if length == 0 {
            let offset = lease.start;
            self.abandon_append(lease).await;
            return Ok(offset);
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
        let expires = later(now(), self.upload_ttl);
        if !self
            .store
            .commit_chunk(lease.upload.id, lease.token, &chunk, expires)
            .await?
        {
            // The lock expired and another append took over: these bytes were never acknowledged.
            self.store.queue_blob_deletion(&chunk.key).await?;
            return Err(ServiceError::Conflict(
                "the upload changed while this PATCH was running".into(),
            ));
        }
        Ok(lease.start + length)
    }

    /// Gives the lock back without storing anything (e.g. a checksum mismatch).
    pub async fn abandon_append(&self, lease: AppendLease) {
        if let Err(e) = self.store.unlock_upload(lease.upload.id, lease.token).await {
            tracing::warn!(error = %e, "releasing an upload lock; it will expire by itself");
        }
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
    ) -> ServiceResult<Post> {
        let unavailable = || ServiceError::from(crate::store::StoreError::UploadUnavailable);
        let upload = self.upload(id, author).await.map_err(|_| unavailable())?;
        if upload.offset != upload.length {
            return Err(unavailable());
        }
        let staged = self.join_chunks(&upload).await?;
        self.create_post_with(author, input, staged, Some(id)).await
    }

    /// Joins an upload's chunks into one local file, in order.
    async fn join_chunks(&self, upload: &Upload) -> ServiceResult<StagedImage> {
        let chunks = self.store.upload_chunks(upload.id).await?;
        let mut joined =
            tempfile::NamedTempFile::new_in(&self.staging_dir).map_err(anyhow::Error::from)?;
        let mut expected = 0;
        for chunk in chunks {
            if chunk.start != expected {
                return Err(ServiceError::Internal(anyhow::anyhow!(
                    "upload {} has a gap at {expected}",
                    upload.id
                )));
            }
            let local = self.blobs.local_copy(&chunk.key, &self.staging_dir).await?;
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
        let retention =
            chrono::Duration::from_std(self.event_retention).unwrap_or(chrono::Duration::days(7));
        removed += self.store.purge_events(t - retention).await?;
        // Expired posts already vanished from every read; now their rows and blobs go.
        for id in self.store.expired_posts(t, 500).await? {
            removed += u64::from(self.store.delete_post(id).await?.is_some());
            self.feed_cache.invalidate();
        }
        for id in self.store.expired_uploads(t, 500).await? {
            removed += u64::from(self.store.delete_upload(id).await?);
        }
        if let Some((limits, _)) = &self.rate_limits {
            limits.forget_idle().await?;
        }
        self.collect_garbage().await?;
        Ok(removed)
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
