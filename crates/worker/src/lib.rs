//! Image workers: claim a job, render its image on the render pool, store the
//! result, finish the job. Jobs are leased, and the lease is extended while the
//! work runs, so a worker that dies simply lets its lease run out and another
//! (or the same process after a restart) picks the job up again.

mod image_job;
mod pool;
pub mod sweeper;

pub use pool::{PoolError, RenderPool};

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use domain::now;
use service::Services;
use store::{Job, JobOutcome};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs processed at once; each holds one render thread while it renders.
    pub concurrency: usize,
    /// Estimated decode memory admitted at once, in bytes, over all jobs.
    pub memory_budget: u64,
    pub lease: Duration,
    /// Longest sleep between looks at the queue when no wake-up arrives.
    pub poll_interval: Duration,
    /// Claims after which a job is given up and its post marked failed.
    pub max_attempts: u32,
    pub image_limits: imaging::Limits,
    /// Test hook: pause this long after claiming each job.
    pub debug_delay: Duration,
}

#[derive(Clone)]
pub struct Worker {
    services: Services,
    config: WorkerConfig,
    pool: Arc<RenderPool>,
}

impl Worker {
    pub fn new(services: Services, config: WorkerConfig) -> anyhow::Result<Self> {
        let pool = Arc::new(RenderPool::new(config.concurrency, config.memory_budget)?);
        Ok(Worker {
            services,
            config,
            pool,
        })
    }

    /// Runs `concurrency` job loops until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..self.config.concurrency {
            let worker = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { worker.job_loop(n, shutdown).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn job_loop(&self, n: usize, shutdown: CancellationToken) {
        tracing::info!(worker = n, "image worker started");
        while !shutdown.is_cancelled() {
            match self.run_one().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::error!(worker = n, error = %e, "image worker error"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.services.store.wait_for_jobs(self.config.poll_interval) => {}
            }
        }
    }

    /// Claims and processes one job; false if none was runnable.
    pub async fn run_one(&self) -> anyhow::Result<bool> {
        let Some(job) = self
            .services
            .store
            .claim_job(self.config.lease, now())
            .await?
        else {
            return Ok(false);
        };
        if job.attempt > self.config.max_attempts {
            let reason = format!(
                "processing was abandoned after {} attempts",
                self.config.max_attempts
            );
            self.services
                .store
                .finish_job(&job, JobOutcome::Failed(reason), now())
                .await?;
            return Ok(true);
        }
        let result = self.with_heartbeat(&job, self.process(&job)).await;
        match result {
            Ok(()) => {}
            Err(e) => self.retry_or_fail(&job, &e).await?,
        }
        Ok(true)
    }

    /// Runs `work` while extending the job's lease at a third of its length.
    async fn with_heartbeat<T>(&self, job: &Job, work: impl Future<Output = T>) -> T {
        let period = self.config.lease / 3;
        let beat = async {
            loop {
                tokio::time::sleep(period).await;
                match self
                    .services
                    .store
                    .extend_lease(job, self.config.lease, now())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(post_id = %job.post_id, "lost the lease on a job"),
                    Err(e) => {
                        tracing::warn!(post_id = %job.post_id, error = %e, "extending a job lease")
                    }
                }
            }
        };
        tokio::select! {
            out = work => out,
            _ = beat => unreachable!("the heartbeat never ends"),
        }
    }

    async fn retry_or_fail(&self, job: &Job, error: &anyhow::Error) -> anyhow::Result<()> {
        if job.attempt >= self.config.max_attempts {
            tracing::error!(post_id = %job.post_id, error = %error, "giving up on a job");
            let reason = "the image could not be processed (internal error)".to_owned();
            self.services
                .store
                .finish_job(job, JobOutcome::Failed(reason), now())
                .await?;
        } else {
            let backoff = Duration::from_secs(2u64.saturating_pow(job.attempt).min(300));
            tracing::warn!(post_id = %job.post_id, error = %error, ?backoff, "job failed; will retry");
            let retry_at = domain::later(now(), backoff);
            self.services
                .store
                .retry_job(job, &error.to_string(), retry_at)
                .await?;
        }
        Ok(())
    }
}
