//! Blobs as files under one directory.
//!
//! Written by hand rather than with
//! `object_store::local` because a 2xx must mean the bytes are durable:
//! it fsyncs each file and its directory around an atomic rename, which
//! `object_store`'s local backend does not do.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobStore, LocalBlob, check_key};

/// Blobs as files under one directory.
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root.join(".staging"))
            .with_context(|| format!("creating blob directory {}", root.display()))?;
        Ok(LocalBlobStore {
            root: root.to_owned(),
        })
    }

    fn path_of(&self, key: &str) -> anyhow::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Moves a synced file into place atomically and makes the rename durable.
fn install(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let parent = dst.parent().context("blob path has no parent")?;
    std::fs::File::open(src)?.sync_all()?;
    // The deletion of a folder's last blob removes the folder; one that races
    // with this install is made again.
    let mut renamed = Err(std::io::ErrorKind::NotFound.into());
    for _ in 0..3 {
        std::fs::create_dir_all(parent)?;
        renamed = std::fs::rename(src, dst);
        match &renamed {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && src.exists() => continue,
            _ => break,
        }
    }
    if renamed.is_err() {
        // Different filesystems: copy through a synced temporary in the target directory.
        let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
        std::io::copy(&mut std::fs::File::open(src)?, tmp.as_file_mut())?;
        tmp.as_file().sync_all()?;
        tmp.persist(dst)?;
        std::fs::remove_file(src)?;
    }
    fsync_dir(parent)?;
    Ok(())
}

/// Every file under `dir`, as keys relative to `root`, with its modification time.
fn collect_keys(
    root: &Path,
    dir: &Path,
    keys: &mut Vec<(String, domain::Timestamp)>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            collect_keys(root, &path, keys)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let written = domain::Timestamp::from(meta.modified()?);
            keys.push((relative.to_string_lossy().into_owned(), written));
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put_file(&self, key: &str, src: &Path) -> anyhow::Result<()> {
        let dst = self.path_of(key)?;
        let src = src.to_owned();
        tokio::task::spawn_blocking(move || install(&src, &dst)).await?
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        let dst = self.path_of(key)?;
        let staging = self.root.join(".staging");
        tokio::task::spawn_blocking(move || {
            let mut tmp = tempfile::NamedTempFile::new_in(&staging)?;
            tmp.write_all(&bytes)?;
            let tmp = tmp.into_temp_path();
            install(&tmp, &dst)?;
            // The path now names the installed blob; do not let the guard remove it.
            tmp.keep()?;
            Ok(())
        })
        .await?
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn local_copy(&self, key: &str, _scratch_dir: &Path) -> anyhow::Result<LocalBlob> {
        let path = self.path_of(key)?;
        tokio::fs::metadata(&path)
            .await
            .with_context(|| format!("blob {key} is missing"))?;
        Ok(LocalBlob { path, _temp: None })
    }

    async fn size(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match tokio::fs::metadata(self.path_of(key)?).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        // Directories a key's path made (an upload's chunk folder) go with their
        // last file; remove_dir refuses a directory that is not empty.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root) {
            if tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<(String, domain::Timestamp)>> {
        let (root, prefix, after) = (
            self.root.clone(),
            prefix.to_owned(),
            after.map(str::to_owned),
        );
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            collect_keys(&root, &root.join(&prefix), &mut keys)?;
            keys.sort();
            Ok(keys
                .into_iter()
                .filter(|(k, _)| after.as_deref().is_none_or(|a| k.as_str() > a))
                .take(limit)
                .collect())
        })
        .await?
    }

    async fn check(&self) -> anyhow::Result<()> {
        let meta = tokio::fs::metadata(&self.root).await?;
        if !meta.is_dir() {
            bail!("blob root {} is not a directory", self.root.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        store
            .put_bytes("derived/a.jpg", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            store.get("derived/a.jpg").await.unwrap().unwrap(),
            &b"hello"[..]
        );
        let src = dir.path().join("upload");
        std::fs::write(&src, b"orig").unwrap();
        store.put_file("originals/x", &src).await.unwrap();
        assert!(!src.exists());
        assert_eq!(
            store.get("originals/x").await.unwrap().unwrap(),
            &b"orig"[..]
        );
        store.delete("originals/x").await.unwrap();
        store.delete("originals/x").await.unwrap();
        assert!(store.get("originals/x").await.unwrap().is_none());
    }
}
