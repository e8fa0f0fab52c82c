//! In-process wake-ups for event streams, one per user: a stream waits only
//! for its own user's events, so one busy user's notifications do not wake
//! every open stream on the node. Each backend wakes a user after the
//! transaction that wrote the event commits (PostgreSQL through NOTIFY, so
//! streams on every node wake).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use domain::UserId;

#[derive(Default)]
pub struct EventWakers {
    waiting: Mutex<HashMap<UserId, Weak<Notify>>>,
}

impl EventWakers {
    /// Waits until `user` may have a new event, or `timeout`.
    pub async fn wait(&self, user: UserId, timeout: Duration) {
        let notify = self.waiter(user);
        let _ = tokio::time::timeout(timeout, notify.notified()).await;
    }

    fn waiter(&self, user: UserId) -> Arc<Notify> {
        let mut waiting = self.waiting.lock().expect("waker map poisoned");
        if let Some(live) = waiting.get(&user).and_then(Weak::upgrade) {
            return live;
        }
        // Forget users nobody waits for any more before the map grows past its live size.
        if waiting.len() >= 1024 && waiting.len().is_power_of_two() {
            waiting.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        waiting.insert(user, Arc::downgrade(&notify));
        notify
    }

    /// Wakes the streams of `user` on this node.
    pub fn wake(&self, user: UserId) {
        let waiting = self.waiting.lock().expect("waker map poisoned");
        if let Some(notify) = waiting.get(&user).and_then(Weak::upgrade) {
            notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_only_its_own_user() {
        let wakers = Arc::new(EventWakers::default());
        let (alice, bob) = (UserId::new(), UserId::new());
        let w = wakers.clone();
        let alice_waits = tokio::spawn(async move {
            let t = std::time::Instant::now();
            w.wait(alice, Duration::from_secs(5)).await;
            t.elapsed()
        });
        let w = wakers.clone();
        let bob_waits = tokio::spawn(async move {
            let t = std::time::Instant::now();
            w.wait(bob, Duration::from_millis(300)).await;
            t.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        wakers.wake(alice);
        assert!(
            alice_waits.await.unwrap() < Duration::from_secs(5),
            "alice was woken"
        );
        assert!(
            bob_waits.await.unwrap() >= Duration::from_millis(300),
            "bob slept to his timeout"
        );
    }
}
