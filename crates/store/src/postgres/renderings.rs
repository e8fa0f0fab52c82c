//! The renderings of posts a node has read, kept by post and version, so a
//! feed page reads only its posts' places from PostgreSQL (an index-only scan
//! of `posts_feed`, migration 0018) and the renderings it has not kept.
//!
//! A post's `version` is bumped by every change to its representation (the
//! same promise its strong ETag rests on), so a rendering kept under
//! `(id, version)` never goes stale: a changed post is read under its new
//! version, and the old entry ages out. Nothing needs invalidating, on this
//! node or any other. Only renderings of this binary's renderer are kept
//! (the read asks for `rendered_version = POST_RENDERER.version`), so nodes
//! of two releases side by side each keep their own.
//!
//! The cache itself is `quick_cache` (bounded by bytes, sharded, scan
//! resistant); this file only names what is kept.

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;

type Key = (uuid::Uuid, i64);

#[derive(Clone)]
struct ByLength;

impl Weighter<Key, Arc<str>> for ByLength {
    fn weight(&self, _: &Key, rendering: &Arc<str>) -> u64 {
        // The key and the map's own entry beside the text.
        rendering.len() as u64 + 64
    }
}

/// `None` when the node keeps none (`--rendering-cache-mib 0`).
pub struct KeptRenderings(Option<Cache<Key, Arc<str>, ByLength>>);

impl KeptRenderings {
    /// Keeps up to `bytes` of renderings (none for 0).
    pub fn new(bytes: u64) -> Self {
        let estimated_items = (bytes / 1_500).max(1) as usize;
        KeptRenderings((bytes > 0).then(|| Cache::with_weighter(estimated_items, bytes, ByLength)))
    }

    pub fn get(&self, id: uuid::Uuid, version: i64) -> Option<Arc<str>> {
        self.0.as_ref()?.get(&(id, version))
    }

    pub fn keep(&self, id: uuid::Uuid, version: i64, rendering: &str) {
        if let Some(cache) = &self.0 {
            cache.insert((id, version), Arc::from(rendering));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendering_is_found_only_under_its_own_version() {
        let kept = KeptRenderings::new(1 << 20);
        let id = uuid::Uuid::now_v7();
        kept.keep(id, 3, "{\"v\":3}");
        assert_eq!(kept.get(id, 3).as_deref(), Some("{\"v\":3}"));
        assert_eq!(kept.get(id, 4), None, "a newer version is not the kept one");
        assert_eq!(kept.get(uuid::Uuid::now_v7(), 3), None);
    }

    #[test]
    fn a_node_told_to_keep_none_keeps_none() {
        let kept = KeptRenderings::new(0);
        let id = uuid::Uuid::now_v7();
        kept.keep(id, 0, "{}");
        assert_eq!(kept.get(id, 0), None);
    }

    #[test]
    fn what_is_kept_stays_within_its_bytes() {
        let kept = KeptRenderings::new(100_000);
        let rendering = "x".repeat(1_000);
        let ids: Vec<uuid::Uuid> = (0..1_000).map(|_| uuid::Uuid::now_v7()).collect();
        for id in &ids {
            kept.keep(*id, 0, &rendering);
        }
        let held = ids.iter().filter(|id| kept.get(**id, 0).is_some()).count();
        assert!(
            held > 0 && held * 1_064 <= 100_000,
            "{held} renderings of 1,000 bytes held in 100,000"
        );
    }
}
