//! The hot first pages of the feed, kept rendered in memory.
//!
//! Exactness: every write that can change the feed (a comment added or
//! deleted, a post edited, deleted, expired or becoming ready) bumps the
//! generation *after* it committed and *before* it is acknowledged, so a page
//! cached before that write is never served again by this process — a client
//! always reads its own writes, and no one reads a page older than a write this
//! node acknowledged. Writes made by *other* processes (more API nodes or
//! workers on PostgreSQL, a separate `imagegram worker`) and posts passing
//! their expiry time are not seen here; for those a page lives at most `ttl`
//! (default 1 s). That is the documented staleness bound.
//! Only the first page (no cursor) of each limit is cached: it is what nearly
//! every client asks for, and deep pages are too many to be hot.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// A rendered response: the body and its `Link` header value.
#[derive(Clone)]
pub struct CachedPage {
    pub body: Bytes,
    pub link: Option<String>,
}

struct Entry {
    generation: u64,
    stored: Instant,
    page: CachedPage,
}

pub struct FeedCache {
    generation: AtomicU64,
    ttl: Duration,
    pages: RwLock<HashMap<u32, Entry>>,
}

impl FeedCache {
    /// A cache whose pages live at most `ttl`; zero disables it.
    pub fn new(ttl: Duration) -> Self {
        FeedCache {
            generation: AtomicU64::new(0),
            ttl,
            pages: RwLock::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Forgets every cached page: call after a committed write that may change the feed.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The first page of `limit` items, if cached and still valid.
    pub fn get(&self, limit: u32) -> Option<CachedPage> {
        let generation = self.generation.load(Ordering::Acquire);
        let pages = self.pages.read().unwrap_or_else(|p| p.into_inner());
        let entry = pages.get(&limit)?;
        (entry.generation == generation && entry.stored.elapsed() < self.ttl)
            .then(|| entry.page.clone())
    }

    /// The generation to pass to [`FeedCache::put`]: read it *before* querying,
    /// so a write that lands during the query makes the result unstorable.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores a page read at `generation` (dropped if a write happened since).
    pub fn put(&self, limit: u32, generation: u64, page: CachedPage) {
        if !self.enabled() || generation != self.generation() {
            return;
        }
        let mut pages = self.pages.write().unwrap_or_else(|p| p.into_inner());
        pages.insert(
            limit,
            Entry {
                generation,
                stored: Instant::now(),
                page,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(s: &'static str) -> CachedPage {
        CachedPage {
            body: Bytes::from_static(s.as_bytes()),
            link: None,
        }
    }

    #[test]
    fn a_write_invalidates_at_once() {
        let cache = FeedCache::new(Duration::from_secs(60));
        let g = cache.generation();
        cache.put(20, g, page("a"));
        assert_eq!(cache.get(20).unwrap().body, "a");
        assert!(cache.get(10).is_none());
        cache.invalidate();
        assert!(cache.get(20).is_none());
    }

    #[test]
    fn a_page_read_before_a_write_is_not_stored() {
        let cache = FeedCache::new(Duration::from_secs(60));
        let g = cache.generation();
        cache.invalidate(); // a write commits while the query runs
        cache.put(20, g, page("stale"));
        assert!(cache.get(20).is_none());
    }

    #[test]
    fn pages_expire_after_the_ttl_and_zero_disables() {
        let cache = FeedCache::new(Duration::from_millis(20));
        cache.put(20, cache.generation(), page("a"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get(20).is_none());
        let off = FeedCache::new(Duration::ZERO);
        off.put(20, off.generation(), page("a"));
        assert!(off.get(20).is_none());
    }
}
