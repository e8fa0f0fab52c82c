//! Data exports (PRODUCT.md §3 Accounts): `account.json`, `posts.json`,
//! `comments.json` and every original, byte-exact, in a zip that the owner
//! alone can fetch for a week. Built in the background: by a task the request
//! starts, and by the sweeper for any build a crash cut short.

use std::io::Write;
use std::time::Duration;

use domain::export::{Export, ExportStatus};
use domain::rendering::{CommentView, PostView};
use domain::{ExportId, PostId, User, now};

use super::{Account, ServiceError, ServiceResult, Services};

/// A builder holds an export this long; past it another may take it over.
const BUILD_LEASE: Duration = Duration::from_secs(15 * 60);
/// Rows read at a time while building: memory stays bounded whatever the account's size.
const PAGE: u32 = 500;

type Zip = zip::ZipWriter<std::fs::File>;

impl Services {
    /// Asks for an export of the caller's data; one is built at a time, so
    /// asking again while one is being built answers with that one.
    pub async fn request_export(&self, account: &Account) -> ServiceResult<Export> {
        let export = self
            .store
            .create_export(&Export::new(account.user.id, now()))
            .await?;
        let services = self.clone();
        tokio::spawn(async move {
            if let Err(e) = services.build_pending_exports().await {
                tracing::warn!(error = %e, "building exports; the sweeper will retry");
            }
        });
        Ok(export)
    }

    /// The caller's export; 404 for anyone else's.
    pub async fn export_of(&self, user: &User, id: ExportId) -> ServiceResult<Export> {
        self.store
            .export(id)
            .await?
            .filter(|e| e.user == user.id && e.expires_at > now())
            .ok_or(ServiceError::NotFound("no such export"))
    }

    /// A local file holding the caller's finished export's zip.
    pub async fn export_zip(
        &self,
        user: &User,
        id: ExportId,
    ) -> ServiceResult<store::blobs::LocalBlob> {
        let export = self.export_of(user, id).await?;
        if export.status != ExportStatus::Ready {
            return Err(ServiceError::NotFound("the export is not ready"));
        }
        Ok(self
            .blobs
            .local_copy(&export.blob_key(), &self.settings.staging_dir)
            .await?)
    }

    /// Builds exports waiting to be built (none held by a live builder); how many.
    pub async fn build_pending_exports(&self) -> ServiceResult<usize> {
        let mut built = 0;
        while let Some(export) = self
            .store
            .claim_export(now(), domain::later(now(), BUILD_LEASE))
            .await?
        {
            let status = match self.build_export(&export).await {
                Ok(()) => ExportStatus::Ready,
                Err(e) => {
                    tracing::error!(error = %e, export = %export.id, "building an export");
                    ExportStatus::Failed
                }
            };
            let mut done = export.clone();
            done.status = status;
            let data = serde_json::json!({
                "export_id": export.id,
                "url": done.download_path(),
            });
            self.store.finish_export(export.id, status, data).await?;
            built += 1;
        }
        Ok(built)
    }

    async fn build_export(&self, export: &Export) -> ServiceResult<()> {
        let staged = tempfile::NamedTempFile::new_in(&self.settings.staging_dir)
            .map_err(|e| ServiceError::Internal(e.into()))?;
        let (file, path) = staged.into_parts();
        let mut zip = Archive(Some(zip::ZipWriter::new(file)));
        let (user, role) = self
            .store
            .user_by_id(export.user)
            .await?
            .ok_or(ServiceError::NotFound("the account is gone"))?;
        let mut account = serde_json::to_value(&user).expect("a user serialises");
        account["role"] = serde_json::json!(role);
        zip.start("account.json").await?;
        zip.append(serde_json::to_vec_pretty(&account).expect("json"))
            .await?;
        let posts = self.export_posts(&mut zip, &user).await?;
        self.export_comments(&mut zip, &user).await?;
        for post in posts {
            let local = self
                .blobs
                .local_copy(
                    &super::posts::original_blob_key(post),
                    &self.settings.staging_dir,
                )
                .await?;
            zip.copy_original(post, local).await?;
        }
        zip.finish().await?;
        self.blobs.put_file(&export.blob_key(), &path).await?;
        Ok(())
    }

    /// `posts.json`, as the API shows each post (every status); the posts' ids.
    async fn export_posts(&self, zip: &mut Archive, user: &User) -> ServiceResult<Vec<PostId>> {
        let mut ids = self.store.post_ids_by_author(user.id, u32::MAX).await?;
        ids.sort();
        zip.start("posts.json").await?;
        let mut array = JsonArray::default();
        let mut kept = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(PAGE as usize) {
            let mut json = Vec::new();
            for &id in chunk {
                let Some(post) = self.store.post(id).await? else {
                    continue;
                };
                array.push(&mut json, &PostView::from(&post));
                kept.push(id);
            }
            zip.append(json).await?;
        }
        zip.append(array.end()).await?;
        Ok(kept)
    }

    /// `comments.json`: every comment the account wrote, a page at a time.
    async fn export_comments(&self, zip: &mut Archive, user: &User) -> ServiceResult<()> {
        zip.start("comments.json").await?;
        let mut array = JsonArray::default();
        let mut after = None;
        loop {
            let page = self.store.comments_of_author(user.id, after, PAGE).await?;
            let mut json = Vec::new();
            for comment in &page {
                array.push(&mut json, &CommentView::from(comment));
            }
            zip.append(json).await?;
            match page.last() {
                Some(last) if page.len() as u32 == PAGE => after = Some((last.post_id, last.id)),
                _ => break,
            }
        }
        zip.append(array.end()).await
    }
}

/// A JSON array written a piece at a time (the export never holds a whole
/// listing): each item with the separator it needs, then the end.
#[derive(Default)]
struct JsonArray {
    items: usize,
}

impl JsonArray {
    fn push(&mut self, out: &mut Vec<u8>, item: &impl serde::Serialize) {
        out.push(if self.items == 0 { b'[' } else { b',' });
        serde_json::to_writer(out, item).expect("views serialise");
        self.items += 1;
    }

    fn end(&self) -> Vec<u8> {
        let end: &[u8] = if self.items == 0 { b"[]" } else { b"]" };
        end.to_vec()
    }
}

/// The zip being written, on the blocking pool one step at a time (the
/// writer moves there and back), so that file writes and compression never
/// hold up the async runtime.
struct Archive(Option<Zip>);

impl Archive {
    async fn with(
        &mut self,
        step: impl FnOnce(&mut Zip) -> anyhow::Result<()> + Send + 'static,
    ) -> ServiceResult<()> {
        let mut zip = self.0.take().expect("the archive is open");
        let zip = tokio::task::spawn_blocking(move || step(&mut zip).map(|()| zip))
            .await
            .map_err(|e| ServiceError::Internal(e.into()))?
            .map_err(ServiceError::Internal)?;
        self.0 = Some(zip);
        Ok(())
    }

    /// Starts a compressed entry.
    async fn start(&mut self, name: &'static str) -> ServiceResult<()> {
        self.with(move |zip| {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(true);
            Ok(zip.start_file(name, options)?)
        })
        .await
    }

    async fn append(&mut self, bytes: Vec<u8>) -> ServiceResult<()> {
        self.with(move |zip| Ok(zip.write_all(&bytes)?)).await
    }

    /// `originals/{post}.{ext}`: the bytes as uploaded, stored as they are
    /// (images are compressed already), the extension from their magic bytes.
    async fn copy_original(
        &mut self,
        post: PostId,
        local: store::blobs::LocalBlob,
    ) -> ServiceResult<()> {
        self.with(move |zip| {
            let mut file = std::fs::File::open(local.path())?;
            let mut head = Vec::with_capacity(8);
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 8), &mut head)?;
            // Every original was sniffed as one of the three when it was posted.
            let ext = match imaging::sniff(&head) {
                Some(imaging::ImageFormat::Png) => "png",
                Some(imaging::ImageFormat::Bmp) => "bmp",
                _ => "jpg",
            };
            std::io::Seek::rewind(&mut file)?;
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(true);
            zip.start_file(format!("originals/{post}.{ext}"), options)?;
            std::io::copy(&mut file, zip)?;
            Ok(())
        })
        .await
    }

    async fn finish(mut self) -> ServiceResult<()> {
        let zip = self.0.take().expect("the archive is open");
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            zip.finish()?.sync_all()?;
            Ok(())
        })
        .await
        .map_err(|e| ServiceError::Internal(e.into()))?
        .map_err(ServiceError::Internal)
    }
}
