//! Notifications for a user, streamed from the durable event log. A stream
//! resumes after any event id the client saw (`Last-Event-ID`), so a dropped
//! connection loses nothing and repeats nothing while the event is retained.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;

use super::{ServiceError, ServiceResult, Services};
use domain::{User, UserId};
use store::Event;

/// Longest wait between looks at the log when no wake-up arrives.
const POLL: Duration = Duration::from_secs(1);

/// Open event streams are bounded: each holds a connection and a task for as
/// long as the client likes, so one user (or a flood of sign-ups) must not be
/// able to hold them all.
pub struct EventStreamSlots {
    per_user: Mutex<HashMap<UserId, usize>>,
    node: Arc<tokio::sync::Semaphore>,
}

/// One open stream's place; given back when the stream ends.
pub struct EventStreamSlot {
    slots: Arc<EventStreamSlots>,
    user: UserId,
    _node: tokio::sync::OwnedSemaphorePermit,
}

impl EventStreamSlots {
    /// Streams one user may hold open at once (phones, tablets, browser tabs).
    pub const PER_USER: usize = 8;

    pub fn new(per_node: usize) -> Self {
        EventStreamSlots {
            per_user: Mutex::new(HashMap::new()),
            node: Arc::new(tokio::sync::Semaphore::new(per_node.max(1))),
        }
    }

    fn take(self: &Arc<Self>, user: UserId) -> ServiceResult<EventStreamSlot> {
        let node = self.node.clone().try_acquire_owned().map_err(|_| {
            ServiceError::Overloaded("this server has too many open event streams; retry shortly")
        })?;
        let mut per_user = self.per_user.lock().expect("stream slots poisoned");
        let open = per_user.entry(user).or_default();
        if *open >= Self::PER_USER {
            return Err(ServiceError::TooMany(
                "too many open event streams for this account; close one first",
            ));
        }
        *open += 1;
        Ok(EventStreamSlot {
            slots: self.clone(),
            user,
            _node: node,
        })
    }
}

impl Drop for EventStreamSlot {
    fn drop(&mut self) {
        let mut per_user = self.slots.per_user.lock().expect("stream slots poisoned");
        if let Some(open) = per_user.get_mut(&self.user) {
            *open -= 1;
            if *open == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

impl Services {
    /// A place for one more event stream of `user`, or why there is none.
    pub fn open_event_stream(&self, user: &User) -> ServiceResult<EventStreamSlot> {
        self.event_streams.take(user.id)
    }

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
                    .ok_or(ServiceError::Validation(domain::ValidationErrors::single(
                        "Last-Event-ID",
                        "must be an event id received from this stream",
                    )))
            }
            None => Ok(self.store.last_event_seq(user.id).await?),
        }
    }

    /// The user's events after `after`, as they happen. Ends on a storage error
    /// (the client reconnects with the last id it saw).
    /// The stream holds `slot` until it ends.
    pub fn events(
        &self,
        slot: EventStreamSlot,
        after: i64,
    ) -> impl Stream<Item = Event> + Send + use<> {
        let user = slot.user;
        let state = (self.clone(), after, VecDeque::<Event>::new(), slot);
        futures_util::stream::unfold(
            state,
            move |(services, after, mut pending, slot)| async move {
                loop {
                    if let Some(event) = pending.pop_front() {
                        let seq = event.seq;
                        return Some((event, (services, seq, pending, slot)));
                    }
                    match services.store.events_after(user, after, 100).await {
                        Ok(events) if !events.is_empty() => pending.extend(events),
                        Ok(_) => services.store.wait_for_events(user, POLL).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "event stream ended by a storage error");
                            return None;
                        }
                    }
                }
            },
        )
    }
}
