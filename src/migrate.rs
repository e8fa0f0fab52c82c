//! `imagegram migrate`: copies a whole instance — every row, then every blob —
//! from one database + blob store to another, then verifies row counts and the
//! SHA-256 of every blob on both sides.
//!
//! Resumable: rows are copied in key order in atomic batches, so after an
//! interruption the copy continues after the largest key the target holds;
//! blobs already present at the same size are not copied again. The target
//! must be empty or hold an earlier, interrupted copy of the same source, and
//! the source should not take writes while it is copied.
//!
//! A table that starts empty is filled as a bulk load: the target may set
//! aside indexes and foreign keys first and rebuild them once all rows are in
//! (`Transfer::set_aside_for_load`); until then it refuses to be served.

use std::sync::Arc;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::config::{BlobUrl, DatabaseUrl};
use crate::domain::derived_blob_key;
use crate::store::transfer::{Kind, TABLES, Table, Value};
use crate::store::{BlobStore, Store};

/// One side of a migration.
pub struct Instance {
    pub database: DatabaseUrl,
    pub blobs: BlobUrl,
}

pub struct Options {
    pub batch_size: u32,
    /// Test hook: stop (as if interrupted) once this many rows were copied in this run.
    pub stop_after_rows: Option<u64>,
}

struct Side {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
}

async fn open(instance: &Instance) -> anyhow::Result<Side> {
    Ok(Side {
        store: crate::app::open_store(&instance.database).await?,
        blobs: crate::app::open_blobs(&instance.blobs)?,
    })
}

pub async fn run(from: Instance, to: Instance, options: Options) -> anyhow::Result<()> {
    let source = open(&from).await.context("opening the source")?;
    let target = open(&to).await.context("opening the target")?;
    let mut budget = options.stop_after_rows;
    for table in TABLES {
        copy_table(&source, &target, table, options.batch_size, &mut budget).await?;
        if budget == Some(0) {
            bail!("stopped after the requested number of rows; run again to resume");
        }
    }
    eprintln!("rebuilding the indexes and foreign keys set aside for the copy");
    target.store.restore_set_aside().await?;
    let keys = blob_keys(&source, options.batch_size).await?;
    copy_blobs(&source, &target, &keys).await?;
    verify(&source, &target, &keys).await
}

async fn copy_table(
    source: &Side,
    target: &Side,
    table: &'static Table,
    batch: u32,
    budget: &mut Option<u64>,
) -> anyhow::Result<()> {
    let total = source.store.count_rows(table).await?;
    let present = target.store.count_rows(table).await?;
    if total > 0 && present == 0 {
        target.store.set_aside_for_load(table).await?;
    }
    // Text keys may sort differently on the two backends (collations), so those
    // small tables are copied whole every time; inserts skip rows already there.
    let key_kind = table.columns[table.key_index()].1;
    let mut after = match key_kind {
        Kind::Uuid | Kind::Bytes => target.store.last_key(table).await?,
        _ => None,
    };
    let mut done = if after.is_some() { present } else { 0 };
    eprintln!("{}: {done}/{total} rows already copied", table.name);
    loop {
        let limit = match budget {
            Some(0) => return Ok(()),
            Some(left) => batch.min(u32::try_from(*left).unwrap_or(u32::MAX)),
            None => batch,
        };
        let rows = source
            .store
            .export_rows(table, after.clone(), limit)
            .await?;
        let Some(last) = rows.last() else { break };
        after = Some(last[table.key_index()].clone());
        let n = rows.len() as u64;
        target.store.import_rows(table, rows).await?;
        done += n;
        if let Some(left) = budget.as_mut() {
            *left -= n.min(*left);
        }
        eprintln!("{}: {done}/{total} rows", table.name);
    }
    Ok(())
}

/// Every blob the source references: posts' originals and derived images, and
/// the chunks of unfinished uploads.
async fn blob_keys(source: &Side, batch: u32) -> anyhow::Result<Vec<String>> {
    let posts = TABLES
        .iter()
        .find(|t| t.name == "posts")
        .expect("posts table");
    let col = |name: &str| {
        posts
            .columns
            .iter()
            .position(|(c, _)| *c == name)
            .expect("column")
    };
    let (original, image) = (col("original_key"), col("image_key"));
    let mut keys = Vec::new();
    let mut after = None;
    loop {
        let rows = source.store.export_rows(posts, after, batch).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last[posts.key_index()].clone());
        for row in &rows {
            if let Value::Text(k) = &row[original] {
                keys.push(k.clone());
            }
            if let Value::Text(k) = &row[image] {
                keys.push(derived_blob_key(k));
            }
        }
    }
    let chunks = TABLES
        .iter()
        .find(|t| t.name == "upload_chunks")
        .expect("upload_chunks table");
    let mut after = None;
    loop {
        let rows = source.store.export_rows(chunks, after, batch).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last[chunks.key_index()].clone());
        keys.extend(rows.iter().filter_map(|r| match &r[chunks.key_index()] {
            Value::Text(k) => Some(k.clone()),
            _ => None,
        }));
    }
    Ok(keys)
}

/// Blobs copied or checked at once: a blob store answers each request after
/// a round trip (S3: tens of ms), so one at a time leaves it idle; each blob in
/// flight is held whole in memory (originals are up to 100 MiB).
const BLOBS_AT_ONCE: usize = 8;

/// Whether `key` is missing at the source, already at the target (same
/// size), or copied now.
async fn copy_blob(source: &Side, target: &Side, key: &str) -> anyhow::Result<BlobCopy> {
    let Some(size) = source.blobs.size(key).await? else {
        return Ok(BlobCopy::Missing);
    };
    if target.blobs.size(key).await? == Some(size) {
        return Ok(BlobCopy::AlreadyThere);
    }
    let bytes = source
        .blobs
        .get(key)
        .await?
        .with_context(|| format!("blob {key} vanished"))?;
    target.blobs.put_bytes(key, bytes).await?;
    Ok(BlobCopy::Copied)
}

enum BlobCopy {
    Copied,
    AlreadyThere,
    Missing,
}

async fn copy_blobs(source: &Side, target: &Side, keys: &[String]) -> anyhow::Result<()> {
    use futures_util::{StreamExt, TryStreamExt};
    let (mut copied, mut skipped, mut missing) = (0u64, 0u64, 0u64);
    let mut done = futures_util::stream::iter(keys)
        .map(|key| copy_blob(source, target, key))
        .buffer_unordered(BLOBS_AT_ONCE);
    // About a hundred progress lines, however many blobs.
    let every = (keys.len() / 100).max(100);
    let mut n = 0;
    while let Some(outcome) = done.try_next().await? {
        match outcome {
            BlobCopy::Copied => copied += 1,
            BlobCopy::AlreadyThere => skipped += 1,
            BlobCopy::Missing => missing += 1,
        }
        n += 1;
        if n % every == 0 || n == keys.len() {
            eprintln!(
                "blobs: {n}/{} (copied {copied}, already there {skipped}, missing at source {missing})",
                keys.len()
            );
        }
    }
    Ok(())
}

async fn digest(blobs: &Arc<dyn BlobStore>, key: &str) -> anyhow::Result<Option<[u8; 32]>> {
    Ok(blobs.get(key).await?.map(|b| Sha256::digest(&b).into()))
}

/// Whether the blob reads the same on both sides.
async fn same_blob(source: &Side, target: &Side, key: &str) -> anyhow::Result<bool> {
    Ok(digest(&source.blobs, key).await? == digest(&target.blobs, key).await?)
}

async fn verify(source: &Side, target: &Side, keys: &[String]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for table in TABLES {
        let (a, b) = (
            source.store.count_rows(table).await?,
            target.store.count_rows(table).await?,
        );
        eprintln!("verify {}: source {a} rows, target {b} rows", table.name);
        if a != b {
            problems.push(format!(
                "{}: {a} rows at the source, {b} at the target",
                table.name
            ));
        }
    }
    {
        use futures_util::{StreamExt, TryStreamExt};
        let mut checked = futures_util::stream::iter(keys)
            .map(|key| async move {
                Ok::<_, anyhow::Error>((key, same_blob(source, target, key).await?))
            })
            .buffer_unordered(BLOBS_AT_ONCE);
        while let Some((key, same)) = checked.try_next().await? {
            if !same {
                problems.push(format!("blob {key} differs"));
            }
        }
    }
    eprintln!("verify blobs: {} checked by SHA-256", keys.len());
    if !problems.is_empty() {
        bail!("verification failed:\n  {}", problems.join("\n  "));
    }
    eprintln!("migration complete and verified");
    Ok(())
}
