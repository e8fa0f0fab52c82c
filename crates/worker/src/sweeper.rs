//! The chores every deployment needs done now and then: expired posts, uploads,
//! idempotency keys and events removed, orphaned blobs and staging leftovers
//! deleted. Every node runs this loop (API-only nodes too, so a deployment
//! without a worker still cleans up), and a turn taken in the database lets one
//! node at a time do the work.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use domain::now;
use service::Services;

const EVERY: Duration = Duration::from_secs(60);

/// Sweeps every `EVERY` while this node holds the turn, until `shutdown`.
pub async fn run(services: Services, shutdown: CancellationToken) {
    loop {
        let t = now();
        let until = domain::later(t, EVERY - Duration::from_secs(5));
        match services.store.take_turn("sweeper", t, until).await {
            Ok(true) => sweep(&services).await,
            Ok(false) => tracing::debug!("another node sweeps this round"),
            Err(e) => tracing::warn!(error = %e, "taking the sweeper's turn"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// One round. `sweep_expired` also deletes the blobs whose deletions are queued.
async fn sweep(services: &Services) {
    match services.purge_deleted_accounts().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(accounts = n, "purged deleted accounts"),
        Err(e) => tracing::warn!(error = %e, "account purge"),
    }
    match services.sweep_expired().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "removed expired records"),
        Err(e) => tracing::warn!(error = %e, "expiry sweeper"),
    }
    // Exports whose builder died (its lease lapsed) are built here.
    match services.build_pending_exports().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(exports = n, "built data exports"),
        Err(e) => tracing::warn!(error = %e, "building data exports"),
    }
    match services.collect_orphans(service::ORPHAN_AGE).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(blobs = n, "deleted blobs no row names"),
        Err(e) => tracing::warn!(error = %e, "orphan sweeper"),
    }
    match services.clean_staging().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed staging leftovers"),
        Err(e) => tracing::warn!(error = %e, "staging sweeper"),
    }
}
