//! Blobs no row names: left by a crash between storing a blob and committing
//! the row that names it, or by a failure whose outcome was unknown (the blob
//! is kept then, rather than deleted under a row that may name it). The
//! sweeper goes round the blob store a page at a time and deletes the blobs
//! that were written more than `ORPHAN_AGE` ago and that no row names; the age
//! leaves every write in flight time to commit.

use std::time::Duration;

use super::Services;
use domain::{PostId, now};

/// Blobs younger than this are never judged: their rows may still be committing.
pub const ORPHAN_AGE: Duration = Duration::from_secs(24 * 3600);
/// Blobs looked at per prefix and sweep.
const PAGE: usize = 1000;
/// The kinds of blob a row names one to one (derived images are content
/// addressed and shared; their deletions are queued with their posts).
const PREFIXES: [&str; 2] = ["uploads/", "originals/"];

impl Services {
    /// Deletes the orphans in the next page of each prefix; returns how many.
    pub async fn collect_orphans(&self, older_than: Duration) -> anyhow::Result<usize> {
        let cutoff = domain::earlier(now(), older_than);
        let mut removed = 0;
        for prefix in PREFIXES {
            let after = self.orphan_scan.lock().expect("scan").get(prefix).cloned();
            let page = self.blobs.list_page(prefix, after.as_deref(), PAGE).await?;
            // The next sweep goes on after this page, or from the start once round.
            let next = (page.len() == PAGE).then(|| page[PAGE - 1].0.clone());
            for (key, written) in page {
                if written < cutoff && !self.blob_is_named(&key).await? {
                    tracing::info!(key, "deleting an orphaned blob");
                    self.blobs.delete(&key).await?;
                    removed += 1;
                }
            }
            let mut scan = self.orphan_scan.lock().expect("scan");
            match next {
                Some(key) => scan.insert(prefix, key),
                None => scan.remove(prefix),
            };
        }
        Ok(removed)
    }

    /// Whether a row names the blob `key` (unknown layouts are kept).
    async fn blob_is_named(&self, key: &str) -> anyhow::Result<bool> {
        if key.starts_with("uploads/") {
            return Ok(self.store.chunk_exists(key).await?);
        }
        match key.strip_prefix("originals/").map(str::parse::<PostId>) {
            Some(Ok(post)) => Ok(self.store.post(post).await?.is_some()),
            _ => Ok(true),
        }
    }
}
