//! The image job: original → 600x600 JPEG + blurhash → derived blob → post ready.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::Worker;
use domain::{ImageInfo, PostFilter, derived_blob_key, now};
use store::{Job, JobOutcome};

fn to_imaging(filter: PostFilter) -> imaging::Filter {
    match filter {
        PostFilter::None => imaging::Filter::None,
        PostFilter::Grayscale => imaging::Filter::Grayscale,
        PostFilter::Dither { levels } => imaging::Filter::Dither { levels },
    }
}

/// The derived image's key: a digest of the post and the bytes, so a key
/// always names the same bytes (immutable caching) and is unique to its post
/// (deleting one post never touches another's image).
fn derived_key(job: &Job, jpeg: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(job.post_id.as_bytes());
    hasher.update(jpeg);
    hex::encode(&hasher.finalize()[..20])
}

impl Worker {
    /// Renders the job's image and finishes the job. Errors are transient
    /// failures (I/O, storage); bad images finish the job as failed.
    pub(super) async fn process(&self, job: &Job) -> anyhow::Result<()> {
        if !self.config.debug_delay.is_zero() {
            tokio::time::sleep(self.config.debug_delay).await;
        }
        let original = self
            .services
            .blobs
            .local_copy(&job.original_key, &self.services.settings.staging_dir)
            .await?;
        let path = original.path().to_owned();
        let limits = self.config.image_limits;
        let filter = to_imaging(job.filter);
        let started = std::time::Instant::now();
        let cost = self.decode_cost(&path).await;
        let rendered = self
            .pool
            .run(cost, move || imaging::render(&path, &limits, filter))
            .await;
        drop(original);
        let outcome = match rendered {
            Ok(Ok(r)) => {
                let key = derived_key(job, &r.jpeg);
                self.services
                    .blobs
                    .put_bytes(&derived_blob_key(&key), Bytes::from(r.jpeg))
                    .await?;
                tracing::info!(post_id = %job.post_id, ms = started.elapsed().as_millis() as u64, "image ready");
                JobOutcome::Ready(ImageInfo {
                    key,
                    width: r.width,
                    height: r.height,
                    blurhash: r.blurhash,
                })
            }
            Ok(Err(e)) if e.is_bad_input() => {
                tracing::info!(post_id = %job.post_id, error = %e, "image rejected while decoding");
                JobOutcome::Failed(e.to_string())
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(panic) => {
                // A panic inside a codec: the input triggered a bug; retrying cannot help.
                tracing::error!(post_id = %job.post_id, error = %panic, "image processing panicked");
                JobOutcome::Failed("the image could not be processed".into())
            }
        };
        let result = if matches!(outcome, JobOutcome::Ready(_)) {
            "ready"
        } else {
            "failed"
        };
        metrics::histogram!("image_processing_seconds", "format" => job.format.clone(), "outcome" => result)
            .record(started.elapsed().as_secs_f64());
        let produced = match &outcome {
            JobOutcome::Ready(image) => Some(image.blob_key()),
            JobOutcome::Failed(_) => None,
        };
        let applied = self.services.store.finish_job(job, outcome, now()).await?;
        if applied {
            self.services.feed_cache.invalidate(); // a ready post joins the feed
        }
        if !applied && let Some(key) = produced {
            self.discard_unless_used(job, &key).await?;
        }
        Ok(())
    }

    /// The render's memory estimate from the header; a header that cannot be
    /// read costs the minimum (rendering then fails at once on the same header).
    async fn decode_cost(&self, path: &std::path::Path) -> u64 {
        let path = path.to_owned();
        let limits = self.config.image_limits;
        tokio::task::spawn_blocking(move || imaging::probe(&path, &limits))
            .await
            .ok()
            .and_then(Result::ok)
            .map_or(1 << 20, |header| header.decode_bytes)
    }

    /// The job was taken over or its post deleted meanwhile: keep the blob only
    /// if the post exists (a taker renders the same bytes under the same key).
    async fn discard_unless_used(&self, job: &Job, key: &str) -> anyhow::Result<()> {
        if self.services.store.post(job.post_id).await?.is_none() {
            self.services.store.queue_blob_deletion(key).await?;
            self.services.collect_garbage().await?;
        }
        Ok(())
    }
}
