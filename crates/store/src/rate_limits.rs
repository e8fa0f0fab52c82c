//! Rate-limit state. One node (the embedded default) keeps it in memory with
//! `governor`; scale-out nodes must share it, so on PostgreSQL it is the same
//! algorithm (GCRA) in one SQL statement over a shared table — governor's state
//! lives in one process and cannot be shared.

use std::num::NonZeroU32;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::StoreResult;
pub use domain::rate_limit::{Budget, Decision};

#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Takes one request from `bucket`'s budget.
    async fn take(&self, bucket: &str, budget: Budget) -> StoreResult<Decision>;
    /// Forgets buckets that are full again (sweeper).
    async fn forget_idle(&self) -> StoreResult<()>;
}

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// In-process limits for a single node, with `governor`. One limiter per budget.
pub struct MemoryRateLimits {
    limiters: std::sync::Mutex<Vec<(Budget, std::sync::Arc<Keyed>)>>,
    clock: DefaultClock,
}

impl Default for MemoryRateLimits {
    fn default() -> Self {
        MemoryRateLimits {
            limiters: std::sync::Mutex::new(Vec::new()),
            clock: DefaultClock::default(),
        }
    }
}

impl MemoryRateLimits {
    fn limiter(&self, budget: Budget) -> std::sync::Arc<Keyed> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, l)) = limiters.iter().find(|(b, _)| *b == budget) {
            return l.clone();
        }
        let burst = NonZeroU32::new(budget.limit.max(1)).expect("non-zero");
        let quota = Quota::with_period(budget.interval())
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        let limiter = std::sync::Arc::new(
            RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
        );
        limiters.push((budget, limiter.clone()));
        limiter
    }
}

#[async_trait]
impl RateLimits for MemoryRateLimits {
    async fn take(&self, bucket: &str, budget: Budget) -> StoreResult<Decision> {
        let limiter = self.limiter(budget);
        Ok(match limiter.check_key(&bucket.to_owned()) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let used = budget.limit.saturating_sub(remaining);
                Decision::Allowed {
                    remaining,
                    reset: budget.interval() * used,
                }
            }
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        })
    }

    async fn forget_idle(&self) -> StoreResult<()> {
        for (_, limiter) in self
            .limiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            limiter.retain_recent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn memory_limits_allow_the_budget_then_refuse() {
        let limits = MemoryRateLimits::default();
        let budget = Budget {
            limit: 3,
            window: Duration::from_secs(60),
        };
        for left in [2, 1, 0] {
            match limits.take("a", budget).await.unwrap() {
                Decision::Allowed { remaining, .. } => assert_eq!(remaining, left),
                other => panic!("{other:?}"),
            }
        }
        match limits.take("a", budget).await.unwrap() {
            Decision::Limited { retry_after } => assert!(retry_after <= Duration::from_secs(20)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            limits.take("b", budget).await.unwrap(),
            Decision::Allowed { .. }
        ));
    }
}
