//! Rate-limit budgets and the decision a limiter returns for one request.

use std::time::Duration;

/// `limit` requests per `window`, with bursts up to `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub window: Duration,
}

impl Budget {
    /// The time one request "costs".
    pub fn interval(&self) -> Duration {
        self.window / self.limit.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `remaining` more now, full again after `reset`.
    Allowed { remaining: u32, reset: Duration },
    /// Refused; try again after `retry_after`.
    Limited { retry_after: Duration },
}
