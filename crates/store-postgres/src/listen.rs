//! Wake-ups between servers: every transition notifies `assay_events` (payload: the
//! evaluation's id) and, when work became claimable, `assay_queue`, in its own transaction
//! (PostgreSQL delivers them when it commits). [`PgStore::listen`] forwards them to a process's
//! in-process bus, so that workers and live streams of every server wake at once instead of at
//! their next poll.
//!
//! Notifications are only a hint: one missed during a reconnection costs a poll interval,
//! nothing more, because every waiter also polls the store, which stays the truth. After a
//! reconnection the queue is signalled once (work may have arrived meanwhile).

use crate::connection::PgStore;
use assay_store::bus::LocalBus;
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::time::Duration;

/// The channel of "evaluation X changed" (payload: its id).
pub const EVENTS_CHANNEL: &str = "assay_events";
/// The channel of "work was queued" (empty payload).
pub const QUEUE_CHANNEL: &str = "assay_queue";

/// Waits between reconnection attempts: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl PgStore {
    /// Starts a task that listens on its own connection and forwards notifications to `bus`
    /// (`assay_events` → `publish_events(id)`, `assay_queue` → `notify_queue()`). It
    /// reconnects with backoff for as long as it runs, logging once per outage; abort the
    /// handle to stop it.
    pub fn listen(&self, bus: LocalBus) -> tokio::task::JoinHandle<()> {
        let connect = self.connect.clone();
        tokio::spawn(async move {
            // A pool of one connection: the listener's own, re-opened after a loss.
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(10))
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_lazy_with(connect);
            let mut backoff = BACKOFF_FIRST;
            let mut down_since: Option<std::time::Instant> = None;
            loop {
                let error = match forward(&pool, &bus, &mut down_since, &mut backoff).await {
                    Ok(()) => continue,
                    Err(e) => e,
                };
                if down_since.is_none() {
                    tracing::warn!(error = %error, "store notifications lost: reconnecting");
                    down_since = Some(std::time::Instant::now());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        })
    }
}

/// Listens and forwards until the connection fails for good (`Err`).
async fn forward(
    pool: &sqlx::PgPool,
    bus: &LocalBus,
    down_since: &mut Option<std::time::Instant>,
    backoff: &mut Duration,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen_all([EVENTS_CHANNEL, QUEUE_CHANNEL]).await?;
    if let Some(since) = down_since.take() {
        tracing::info!(
            after_ms = since.elapsed().as_millis(),
            "store notifications back"
        );
    }
    *backoff = BACKOFF_FIRST;
    // Whatever was queued while not listening is claimable now.
    bus.notify_queue();
    loop {
        match listener.try_recv().await? {
            Some(n) => match n.channel() {
                EVENTS_CHANNEL => bus.publish_events(n.payload()),
                QUEUE_CHANNEL => bus.notify_queue(),
                _ => {}
            },
            // The connection was lost and has been re-established (notifications meanwhile
            // are lost: wake the queue's waiters once).
            None => bus.notify_queue(),
        }
    }
}
