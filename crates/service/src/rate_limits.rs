//! Rate limits: separate budgets for reads, writes and uploads, per user for
//! authenticated calls and per client address for anonymous ones.

use std::sync::Arc;
use std::time::Duration;

use super::{ServiceResult, Services};
use store::rate_limits::{Budget, Decision, RateLimits};

/// What a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Reads,
    Writes,
    Uploads,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Reads => "reads",
            Class::Writes => "writes",
            Class::Uploads => "uploads",
        }
    }
}

/// Requests per minute for each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    pub reads: u32,
    pub writes: u32,
    pub uploads: u32,
}

impl Budgets {
    pub fn budget(&self, class: Class) -> Budget {
        let limit = match class {
            Class::Reads => self.reads,
            Class::Writes => self.writes,
            Class::Uploads => self.uploads,
        };
        Budget {
            limit: limit.max(1),
            window: Duration::from_secs(60),
        }
    }
}

/// The outcome for one request, with what the response headers report.
#[derive(Debug, Clone, Copy)]
pub struct RateCheck {
    pub class: Class,
    pub budget: Budget,
    pub decision: Decision,
}

pub type Limiter = (Arc<dyn RateLimits>, Budgets);

impl Services {
    /// Spends one request of `class` for `principal` (a user id or client address);
    /// `None` when limits are off.
    pub async fn check_rate(
        &self,
        class: Class,
        principal: &str,
    ) -> ServiceResult<Option<RateCheck>> {
        let Some((limits, budgets)) = &self.settings.rate_limits else {
            return Ok(None);
        };
        let budget = budgets.budget(class);
        let decision = limits
            .take(&format!("{}:{principal}", class.name()), budget)
            .await?;
        Ok(Some(RateCheck {
            class,
            budget,
            decision,
        }))
    }
}
