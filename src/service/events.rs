//! Notifications for a user, streamed from the durable event log. A stream
//! resumes after any event id the client saw (`Last-Event-ID`), so a dropped
//! connection loses nothing and repeats nothing while the event is retained.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::Stream;

use super::{ServiceError, ServiceResult, Services};
use crate::domain::{User, UserId};
use crate::store::Event;

/// Longest wait between looks at the log when no wake-up arrives.
const POLL: Duration = Duration::from_secs(1);

impl Services {
    /// Where a stream starts: after `Last-Event-ID` if given, else at the newest event.
    pub async fn events_start(
        &self,
        user: &User,
        last_event_id: Option<&str>,
    ) -> ServiceResult<i64> {
        match last_event_id {
            Some(raw) => {
                raw.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or(ServiceError::Validation(
                        crate::domain::ValidationErrors::single(
                            "Last-Event-ID",
                            "must be an event id received from this stream",
                        ),
                    ))
            }
            None => Ok(self.store.last_event_seq(user.id).await?),
        }
    }

    /// The user's events after `after`, as they happen. Ends on a storage error
    /// (the client reconnects with the last id it saw).
    pub fn events(&self, user: UserId, after: i64) -> impl Stream<Item = Event> + Send + use<> {
        let state = (self.clone(), after, VecDeque::<Event>::new());
        futures_util::stream::unfold(state, move |(services, after, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    let seq = event.seq;
                    return Some((event, (services, seq, pending)));
                }
                match services.store.events_after(user, after, 100).await {
                    Ok(events) if !events.is_empty() => pending.extend(events),
                    Ok(_) => services.store.wait_for_events(POLL).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream ended by a storage error");
                        return None;
                    }
                }
            }
        })
    }
}
