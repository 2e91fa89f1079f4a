//! In-process signals between the API and the workers of one process: "the queue has work" and
//! "evaluation X has new events". They only shorten waits; the store stays the source of truth,
//! so a process that misses a signal (or runs elsewhere) still sees everything by polling.

use std::sync::Arc;
use tokio::sync::{Notify, broadcast};

#[derive(Clone)]
pub struct LocalBus {
    events: broadcast::Sender<String>,
    queue: Arc<Notify>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus::new()
    }
}

impl LocalBus {
    pub fn new() -> LocalBus {
        let (events, _) = broadcast::channel(4096);
        LocalBus {
            events,
            queue: Arc::new(Notify::new()),
        }
    }

    /// Evaluation `id` has new events (or a new status).
    pub fn publish_events(&self, id: &str) {
        let _ = self.events.send(id.to_string());
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    /// New work was queued.
    pub fn notify_queue(&self) {
        self.queue.notify_waiters();
        self.queue.notify_one();
    }

    /// Waits for `notify_queue` (callers always bound this with a timeout).
    pub async fn queue_notified(&self) {
        self.queue.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_reach_subscribers_and_queue_wakes_a_waiter() {
        let bus = LocalBus::new();
        let mut rx = bus.subscribe_events();
        bus.publish_events("e1");
        assert_eq!(rx.recv().await.unwrap(), "e1");
        let b2 = bus.clone();
        let waiter = tokio::spawn(async move { b2.queue_notified().await });
        bus.notify_queue();
        waiter.await.unwrap();
    }
}
