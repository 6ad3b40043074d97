//! Emptying the planner scenario's queue while a cold plan runs: moto spends O(queue
//! length) per message sent, so without purges the figures would be moto's scan rather
//! than ferry's work (see `planner.rs`). A [`Purger`] calls PurgeQueue every
//! [`PURGE_EVERY`] and reports how many purges it made and which failed.

use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use support::Moto;

/// How often the queue is purged during a cold plan.
pub const PURGE_EVERY: Duration = Duration::from_millis(150);
/// No plan takes this long; the purger stops by itself after it.
const PURGER_LIMIT: Duration = Duration::from_secs(3600);

/// One PurgeQueue call.
pub async fn purge(moto: &Moto, url: &str) -> anyhow::Result<()> {
    moto.client()
        .purge_queue()
        .queue_url(url)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "PurgeQueue {url}: {} (moto must run with MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR=false)",
                DisplayErrorContext(e)
            )
        })?;
    Ok(())
}

/// A task purging the queue every [`PURGE_EVERY`] until stopped (or [`PURGER_LIMIT`]).
pub struct Purger {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Purger {
    pub fn start(client: aws_sdk_sqs::Client, url: String) -> Purger {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let (mut purges, mut errors) = (0, Vec::new());
            let deadline = tokio::time::Instant::now() + PURGER_LIMIT;
            let mut tick = tokio::time::interval(PURGE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while tokio::time::Instant::now() < deadline {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                match client.purge_queue().queue_url(&url).send().await {
                    Ok(_) => purges += 1,
                    Err(e) => errors.push(DisplayErrorContext(e).to_string()),
                }
            }
            (purges, errors)
        });
        Purger { stop, task }
    }

    /// Stops purging; the purges done and the errors met.
    pub async fn stop(self) -> anyhow::Result<(usize, Vec<String>)> {
        // The task may have ended by itself (PURGER_LIMIT): then nobody listens.
        let _ = self.stop.send(());
        Ok(self.task.await?)
    }
}
