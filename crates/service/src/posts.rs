//! Posts: creation from a staged image, reads, the feed, deletion.

use std::sync::Arc;

use tempfile::TempPath;

use store::{FeedEntry, KeyAnswer, StoreError};

use super::{Account, CachedPage, Hiding, Page, ServiceError, ServiceResult, Services, feed_cache};
use domain::{
    AltText, Caption, EditRefusal, EditRequest, ExpiresIn, FeedCursor, IdCursor, Limit, NewPost,
    Post, PostEdit, PostFilter, PostId, UploadId, User, Username, ValidationErrors, now,
};

/// The largest image accepted, in bytes (100 MiB).
pub const MAX_IMAGE_BYTES: u64 = 100 * 1024 * 1024;

/// The fields of a new post as the client sent them; validated here.
#[derive(Debug, Default)]
pub struct CreatePost {
    pub caption: Option<String>,
    pub alt_text: Option<String>,
    pub expires_in: Option<i64>,
    pub filter: Option<String>,
    pub dither_levels: Option<i64>,
}

/// Changes to a post as the client sent them; `expires_in: Some(None)` removes the expiry.
#[derive(Debug, Default)]
pub struct EditPost {
    pub caption: Option<String>,
    pub alt_text: Option<String>,
    pub expires_in: Option<Option<i64>>,
}

impl EditPost {
    /// The edit as stored, or every invalid field.
    pub fn validate(&self, now: domain::Timestamp) -> Result<PostEdit, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let caption = match &self.caption {
            Some(c) => errors.check("caption", Caption::parse(c.clone())),
            None => None,
        };
        let alt_text = match &self.alt_text {
            Some(a) => errors.check("alt_text", AltText::parse(a.clone())),
            None => None,
        };
        let expires_at = match self.expires_in {
            Some(Some(s)) => errors
                .check("expires_in", ExpiresIn::parse(s))
                .map(|e| Some(e.after(now))),
            Some(None) => Some(None),
            None => None,
        };
        errors.into_result()?;
        Ok(PostEdit {
            caption,
            alt_text,
            expires_at,
        })
    }
}

/// An uploaded image spooled to a local file, not yet checked.
pub struct StagedImage {
    pub file: TempPath,
    pub size: u64,
}

struct ValidPost {
    caption: Caption,
    alt_text: AltText,
    expires_in: Option<ExpiresIn>,
    filter: PostFilter,
}

fn validate(input: CreatePost) -> Result<ValidPost, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let caption = errors.check("caption", Caption::parse(input.caption.unwrap_or_default()));
    let alt_text = errors.check(
        "alt_text",
        AltText::parse(input.alt_text.unwrap_or_default()),
    );
    let expires_in = match input.expires_in {
        Some(s) => errors.check("expires_in", ExpiresIn::parse(s)).map(Some),
        None => Some(None),
    };
    let filter = match PostFilter::parse(input.filter.as_deref(), input.dither_levels) {
        Ok(f) => Some(f),
        Err((field, message)) => {
            errors.push(field, message);
            None
        }
    };
    errors.into_result()?;
    Ok(ValidPost {
        caption: caption.expect("checked"),
        alt_text: alt_text.expect("checked"),
        expires_in: expires_in.expect("checked"),
        filter: filter.expect("checked"),
    })
}

/// The SHA-256 of a staged image, read on the blocking pool (SHA-NI makes a
/// 100 MiB original a fraction of a second; a phone photo a few milliseconds).
async fn sha256_of(image: &StagedImage) -> ServiceResult<[u8; 32]> {
    use sha2::Digest as _;
    let path = image.file.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
        use std::io::Read as _;
        let mut hasher = sha2::Sha256::new();
        let mut file = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match file.read(&mut buf)? {
                0 => return Ok(hasher.finalize().into()),
                n => hasher.update(&buf[..n]),
            }
        }
    })
    .await
    .map_err(|e| ServiceError::Internal(e.into()))?
    .map_err(|e| ServiceError::Internal(e.into()))
}

pub fn original_blob_key(id: PostId) -> String {
    format!("originals/{id}")
}

impl Services {
    /// Checks the staged image by content, stores it durably and commits the
    /// post with its processing job. Nothing is stored if any check fails.
    pub async fn create_post(
        &self,
        author: &User,
        input: CreatePost,
        image: StagedImage,
        answer: Option<KeyAnswer<Post>>,
    ) -> ServiceResult<Post> {
        self.create_post_with(author, input, image, None, answer)
            .await
    }

    /// As `create_post`; with `from_upload`, that upload is consumed in the post's transaction.
    pub(super) async fn create_post_with(
        &self,
        author: &User,
        input: CreatePost,
        image: StagedImage,
        from_upload: Option<UploadId>,
        answer: Option<KeyAnswer<Post>>,
    ) -> ServiceResult<Post> {
        let valid = validate(input)?;
        if image.size > MAX_IMAGE_BYTES {
            return Err(ServiceError::PayloadTooLarge {
                max: MAX_IMAGE_BYTES,
            });
        }
        let header = self.probe(&image).await?;
        if self.store.image_banned(sha256_of(&image).await?).await? {
            return Err(ServiceError::ImageBanned);
        }
        let id = PostId::new();
        let created_at = now();
        let new_post = NewPost {
            id,
            author: author.clone(),
            caption: valid.caption,
            alt_text: valid.alt_text,
            filter: valid.filter,
            original_key: original_blob_key(id),
            original_format: header.format.as_str().to_owned(),
            created_at,
            expires_at: valid.expires_in.map(|e| e.after(created_at)),
        };
        self.blobs
            .put_file(&new_post.original_key, &image.file)
            .await?;
        match self.store.create_post(&new_post, from_upload, answer).await {
            Ok(post) => Ok(post),
            // Refused: the row never committed, so nothing references the blob.
            Err(e @ StoreError::UploadUnavailable) => {
                if let Err(cleanup) = self.blobs.delete(&new_post.original_key).await {
                    tracing::warn!(error = %cleanup, "removing the original of a post that failed to commit");
                }
                Err(e.into())
            }
            // Ambiguous (the commit may have happened): the blob stays, for the
            // orphan sweep to judge, rather than vanish under a committed row.
            Err(e) => Err(e.into()),
        }
    }

    /// The SHA-256 of a post's original, for an image ban; the post must exist.
    pub(crate) async fn original_digest(&self, id: PostId) -> ServiceResult<Option<[u8; 32]>> {
        use sha2::Digest as _;
        let Some(bytes) = self.blobs.get(&original_blob_key(id)).await? else {
            return Ok(None);
        };
        Ok(Some(
            tokio::task::spawn_blocking(move || sha2::Sha256::digest(&bytes).into())
                .await
                .map_err(|e| ServiceError::Internal(e.into()))?,
        ))
    }

    async fn probe(&self, image: &StagedImage) -> ServiceResult<imaging::Header> {
        let path = image.file.to_path_buf();
        let limits = self.settings.image_limits;
        let probed = tokio::task::spawn_blocking(move || imaging::probe(&path, &limits))
            .await
            .map_err(anyhow::Error::from)?;
        probed.map_err(|e| match e {
            imaging::ProbeError::UnsupportedFormat => ServiceError::UnsupportedImage,
            imaging::ProbeError::Unreadable(why) => {
                ServiceError::UnreadableImage(format!("the image header cannot be read: {why}"))
            }
            too_large @ imaging::ProbeError::TooLarge { .. } => {
                ServiceError::ImageTooLarge(too_large.to_string())
            }
            imaging::ProbeError::Io(e) => ServiceError::Internal(e.into()),
        })
    }

    /// The bytes of the derived JPEG with content key `key`, if there is one.
    pub async fn derived_image(&self, key: &str) -> ServiceResult<Option<bytes::Bytes>> {
        Ok(self.blobs.get(&domain::derived_blob_key(key)).await?)
    }

    /// A post as `viewer` may see it: processing and failed posts only to their author.
    pub async fn post(&self, id: PostId, viewer: Option<&User>) -> ServiceResult<Post> {
        match self.store.post(id).await? {
            Some(post) if post.visible_to(viewer, now()) => Ok(post),
            _ => Err(ServiceError::NotFound("no such post")),
        }
    }

    /// A post as a reader sees it: as `post` says, and not by someone they
    /// block, with its newest comments by others.
    pub async fn post_for(&self, id: PostId, reader: Option<&Account>) -> ServiceResult<Post> {
        let post = self.post(id, reader.map(|a| &a.user)).await?;
        let hiding = self.hiding(reader).await?;
        self.shown(post, &hiding)
            .await?
            .ok_or(ServiceError::NotFound("no such post"))
    }

    /// The first feed page of `limit` items for readers who block no one,
    /// rendered by `render` and cached (see `feed_cache.rs`); any other page
    /// goes to [`Services::feed_for`] or [`Services::first_feed_page_for`].
    pub async fn first_feed_page(
        &self,
        limit: Limit,
        render: impl FnOnce(&Page<FeedEntry>) -> CachedPage,
    ) -> ServiceResult<CachedPage> {
        Ok(self.cached_first_page(limit, render).await?.page)
    }

    /// The first feed page for a reader who blocks someone: made from the
    /// posts the shared cached page was made from (no feed read, and the
    /// newest comments read once per cached page), filtered and patched for
    /// them; read as any page only when they hide most of those posts.
    pub async fn first_feed_page_for(
        &self,
        hiding: &Hiding,
        limit: Limit,
        render: impl FnOnce(&Page<FeedEntry>) -> CachedPage,
    ) -> ServiceResult<Page<FeedEntry>> {
        let first = self.cached_first_page(limit, render).await?;
        match self
            .page_from_first_posts(&first.posts, hiding, limit)
            .await?
        {
            Some(page) => Ok(page),
            None => self.feed_for(hiding, None, limit).await,
        }
    }

    async fn cached_first_page(
        &self,
        limit: Limit,
        render: impl FnOnce(&Page<FeedEntry>) -> CachedPage,
    ) -> ServiceResult<feed_cache::Hit> {
        let cache = &self.feed_cache;
        let _turn = match cache.get(limit.get()) {
            Some(hit) if !hit.refresh => return Ok(hit),
            // Still valid but half its life gone: one request renders it anew
            // while the others keep being served the valid page.
            Some(hit) => match cache.try_render_turn(limit.get()) {
                Some(turn) => turn,
                None => return Ok(hit),
            },
            None => {
                let turn = cache.render_turn(limit.get()).await;
                if let Some(hit) = cache.get(limit.get()) {
                    return Ok(hit); // rendered by the request we waited for
                }
                turn
            }
        };
        let rendering = cache.begin();
        // What every reader is hidden (accounts deleted or suspended).
        let hiding = self.hiding(None).await?;
        let posts = Arc::new(self.first_posts(&hiding, limit).await?);
        let page = self.page_from_first_posts(&posts, &hiding, limit).await?;
        let (page, cacheable) = match page {
            Some(page) => (page, true),
            // So many of the top posts are hidden from everyone that the page
            // reaches past them: served, not cached (its shape is not `posts`').
            None => (self.feed_for(&hiding, None, limit).await?, false),
        };
        let rendered = render(&page);
        if cacheable {
            rendering.put(limit.get(), rendered.clone(), posts.clone(), posts.shape());
        }
        Ok(feed_cache::Hit {
            page: rendered,
            posts,
            refresh: false,
        })
    }

    /// A feed page for a reader who hides `hiding` (see `Services::hiding`):
    /// without those posts and comments (see `feed_hiding`); when it hides no
    /// one, the plain ranking.
    pub async fn feed_for(
        &self,
        hiding: &Hiding,
        cursor: Option<&str>,
        limit: Limit,
    ) -> ServiceResult<Page<FeedEntry>> {
        let after = match cursor {
            Some(c) => {
                Some(FeedCursor::decode(c, &self.cursor_key).ok_or(ServiceError::BadCursor)?)
            }
            None => None,
        };
        if !hiding.is_empty() {
            return self.feed_hiding(after, limit, hiding).await;
        }
        let rows = self.store.feed(after, limit.get() + 1, now()).await?;
        Ok(Page::from_overfetch(rows, limit.get(), |e| {
            e.position().encode(&self.cursor_key)
        }))
    }

    pub async fn posts_by(
        &self,
        username: &str,
        reader: Option<&Account>,
        cursor: Option<&str>,
        limit: Limit,
    ) -> ServiceResult<Page<Post>> {
        let username =
            Username::parse(username).map_err(|_| ServiceError::NotFound("no such user"))?;
        let user = self
            .store
            .user_by_username(&username)
            .await?
            .ok_or(ServiceError::NotFound("no such user"))?;
        let scope = format!("user-posts:{}", user.id);
        let after = self.id_cursor(cursor, &scope)?;
        let hiding = self.hiding(reader).await?;
        if hiding.hides(user.id) {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let mut rows = Vec::new();
        for post in self
            .store
            .posts_by_author(user.id, after, limit.get() + 1, now())
            .await?
        {
            rows.extend(self.shown(post, &hiding).await?);
        }
        Ok(Page::from_overfetch(rows, limit.get(), |p| {
            IdCursor(*p.id.as_bytes()).encode(&scope, &self.cursor_key)
        }))
    }

    /// Edits caption, alt text and/or expiry. `if_match` holds the client's `If-Match`
    /// entity tags (or `*`); the checks (`Post::apply_edit`) and the update are
    /// one atomic step in the store. Input is validated before any of them.
    pub async fn edit_post(
        &self,
        id: PostId,
        by: &User,
        input: EditPost,
        if_match: Option<Vec<String>>,
    ) -> ServiceResult<Post> {
        let t = now();
        let edit = input.validate(t)?;
        let request = EditRequest {
            post: id,
            by: by.clone(),
            edit,
            if_match,
            at: t,
        };
        match self.store.edit_post(request).await? {
            Ok(post) => {
                self.feed_cache.invalidate();
                Ok(post)
            }
            Err(EditRefusal::NotFound) => Err(ServiceError::NotFound("no such post")),
            Err(EditRefusal::NotAuthor) => {
                Err(ServiceError::Forbidden("only the author can edit a post"))
            }
            Err(EditRefusal::PreconditionFailed) => Err(ServiceError::PreconditionFailed),
        }
    }

    /// Deletes a post with its comments, original and derived image.
    pub async fn delete_post(&self, id: PostId, by: &User) -> ServiceResult<()> {
        let post = self.post(id, Some(by)).await?;
        if post.author.id != by.id {
            return Err(ServiceError::Forbidden("only the author can delete a post"));
        }
        self.remove_post(id).await
    }

    /// Deletes a post with its comments, and its blobs soon after; by its
    /// author, or by moderation.
    pub(crate) async fn remove_post(&self, id: PostId) -> ServiceResult<()> {
        if self.store.delete_post(id).await?.is_some() {
            self.feed_cache.invalidate();
            // The rows are gone and the blobs are queued; removing them now is a
            // courtesy, the sweeper retries whatever fails.
            if let Err(e) = self.collect_garbage().await {
                tracing::warn!(error = %e, "deleting blobs of a deleted post; the sweeper will retry");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_reports_every_bad_field() {
        let err = validate(CreatePost {
            caption: Some("x".repeat(3000)),
            alt_text: Some("y".repeat(1501)),
            expires_in: Some(0),
            filter: Some("sepia".into()),
            dither_levels: None,
        })
        .err()
        .unwrap();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["caption", "alt_text", "expires_in", "filter"]);
    }
}
