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
//! A page whose posts are not kept costs more this way than read with its
//! renderings at once (a second statement, and an index descent per post
//! instead of a step along the page's range), as when pages are read
//! uniformly from a feed far larger than what is kept. So the node watches
//! how many of its pages' posts it had kept (`Hits`), and while that share is
//! low it reads pages with their renderings. One such page in `PROBE_EVERY`
//! still looks its posts up and keeps their renderings, so the share is
//! measured and a working set that fits is learnt; the others cost nothing
//! here (measured at 1M posts: looking up and keeping every post of every
//! page cost the server ~20 µs a page, ~8% of the pages/s).
//!
//! The cache itself is `quick_cache` (bounded by bytes, sharded, scan
//! resistant); this file only names what is kept.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::read_batches::FeedRow;

type Key = (uuid::Uuid, i64);

#[derive(Clone)]
struct ByLength;

impl Weighter<Key, Box<str>> for ByLength {
    fn weight(&self, _: &Key, rendering: &Box<str>) -> u64 {
        // The key and the map's own entry beside the text.
        rendering.len() as u64 + 64
    }
}

/// The renderings kept (`None` when the node keeps none,
/// `--rendering-cache-mib 0`), and how many of its pages' posts were kept. A
/// kept rendering is handed out as a copy, made under the shard's read lock:
/// the page copies it into its answer anyway, and a shared `Arc` would add
/// two atomic updates of one counter per post, which the cores reading the
/// same popular posts contend for.
pub struct KeptRenderings {
    cache: Option<Cache<Key, Box<str>, ByLength>>,
    hits: Hits,
}

impl KeptRenderings {
    /// Keeps up to `bytes` of renderings (none for 0).
    pub fn new(bytes: u64) -> Self {
        let estimated_items = (bytes / 1_500).max(1) as usize;
        KeptRenderings {
            cache: (bytes > 0).then(|| Cache::with_weighter(estimated_items, bytes, ByLength)),
            hits: Hits::default(),
        }
    }

    /// How the next page is best read.
    pub fn plan(&self) -> PagePlan {
        self.hits.plan(self.cache.is_some())
    }

    /// Each row's rendering as kept, else as the page read it (then kept);
    /// `None` for a post whose rendering the page did not read. Notes how
    /// many were kept.
    pub fn look_up(&self, rows: &mut [FeedRow]) -> Vec<Option<String>> {
        let mut kept = 0;
        let renderings = rows
            .iter_mut()
            .map(|row| match self.get(row.id, row.version) {
                Some(json) => {
                    kept += 1;
                    Some(json)
                }
                None => row.rendering.take().inspect(|json| {
                    self.keep(row.id, row.version, json);
                }),
            })
            .collect();
        self.hits.note(kept, rows.len() as u64);
        renderings
    }

    fn get(&self, id: uuid::Uuid, version: i64) -> Option<String> {
        self.cache.as_ref()?.get(&(id, version)).map(String::from)
    }

    pub fn keep(&self, id: uuid::Uuid, version: i64, rendering: &str) {
        if let Some(cache) = &self.cache {
            cache.insert((id, version), Box::from(rendering));
        }
    }
}

/// The share of looked-up posts that were kept, over the last few thousand
/// lookups (both counts are halved as they pass `WINDOW`).
#[derive(Default)]
struct Hits {
    kept: AtomicU64,
    looked: AtomicU64,
    pages: AtomicU64,
}

/// How a page is read, and whether its posts are looked up among the kept.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PagePlan {
    /// From the index alone; every post looked up, the rest read after.
    IndexOnly,
    /// With the renderings; `probe`: its posts looked up and kept.
    WithRenderings { probe: bool },
}

/// One page in this many, while pages are read with their renderings.
const PROBE_EVERY: u64 = 8;

/// Lookups before the share decides anything: a new node reads from the
/// index alone, and every test that reads a few pages sees that one way.
const FIRST_LOOKUPS: u64 = 1_000;
/// Lookups the share is taken over.
const WINDOW: u64 = 8_192;
/// The share of kept posts above which reading pages from the index alone
/// costs PostgreSQL less: a post not kept costs an index descent and a table
/// page in the second statement, about three times what the same post costs
/// a page read with its renderings, so below ~2/3 kept the index-only way
/// loses, and the second statement's own cost moves the line up.
const INDEX_ONLY_FROM: f64 = 0.8;

impl Hits {
    fn note(&self, kept: u64, looked: u64) {
        let before = self.looked.fetch_add(looked, Relaxed);
        self.kept.fetch_add(kept, Relaxed);
        if before + looked > WINDOW {
            // Two pages may halve at once; the share stays about right.
            self.looked.store((before + looked) / 2, Relaxed);
            self.kept.store(self.kept.load(Relaxed) / 2, Relaxed);
        }
    }

    /// How the next page is best read, on a node that keeps renderings
    /// (`any`) or none.
    fn plan(&self, any: bool) -> PagePlan {
        if any && self.mostly_kept() {
            return PagePlan::IndexOnly;
        }
        let page = self.pages.fetch_add(1, Relaxed);
        PagePlan::WithRenderings {
            probe: any && page.is_multiple_of(PROBE_EVERY),
        }
    }

    fn mostly_kept(&self) -> bool {
        let looked = self.looked.load(Relaxed);
        looked < FIRST_LOOKUPS || self.kept.load(Relaxed) as f64 >= INDEX_ONLY_FROM * looked as f64
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
    fn pages_are_read_with_renderings_while_few_of_their_posts_were_kept() {
        let hits = Hits::default();
        assert_eq!(hits.plan(true), PagePlan::IndexOnly, "a new node");
        for _ in 0..100 {
            hits.note(4, 20);
        }
        let plans: Vec<PagePlan> = (0..16).map(|_| hits.plan(true)).collect();
        let probes = plans
            .iter()
            .filter(|p| **p == PagePlan::WithRenderings { probe: true })
            .count();
        assert_eq!(
            (probes, plans.len() - probes),
            (2, 14),
            "1 in 5 kept: with renderings, one page in 8 probed: {plans:?}"
        );
        for _ in 0..1_000 {
            hits.note(19, 20);
        }
        assert_eq!(
            hits.plan(true),
            PagePlan::IndexOnly,
            "19 in 20 kept, the old share forgotten"
        );
        assert_eq!(
            hits.plan(false),
            PagePlan::WithRenderings { probe: false },
            "a node keeping none"
        );
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
