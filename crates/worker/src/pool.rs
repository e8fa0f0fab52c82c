//! Where images are rendered: a dedicated pool of `concurrency` threads at a
//! lower CPU priority, so the API's threads win the CPU whenever both want it,
//! and a memory budget that admits each job by its header's estimate, so a
//! few huge images cannot exhaust memory even when the thread count allows them.

use std::sync::Arc;

use tokio::sync::{Semaphore, oneshot};

/// Nice value of render threads: the scheduler then gives API threads (nice 0)
/// about ten times their CPU share when both are runnable.
const RENDER_NICENESS: libc::c_int = 10;

pub struct RenderPool {
    threads: rayon::ThreadPool,
    /// Permits are MiB of estimated decode memory.
    budget: Arc<Semaphore>,
    budget_mib: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the render panicked")]
    Panicked,
}

impl RenderPool {
    pub fn new(threads: usize, budget_bytes: u64) -> anyhow::Result<Self> {
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|n| format!("image-render-{n}"))
            .start_handler(|_| lower_priority())
            .build()?;
        let budget_mib = u32::try_from((budget_bytes >> 20).max(1)).unwrap_or(u32::MAX >> 3);
        Ok(RenderPool {
            threads,
            budget: Arc::new(Semaphore::new(budget_mib as usize)),
            budget_mib,
        })
    }

    /// Runs `work` once `cost_bytes` of the budget is free. A job costlier than
    /// the whole budget waits for the whole budget and then runs alone.
    pub async fn run<T: Send + 'static>(
        &self,
        cost_bytes: u64,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let mib = u32::try_from(cost_bytes.div_ceil(1 << 20))
            .unwrap_or(u32::MAX)
            .clamp(1, self.budget_mib);
        let _admitted = self
            .budget
            .acquire_many(mib)
            .await
            .expect("the budget semaphore is never closed");
        metrics::gauge!("image_memory_admitted_mib").increment(f64::from(mib));
        let (tx, rx) = oneshot::channel();
        self.threads.spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = tx.send(result);
        });
        let result = rx.await;
        metrics::gauge!("image_memory_admitted_mib").decrement(f64::from(mib));
        match result {
            Ok(Ok(value)) => Ok(value),
            _ => Err(PoolError::Panicked),
        }
    }
}

fn lower_priority() {
    // On Linux niceness is per thread: `who` is this thread's id.
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, RENDER_NICENESS) != 0 {
            tracing::warn!("could not lower the priority of an image render thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_are_admitted_within_the_memory_budget() {
        // Four threads but 100 MiB: two 50 MiB jobs at once, never three.
        let pool = Arc::new(RenderPool::new(4, 100 << 20).unwrap());
        let running = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let mut jobs = Vec::new();
        for _ in 0..6 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            jobs.push(tokio::spawn(async move {
                pool.run(50 << 20, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .unwrap()
            }));
        }
        for job in jobs {
            job.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_oversized_job_runs_alone_and_a_panic_is_an_error() {
        let pool = RenderPool::new(2, 10 << 20).unwrap();
        assert_eq!(pool.run(1 << 40, || 7).await.unwrap(), 7);
        assert!(matches!(
            pool.run(1, || panic!("codec bug")).await,
            Err(PoolError::Panicked)
        ));
    }
}
