//! An in-process queue with SQS's delivery semantics (at least once, visibility timeouts,
//! receive counts, receipts that change with each delivery), in send order: what
//! `ferry serve` queues its jobs on, and what tests use where no SQS is wanted.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use super::{Delivery, Queue, QueueError, SendSummary, SQS_MAX_BATCH, SQS_MAX_VISIBILITY};

/// An in-process queue with SQS's at-least-once semantics, in send order.
#[derive(Debug)]
pub struct MemoryQueue {
    state: Mutex<State>,
    /// Woken when a message is sent or made visible early.
    arrived: Notify,
    visibility: Duration,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Stored>,
    next_id: u64,
}

#[derive(Debug)]
struct Stored {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: Instant,
    /// The receipt of the latest delivery; older receipts no longer work.
    receipt: Option<String>,
}

impl MemoryQueue {
    /// A queue whose received messages stay hidden for `visibility` unless deleted.
    pub fn new(visibility: Duration) -> MemoryQueue {
        MemoryQueue {
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            visibility,
        }
    }

    /// Messages not yet deleted, in flight or not.
    pub async fn len(&self) -> usize {
        self.state.lock().await.messages.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// Adds messages, visible at once: with the id given (a journal's, replayed), or a new
    /// one. Returns the ids, in order.
    pub(super) async fn push(&self, messages: Vec<(Option<String>, String)>) -> Vec<String> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let mut ids = Vec::with_capacity(messages.len());
        for (id, body) in messages {
            let id = id.unwrap_or_else(|| {
                state.next_id += 1;
                format!("m{}", state.next_id)
            });
            ids.push(id.clone());
            state.messages.push_back(Stored {
                id,
                body,
                receive_count: 0,
                visible_at: now,
                receipt: None,
            });
        }
        drop(state);
        self.arrived.notify_waiters();
        ids
    }

    /// Deletes the message `receipt` was handed out for, returning its id; like SQS,
    /// deleting an already deleted message is not an error (`None`).
    pub(super) async fn remove(&self, receipt: &str) -> Option<String> {
        let mut state = self.state.lock().await;
        let at = state
            .messages
            .iter()
            .position(|m| m.receipt.as_deref() == Some(receipt))?;
        state.messages.remove(at).map(|m| m.id)
    }

    /// Delivers up to `max` visible messages now, hiding them for the visibility timeout.
    /// When none is visible, also returns when the next hidden one reappears.
    fn take_visible(&self, state: &mut State, max: usize) -> (Vec<Delivery>, Option<Instant>) {
        let now = Instant::now();
        let mut delivered = Vec::new();
        let mut next_visible: Option<Instant> = None;
        for message in state.messages.iter_mut() {
            if message.visible_at > now {
                next_visible =
                    Some(next_visible.map_or(message.visible_at, |t| t.min(message.visible_at)));
                continue;
            }
            if delivered.len() == max {
                break;
            }
            message.receive_count += 1;
            message.visible_at = now + self.visibility;
            let receipt = format!(
                "{}-{}-{:08x}",
                message.id,
                message.receive_count,
                fastrand::u32(..)
            );
            message.receipt = Some(receipt.clone());
            delivered.push(Delivery {
                message_id: message.id.clone(),
                receipt,
                body: message.body.clone(),
                receive_count: message.receive_count,
            });
        }
        (delivered, next_visible)
    }
}

impl Default for MemoryQueue {
    /// SQS's default visibility timeout, 30 s.
    fn default() -> Self {
        MemoryQueue::new(Duration::from_secs(30))
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send_bodies(&self, bodies: &[String]) -> Result<SendSummary, QueueError> {
        let messages = bodies.iter().map(|body| (None, body.clone())).collect();
        self.push(messages).await;
        Ok(SendSummary { sent: bodies.len() })
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let max = max.clamp(1, SQS_MAX_BATCH);
        let deadline = Instant::now() + wait;
        loop {
            // Registered before the lock is released, so a send in between still wakes us.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (delivered, next_visible) = {
                let mut state = self.state.lock().await;
                self.take_visible(&mut state, max)
            };
            if !delivered.is_empty() || Instant::now() >= deadline {
                return Ok(delivered);
            }
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.remove(receipt).await;
        Ok(())
    }

    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let mut state = self.state.lock().await;
        let message = state
            .messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt))
            .ok_or(QueueError::InvalidReceipt)?;
        message.visible_at = Instant::now() + timeout.min(SQS_MAX_VISIBILITY);
        drop(state);
        if timeout.is_zero() {
            self.arrived.notify_waiters();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::jobs;
    use super::*;
    use crate::job::Job;

    fn parsed(deliveries: &[Delivery]) -> Vec<Job> {
        deliveries
            .iter()
            .map(|d| Job::parse(&d.body).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn memory_delivers_in_order_and_in_batches_of_at_most_ten() {
        let queue = MemoryQueue::default();
        let sent = jobs(12);
        assert_eq!(queue.send(&sent).await.unwrap(), SendSummary { sent: 12 });
        assert_eq!(queue.len().await, 12);
        let first = queue.receive(100, Duration::ZERO).await.unwrap();
        let second = queue.receive(100, Duration::ZERO).await.unwrap();
        assert_eq!((first.len(), second.len()), (10, 2));
        let all: Vec<Job> = parsed(&first).into_iter().chain(parsed(&second)).collect();
        assert_eq!(all, sent);
        assert!(first.iter().all(|d| d.receive_count == 1));
        // All in flight: nothing visible, and still counted.
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(queue.len().await, 12);
        for d in first.iter().chain(&second) {
            queue.delete(&d.receipt).await.unwrap();
        }
        assert!(queue.is_empty().await);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_redelivers_after_the_visibility_timeout() {
        let queue = MemoryQueue::new(Duration::from_secs(5));
        queue.send(&jobs(1)).await.unwrap();
        let first = queue.receive(1, Duration::ZERO).await.unwrap();
        let started = Instant::now();
        // Waiting longer than the timeout: the message comes back when it expires.
        let again = queue.receive(1, Duration::from_secs(20)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(again[0].message_id, first[0].message_id);
        assert_eq!(again[0].receive_count, 2);
        assert_ne!(again[0].receipt, first[0].receipt);
        // The old receipt no longer works; the new one does.
        assert!(matches!(
            queue
                .extend_visibility(&first[0].receipt, Duration::ZERO)
                .await,
            Err(QueueError::InvalidReceipt)
        ));
        queue.delete(&first[0].receipt).await.unwrap();
        assert_eq!(queue.len().await, 1);
        queue.delete(&again[0].receipt).await.unwrap();
        assert!(queue.is_empty().await);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_extends_and_releases_visibility() {
        let queue = MemoryQueue::new(Duration::from_secs(5));
        queue.send(&jobs(1)).await.unwrap();
        let first = queue.receive(1, Duration::ZERO).await.unwrap();
        queue
            .extend_visibility(&first[0].receipt, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(queue
            .receive(1, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty());
        let again = queue.receive(1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(again[0].receive_count, 2);
        // Zero releases it at once.
        queue
            .extend_visibility(&again[0].receipt, Duration::ZERO)
            .await
            .unwrap();
        let third = queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(third[0].receive_count, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_receive_waits_for_a_send_or_gives_up() {
        let queue = std::sync::Arc::new(MemoryQueue::default());
        let started = Instant::now();
        assert!(queue
            .receive(10, Duration::from_secs(3))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(started.elapsed(), Duration::from_secs(3));

        let receiver = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.receive(10, Duration::from_secs(20)).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        queue.send(&jobs(2)).await.unwrap();
        let got = receiver.await.unwrap().unwrap();
        assert_eq!(got.len(), 2);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn memory_queue_is_a_dyn_queue() {
        let queue: Box<dyn Queue> = Box::new(MemoryQueue::default());
        queue.send(&jobs(3)).await.unwrap();
        assert_eq!(queue.receive(2, Duration::ZERO).await.unwrap().len(), 2);
    }
}
