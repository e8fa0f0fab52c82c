//! Whose posts and comments a reader does not see: the users they block
//! (PRODUCT.md §3 Safety). Reads that would show any are filtered in the
//! service, once for every backend; a reader who hides no one keeps the
//! fast paths (stored renderings, the cached first feed page) untouched.

use std::sync::Arc;

use domain::{Comment, Post, UserId};

/// A set of user ids, kept as sorted integers: a lookup compares two words
/// per step, not 16 bytes one by one (callgrind: a blocker's page looks up
/// some fifty authors).
#[derive(Debug, Default)]
pub struct HiddenAuthors {
    keys: Vec<u128>,
}

impl HiddenAuthors {
    pub fn new(ids: Vec<UserId>) -> Self {
        let mut keys: Vec<u128> = ids.iter().map(|u| u.as_uuid().as_u128()).collect();
        keys.sort_unstable();
        keys.dedup();
        HiddenAuthors { keys }
    }

    /// The ids, for a store read.
    fn ids(&self) -> Vec<UserId> {
        let id = |k: &u128| UserId::from_uuid(uuid::Uuid::from_u128(*k));
        self.keys.iter().map(id).collect()
    }

    pub fn none() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn hides(&self, user: UserId) -> bool {
        !self.keys.is_empty() && self.keys.binary_search(&user.as_uuid().as_u128()).is_ok()
    }

    /// Whether a stored rendering names someone hidden as an author (the
    /// post's, or one of its newest comments').
    pub fn may_show_in(&self, rendering: &str) -> bool {
        !self.is_empty() && domain::rendering::rendered_authors(rendering).any(|u| self.hides(u))
    }
}

/// A reader's blocks both ways, as authentication found them.
#[derive(Debug, Clone)]
pub struct Blocks {
    /// The users this reader blocks: never shown to them.
    pub hidden: Arc<HiddenAuthors>,
    /// The users who block this reader: their posts take no comment from them.
    pub blocked_by: Arc<[UserId]>,
}

impl Default for Blocks {
    fn default() -> Self {
        Blocks {
            hidden: HiddenAuthors::none(),
            blocked_by: Arc::from([]),
        }
    }
}

/// Blocks one account may hold: each is checked on every read it makes.
pub const MAX_BLOCKS: usize = 1000;

/// Store pages a filtered listing reads at most for one page of its own; past
/// that it answers with what it found and a cursor to go on from.
const MAX_ROUNDS: usize = 10;

/// Whom one read hides: the reader's blocks, and accounts "gone" for
/// everyone: being deleted (they vanish at once while the purge removes their
/// content) or suspended (until reinstated). Their comments are still counted
/// in the stored `comment_count`, so reads subtract them.
#[derive(Debug, Clone)]
pub struct Hiding {
    blocked: Arc<HiddenAuthors>,
    gone: Arc<HiddenAuthors>,
}

impl Hiding {
    /// Hides only what every reader is hidden: the page is the same for all of them.
    pub fn blocks_no_one(&self) -> bool {
        self.blocked.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty() && self.gone.is_empty()
    }

    pub fn hides(&self, user: UserId) -> bool {
        self.blocked.hides(user) || self.gone.hides(user)
    }

    /// Whether it hides exactly whom `other` does.
    fn same_as(&self, other: &Hiding) -> bool {
        let same =
            |a: &Arc<HiddenAuthors>, b: &Arc<HiddenAuthors>| Arc::ptr_eq(a, b) || a.keys == b.keys;
        same(&self.blocked, &other.blocked) && same(&self.gone, &other.gone)
    }

    /// What to read to replace the comments by someone hidden that a stored
    /// rendering shows among its newest: as many comments older than the
    /// oldest it shows, and `SPARE_REPLACEMENTS` more in case some of those
    /// are hidden too. None when it shows no one hidden (its post's author is
    /// checked apart, from the feed entry).
    fn replacements_for(&self, rendering: &str) -> Option<store::OlderComments> {
        if self.is_empty() {
            return None;
        }
        let (mut hidden, mut oldest) = (0, None);
        for shown in domain::rendering::rendered_last_comments(rendering) {
            hidden += u32::from(self.hides(shown.author));
            oldest = Some(shown);
        }
        let before = oldest.filter(|_| hidden > 0)?.id()?;
        Some(store::OlderComments {
            before,
            limit: hidden + SPARE_REPLACEMENTS,
        })
    }

    fn hides_any_of(&self, comments: &[Comment]) -> bool {
        comments.iter().any(|c| self.hides(c.author.id))
    }
}

/// The accounts being deleted or suspended, as this process last read them: re-read when
/// older than the feed cache's bound, the same bound other processes' writes
/// take to show here.
pub(crate) struct GoneAuthors {
    ttl: std::time::Duration,
    state: std::sync::Mutex<(Arc<HiddenAuthors>, Option<std::time::Instant>)>,
}

impl GoneAuthors {
    pub fn new(ttl: std::time::Duration) -> Self {
        GoneAuthors {
            ttl,
            state: std::sync::Mutex::new((HiddenAuthors::none(), None)),
        }
    }

    fn fresh(&self) -> Option<Arc<HiddenAuthors>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (set, read_at) = &*state;
        read_at
            .is_some_and(|at| at.elapsed() < self.ttl)
            .then(|| set.clone())
    }

    /// Keeps a new reading: it, and whether it differs from the last.
    fn keep(&self, ids: Vec<UserId>) -> (Arc<HiddenAuthors>, bool) {
        let set = Arc::new(HiddenAuthors::new(ids));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let changed = state.0.keys != set.keys;
        *state = (set.clone(), Some(std::time::Instant::now()));
        (set, changed)
    }

    /// Forgets the reading, so the next read looks again (after a deletion here).
    fn forget(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = None;
    }
}

impl super::Services {
    /// Makes the next read look up the accounts being deleted or suspended again, and drops
    /// cached pages that may show them.
    pub(crate) fn forget_gone_authors(&self) {
        self.gone.forget();
        self.feed_cache.invalidate();
    }

    /// Whom `reader` (anyone, when `None`) does not see.
    pub async fn hiding(&self, reader: Option<&super::Account>) -> super::ServiceResult<Hiding> {
        let gone = match self.gone.fresh() {
            Some(gone) => gone,
            None => {
                let ids = self.store.hidden_accounts().await?;
                let (gone, changed) = self.gone.keep(ids);
                if changed {
                    // Pages cached before the change show what is now hidden.
                    self.feed_cache.invalidate();
                }
                gone
            }
        };
        let blocked = reader.map_or_else(HiddenAuthors::none, |a| a.blocks.hidden.clone());
        Ok(Hiding { blocked, gone })
    }

    /// The post as a reader who hides `hiding` sees it: none if its author is
    /// hidden, else with its newest comments by authors who are not, and its
    /// count without the comments of accounts being deleted.
    pub(crate) async fn shown(
        &self,
        mut post: Post,
        hiding: &Hiding,
    ) -> super::ServiceResult<Option<Post>> {
        if hiding.hides(post.author.id) {
            return Ok(None);
        }
        if hiding.hides_any_of(&post.last_comments) {
            post.last_comments = self
                .visible_comments(post.id, hiding, None, domain::LAST_COMMENTS as u32)
                .await?;
        }
        if let Some((_, n)) = self.gone_comments(hiding, &[post.id]).await?.first() {
            post.comment_count -= n;
        }
        Ok(Some(post))
    }

    /// Comments of accounts being deleted, per post (those with none left out).
    async fn gone_comments(
        &self,
        hiding: &Hiding,
        posts: &[domain::PostId],
    ) -> super::ServiceResult<Vec<(domain::PostId, i64)>> {
        if hiding.gone.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .comment_counts_by(&hiding.gone.ids(), posts)
            .await?)
    }

    /// Rewrites the renderings that show someone hidden among their newest
    /// comments (`read` with the page: the comments to replace them with) or
    /// count comments of gone accounts: without those, and with their count
    /// less those.
    async fn patch_renderings(
        &self,
        entries: &mut [domain::rendering::FeedEntry],
        hiding: &Hiding,
        read: &store::FeedWithComments,
    ) -> super::ServiceResult<()> {
        let ids: Vec<domain::PostId> = entries.iter().map(|e| e.id).collect();
        let recounted = self.gone_comments(hiding, &ids).await?;
        for entry in entries.iter_mut() {
            if let Some((_, asked)) = read.wanted.iter().find(|(id, _)| *id == entry.id) {
                let older = read
                    .comments
                    .iter()
                    .find(|(id, _)| *id == entry.id)
                    .map_or(&[][..], |(_, c)| c.as_slice());
                entry.json = self.replace_hidden(entry, hiding, older, asked).await?;
            }
            if let Some((_, minus)) = recounted.iter().find(|(id, _)| *id == entry.id) {
                // Its newest show no gone account (it would have been wanted),
                // so only the count changes.
                entry.json = with_count_less(&entry.json, *minus);
            }
        }
        Ok(())
    }

    /// An entry's rendering without the hidden comments among its newest:
    /// the visible ones kept as rendered, then visible ones from `older`
    /// (read as `asked`), or read on past them when too many are hidden.
    async fn replace_hidden(
        &self,
        entry: &domain::rendering::FeedEntry,
        hiding: &Hiding,
        older: &[Comment],
        asked: &store::OlderComments,
    ) -> super::ServiceResult<String> {
        use domain::rendering::{ShownComment, rendered_last_comments, with_comments_kept};
        let kept: Vec<ShownComment<'_>> = rendered_last_comments(&entry.json)
            .filter(|c| !hiding.hides(c.author))
            .collect();
        let missing = domain::LAST_COMMENTS.saturating_sub(kept.len());
        let mut more: Vec<Comment> = older
            .iter()
            .filter(|c| !hiding.hides(c.author.id))
            .take(missing)
            .cloned()
            .collect();
        if more.len() < missing && older.len() == asked.limit as usize {
            // More of them hidden than the spare covered: read on past them.
            let after = older.last().map(|c| domain::IdCursor(*c.id.as_bytes()));
            let wanted = (missing - more.len()) as u32;
            more.extend(
                self.visible_comments(entry.id, hiding, after, wanted)
                    .await?,
            );
        }
        Ok(with_comments_kept(&entry.json, &kept, &more))
    }

    /// Patches `entries[look]` from `newest` (each post's newest `per_post`
    /// comments) and `recounted` (its comments by gone accounts).
    async fn splice(
        &self,
        entries: &mut [domain::rendering::FeedEntry],
        look: &[usize],
        hiding: &Hiding,
        newest: &[(domain::PostId, Vec<Comment>)],
        per_post: u32,
        recounted: &[(domain::PostId, i64)],
    ) -> super::ServiceResult<()> {
        for &i in look {
            let entry = &mut entries[i];
            let read: &[Comment] = newest
                .iter()
                .find(|(id, _)| *id == entry.id)
                .map_or(&[], |(_, c)| c.as_slice());
            let mut last: Vec<Comment> = read
                .iter()
                .filter(|c| !hiding.hides(c.author.id))
                .take(domain::LAST_COMMENTS)
                .cloned()
                .collect();
            if last.len() < domain::LAST_COMMENTS && read.len() == per_post as usize {
                // All but a few of the newest are hidden: read on.
                last = self
                    .visible_comments(entry.id, hiding, None, domain::LAST_COMMENTS as u32)
                    .await?;
            }
            let minus = recounted
                .iter()
                .find(|(id, _)| *id == entry.id)
                .map_or(0, |(_, n)| *n);
            entry.json = patched(&entry.json, &last, minus);
        }
        Ok(())
    }

    /// The posts a first feed page is made from, for the cache: a little more
    /// than a page, so that readers who hide a few of them still fill theirs.
    pub(crate) async fn first_posts(
        &self,
        hiding: &Hiding,
        limit: domain::Limit,
    ) -> super::ServiceResult<FirstPosts> {
        let fetch = limit.get() + limit.get() / 2 + 8;
        let entries = self.store.feed(None, fetch, domain::now()).await?;
        let ids: Vec<domain::PostId> = entries.iter().map(|e| e.id).collect();
        Ok(FirstPosts {
            exhausted: (entries.len() as u32) < fetch,
            recounted: self.gone_comments(hiding, &ids).await?,
            authors: entries
                .iter()
                .map(|e| domain::rendering::rendered_authors(&e.json).collect())
                .collect(),
            entries,
            newest: tokio::sync::OnceCell::new(),
            made: std::sync::Mutex::default(),
        })
    }

    /// The first feed page for a reader who hides `hiding`, made from the
    /// cached `posts` without reading the feed again; `None` when the reader
    /// hides so many of them that the page needs posts beyond.
    pub(crate) async fn page_from_first_posts(
        &self,
        posts: &FirstPosts,
        hiding: &Hiding,
        limit: domain::Limit,
    ) -> super::ServiceResult<Option<super::Page<domain::rendering::FeedEntry>>> {
        if let Some(page) = posts.made_for(hiding, limit) {
            return Ok(Some(page));
        }
        let want = limit.get() as usize + 1;
        let kept: Vec<usize> = (0..posts.entries.len())
            .filter(|&i| !hiding.hides(posts.entries[i].author))
            .take(want)
            .collect();
        if kept.len() < want && !posts.exhausted {
            return Ok(None);
        }
        let on_page = kept.len().min(limit.get() as usize);
        // Which renderings change, from the authors found in them when the
        // page was cached (not by reading each rendering again).
        let look: Vec<usize> = (0..on_page)
            .filter(|&n| {
                let i = kept[n];
                posts.authors[i].iter().any(|u| hiding.hides(*u))
                    || posts
                        .recounted
                        .iter()
                        .any(|(id, _)| *id == posts.entries[i].id)
            })
            .collect();
        let mut shown: Vec<domain::rendering::FeedEntry> =
            kept.iter().map(|&i| posts.entries[i].clone()).collect();
        if !look.is_empty() {
            // Read once per cached page, by the first reader who needs it.
            let newest = posts
                .newest
                .get_or_try_init(|| {
                    let ids: Vec<domain::PostId> = posts.entries.iter().map(|e| e.id).collect();
                    async move { self.store.newest_comments_of(&ids, PER_CACHED_POST).await }
                })
                .await?;
            self.splice(
                &mut shown,
                &look,
                hiding,
                newest,
                PER_CACHED_POST,
                &posts.recounted,
            )
            .await?;
        }
        let page = super::Page::from_overfetch(shown, limit.get(), |e| {
            e.position().encode(&self.cursor_key)
        });
        posts.remember(hiding, limit, &page);
        Ok(Some(page))
    }

    /// Up to `limit` comments of the post after `after`, newest first, by
    /// authors `hiding` does not hide.
    pub(crate) async fn visible_comments(
        &self,
        post_id: domain::PostId,
        hiding: &Hiding,
        mut after: Option<domain::IdCursor>,
        limit: u32,
    ) -> super::ServiceResult<Vec<Comment>> {
        // A page a little larger than asked: a few of them may be hidden.
        let fetch = limit.max(8);
        let mut shown = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let batch = self.store.comments(post_id, after, fetch).await?;
            let full = batch.len() as u32 == fetch;
            after = batch.last().map(|c| domain::IdCursor(*c.id.as_bytes()));
            shown.extend(batch.into_iter().filter(|c| !hiding.hides(c.author.id)));
            if shown.len() as u32 >= limit || !full {
                break;
            }
        }
        shown.truncate(limit as usize);
        Ok(shown)
    }

    /// A feed page for a reader who hides someone: the same ranking, without
    /// their posts, and without their comments among the newest two or in the
    /// counts. Most renderings name no one hidden and are served as stored;
    /// the others are patched, their newest comments read for all of them at once.
    pub(crate) async fn feed_hiding(
        &self,
        after: Option<domain::FeedCursor>,
        limit: domain::Limit,
        hiding: &Hiding,
    ) -> super::ServiceResult<super::Page<domain::rendering::FeedEntry>> {
        use domain::rendering::FeedEntry;
        let want = limit.get() + 1;
        // A little more than a page, so that a few hidden posts need no second read.
        let fetch = want + want / 8 + 2;
        // The renderings to patch, picked where the page is read so that their
        // newest comments come with it: one store read per page. Entries are
        // offered in feed order; past the page's room none is wanted.
        let room = std::sync::atomic::AtomicUsize::new(want as usize);
        let to_patch: store::CommentsWanted = {
            let hiding = hiding.clone();
            Arc::new(move |e| {
                use std::sync::atomic::Ordering::Relaxed;
                if hiding.hides(e.author)
                    || room
                        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                        .is_err()
                {
                    return None;
                }
                hiding.replacements_for(&e.json)
            })
        };
        let mut after = after;
        let mut shown: Vec<FeedEntry> = Vec::new();
        let mut exhausted = false;
        for _ in 0..MAX_ROUNDS {
            let window = store::FeedWindow {
                after,
                limit: fetch,
                now: domain::now(),
            };
            let mut read = self
                .store
                .feed_with_comments(window, to_patch.clone())
                .await?;
            let batch = std::mem::take(&mut read.entries);
            exhausted = (batch.len() as u32) < fetch;
            after = batch.last().map(FeedEntry::position);
            let room = want as usize - shown.len();
            let mut kept: Vec<FeedEntry> = batch
                .into_iter()
                .filter(|e| !hiding.hides(e.author))
                .take(room)
                .collect();
            if kept.len() == room {
                // The page ends inside this batch: go on after its last post.
                after = kept.last().map(FeedEntry::position);
            }
            self.patch_renderings(&mut kept, hiding, &read).await?;
            shown.extend(kept);
            if shown.len() as u32 >= want || exhausted {
                break;
            }
        }
        let cursor_of = |c: &domain::FeedCursor| c.encode(&self.cursor_key);
        if shown.len() as u32 >= want || exhausted {
            return Ok(super::Page::from_overfetch(shown, limit.get(), |e| {
                cursor_of(&e.position())
            }));
        }
        // Out of rounds: what was found, and the next page from where the reading stopped.
        Ok(super::Page {
            items: shown,
            next_cursor: after.as_ref().map(cursor_of),
        })
    }
}

/// Comments read to replace the hidden ones a rendering shows, beyond one
/// for each: with a tenth of all authors hidden, one spare leaves 1% of
/// patched posts to read on.
const SPARE_REPLACEMENTS: u32 = 1;

/// Comments read per post for a cached first page: read once for every reader
/// of the page, so with more room for readers who hide many.
const PER_CACHED_POST: u32 = 8;

/// The posts at the top of the feed as the cache keeps them: enough to make
/// the first page for any reader (see `page_from_first_posts`).
#[derive(Default)]
pub struct FirstPosts {
    /// As stored, a little more than a page.
    entries: Vec<domain::rendering::FeedEntry>,
    /// The whole feed is in `entries`.
    exhausted: bool,
    /// Comments of gone accounts on them, as read with them.
    recounted: Vec<(domain::PostId, i64)>,
    /// The authors each rendering names (the post's, its newest comments').
    authors: Vec<Vec<UserId>>,
    /// Their newest comments, read when a reader first needs them.
    newest: tokio::sync::OnceCell<Vec<(domain::PostId, Vec<Comment>)>>,
    /// Pages made from them for readers who block someone, by whom they hide:
    /// such a reader's next requests are answered without patching the same
    /// renderings again (callgrind: patching made a blocker's first page 3.6
    /// times a shared page's work). Dropped with the posts.
    made: std::sync::Mutex<Vec<MadePage>>,
}

/// A first page made for readers who hide `hiding`, `limit` posts long.
struct MadePage {
    hiding: Hiding,
    limit: u32,
    page: super::Page<domain::rendering::FeedEntry>,
}

impl MadePage {
    fn is_for(&self, hiding: &Hiding, limit: domain::Limit) -> bool {
        self.limit == limit.get() && self.hiding.same_as(hiding)
    }
}

/// Pages `FirstPosts` keeps made at most: past that, pages are made afresh.
const MADE_PAGES: usize = 64;

impl FirstPosts {
    /// The page made before for readers who hide whom `hiding` does.
    fn made_for(
        &self,
        hiding: &Hiding,
        limit: domain::Limit,
    ) -> Option<super::Page<domain::rendering::FeedEntry>> {
        let made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        made.iter()
            .find(|m| m.is_for(hiding, limit))
            .map(|m| m.page.clone())
    }

    /// Keeps a page made for a reader who blocks someone, while there is room.
    fn remember(
        &self,
        hiding: &Hiding,
        limit: domain::Limit,
        page: &super::Page<domain::rendering::FeedEntry>,
    ) {
        if hiding.blocks_no_one() {
            return;
        }
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if made.len() < MADE_PAGES && !made.iter().any(|m| m.is_for(hiding, limit)) {
            made.push(MadePage {
                hiding: hiding.clone(),
                limit: limit.get(),
                page: page.clone(),
            });
        }
    }

    /// Which posts the page shows and where the last one stands, for the
    /// cache to tell which writes change it.
    pub fn shape(&self) -> super::PageShape {
        super::PageShape {
            posts: self.entries.iter().map(|e| e.id).collect(),
            last: (!self.exhausted)
                .then(|| self.entries.last().map(|e| (e.comment_count, e.id)))
                .flatten(),
        }
    }
}

/// A stored rendering with other newest comments, and `minus` fewer counted.
fn patched(rendering: &str, last: &[Comment], minus: i64) -> String {
    let spliced = domain::rendering::with_last_comments(rendering, last);
    if minus == 0 {
        return spliced;
    }
    with_count_less(&spliced, minus)
}

/// A stored rendering with `minus` fewer comments counted (only while an
/// account's comments await the purge).
fn with_count_less(rendering: &str, minus: i64) -> String {
    let mut post: serde_json::Value =
        serde_json::from_str(rendering).expect("stored renderings are JSON");
    let count = post["comment_count"].as_i64().unwrap_or(0);
    post["comment_count"] = serde_json::json!(count - minus);
    post.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hidden_authors_in_renderings_and_nothing_else() {
        let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
        let hidden = HiddenAuthors::new(vec![b, a, a]);
        assert_eq!(hidden.len(), 2);
        assert!(hidden.hides(a) && hidden.hides(b) && !hidden.hides(c));
        assert!(hidden.may_show_in(&format!(r#"{{"author":{{"id":"{b}"}}}}"#)));
        assert!(!hidden.may_show_in(&format!(r#"{{"author":{{"id":"{c}"}}}}"#)));
        assert!(
            !hidden.may_show_in(&format!(r#"{{"caption":"{a}"}}"#)),
            "only as an author"
        );
        let none = HiddenAuthors::none();
        assert!(none.is_empty() && !none.may_show_in(&format!(r#""author":{{"id":"{a}""#)));
    }
}
