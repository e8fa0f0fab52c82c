//! Resumable uploads (tus): an upload's metadata, its stored chunks and the
//! append lock that lets one request at a time write to it.

use crate::{Timestamp, UploadId, UserId};

/// A resumable upload's metadata; its bytes are chunk blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: UploadId,
    pub owner: UserId,
    pub length: u64,
    pub offset: u64,
    pub metadata: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Bytes `start..start + length` of an upload, stored as the blob `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadChunk {
    pub key: String,
    pub start: u64,
    pub length: u64,
}

/// Who may append to an upload right now: the lock as stored. The backends
/// only store and swap it; the rules that read it are below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLock {
    /// Bytes durably stored and acknowledged.
    pub offset: u64,
    /// The request appending right now, if any.
    pub token: Option<uuid::Uuid>,
    /// Until when that request is presumed alive without a word from it.
    pub until: Option<Timestamp>,
    /// Another request asked the holder to commit what it has and let go.
    pub release_wanted: bool,
    /// The holder answered that request and is committing (it is alive).
    pub releasing: bool,
}

/// A stored chunk a lock holder commits: it counts only while `token` still
/// holds the lock and the offset is still the chunk's start. With
/// `keep_until` the holder keeps the lock (renewed); without, it lets go.
#[derive(Debug, Clone)]
pub struct ChunkCommit {
    pub upload: UploadId,
    pub token: uuid::Uuid,
    pub chunk: UploadChunk,
    /// The upload's new expiry.
    pub expires_at: Timestamp,
    pub keep_until: Option<Timestamp>,
}
