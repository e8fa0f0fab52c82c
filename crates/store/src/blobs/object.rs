//! Blobs in any object store `object_store` speaks to; used for S3 and
//! S3-compatible servers (path-style requests; plain HTTP allowed for local
//! endpoints). An object store's PUT is durable when it answers.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use super::{BlobStore, LocalBlob, check_key};

pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
}

impl ObjectBlobStore {
    /// An S3 bucket; endpoint, region and credentials come from the usual `AWS_*`
    /// variables (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`).
    pub fn s3(bucket: &str) -> anyhow::Result<Self> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok();
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let store = builder
            .build()
            .with_context(|| format!("configuring S3 bucket {bucket}"))?;
        Ok(ObjectBlobStore {
            store: Arc::new(store),
        })
    }

    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ObjectBlobStore { store }
    }

    fn path_of(key: &str) -> anyhow::Result<ObjectPath> {
        check_key(key)?;
        Ok(ObjectPath::from(key))
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put_file(&self, key: &str, src: &Path) -> anyhow::Result<()> {
        let path = Self::path_of(key)?;
        // Streams in multipart chunks for large files, one PUT for small ones.
        let mut writer = BufWriter::new(self.store.clone(), path);
        let mut file = tokio::fs::File::open(src).await?;
        tokio::io::copy(&mut file, &mut writer).await?;
        writer.shutdown().await?;
        tokio::fs::remove_file(src).await?;
        Ok(())
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        self.store
            .put(&Self::path_of(key)?, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match self.store.get(&Self::path_of(key)?).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn local_copy(&self, key: &str, scratch_dir: &Path) -> anyhow::Result<LocalBlob> {
        let result = self.store.get(&Self::path_of(key)?).await?;
        let temp = tempfile::NamedTempFile::new_in(scratch_dir)?;
        let (file, temp_path) = temp.into_parts();
        let mut out = tokio::fs::File::from_std(file);
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?).await?;
        }
        out.flush().await?;
        Ok(LocalBlob {
            path: temp_path.to_path_buf(),
            _temp: Some(temp_path),
        })
    }

    async fn size(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match self.store.head(&Self::path_of(key)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&Self::path_of(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<(String, domain::Timestamp)>> {
        let prefix_path = ObjectPath::from(prefix.trim_end_matches('/'));
        let mut listing = match after {
            Some(after) => self
                .store
                .list_with_offset(Some(&prefix_path), &ObjectPath::from(after)),
            None => self.store.list(Some(&prefix_path)),
        };
        let mut keys = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            keys.push((meta.location.to_string(), meta.last_modified));
            if keys.len() >= limit {
                break;
            }
        }
        Ok(keys)
    }

    async fn check(&self) -> anyhow::Result<()> {
        // A listing needs the bucket itself to exist, unlike a HEAD of some key,
        // whose "not found" cannot tell a missing object from a missing bucket.
        self.store
            .list_with_delimiter(Some(&ObjectPath::from("readiness-probe")))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn put_get_delete_through_object_store() {
        let store = ObjectBlobStore::new(Arc::new(InMemory::new()));
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("upload");
        std::fs::write(&src, vec![7u8; 3 * 1024 * 1024]).unwrap();
        store.put_file("originals/a", &src).await.unwrap();
        assert!(!src.exists());
        assert_eq!(
            store.get("originals/a").await.unwrap().unwrap().len(),
            3 * 1024 * 1024
        );
        let copy = store.local_copy("originals/a", dir.path()).await.unwrap();
        assert_eq!(
            std::fs::metadata(copy.path()).unwrap().len(),
            3 * 1024 * 1024
        );
        store.delete("originals/a").await.unwrap();
        store.delete("originals/a").await.unwrap();
        assert!(store.get("originals/a").await.unwrap().is_none());
        store.check().await.unwrap();
    }
}
