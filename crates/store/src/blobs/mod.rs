//! Blob storage: originals and derived JPEGs, by key. Keys look like paths
//! (`originals/{post}`, `derived/{key}.jpg`) on every backend.

mod local;
mod object;

use std::path::{Path, PathBuf};

use anyhow::bail;
use async_trait::async_trait;
use bytes::Bytes;

pub use local::LocalBlobStore;
pub use object::ObjectBlobStore;

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Durably stores the file at `src` under `key`; `src` is consumed.
    async fn put_file(&self, key: &str, src: &Path) -> anyhow::Result<()>;
    /// Durably stores `bytes` under `key`.
    async fn put_bytes(&self, key: &str, bytes: Bytes) -> anyhow::Result<()>;
    /// The whole blob, or `None` if there is none under `key`.
    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>>;
    /// A local file holding the blob, for decoders that want a path: the blob
    /// itself where it is local, else a copy in `scratch_dir`.
    async fn local_copy(&self, key: &str, scratch_dir: &Path) -> anyhow::Result<LocalBlob>;
    /// The blob's size, or `None` if there is none under `key`.
    async fn size(&self, key: &str) -> anyhow::Result<Option<u64>>;
    /// Removes the blob; a missing blob is not an error.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Answers when the store does.
    async fn check(&self) -> anyhow::Result<()>;
    /// Up to `limit` blobs under `prefix` (which ends in `/`) with the time
    /// each was written, in key order, after `after` if given: a page of a
    /// scan that goes round the store.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<(String, domain::Timestamp)>>;
}

/// A blob as a local file, removed on drop if it was a temporary copy.
pub struct LocalBlob {
    path: PathBuf,
    _temp: Option<tempfile::TempPath>,
}

impl LocalBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Keys are paths relative to the root; refuse anything that could escape it.
fn check_key(key: &str) -> anyhow::Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
    if !ok {
        bail!("invalid blob key {key:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        assert!(check_key("originals/abc").is_ok());
        assert!(check_key("derived/0a1b.jpg").is_ok());
        for bad in [
            "", "../x", "a/../b", "/abs", "a//b", "a/./b", "sp ace", "a\\b",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
