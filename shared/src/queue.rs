//! The job queue of ferry's serverless mode: the planner sends [`Job`]s, workers receive,
//! execute and delete them. [`Queue`] is the abstraction; [`SqsQueue`] talks to Amazon SQS
//! (or anything speaking its API, such as moto), [`MemoryQueue`] is an in-process queue with
//! the same delivery semantics for tests and local runs.
//!
//! Semantics shared by both: delivery is at least once. A received message is hidden for
//! the queue's visibility timeout and comes back (with a higher `receive_count`) unless it
//! is deleted first; a worker that needs longer extends the timeout.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use futures::stream::{self, StreamExt};
use thiserror::Error;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use crate::job::Job;

/// SQS's limits: messages per batch call, seconds of long polling, the largest message and
/// batch payload, the longest visibility timeout.
pub const SQS_MAX_BATCH: usize = 10;
pub const SQS_MAX_WAIT: Duration = Duration::from_secs(20);
pub const SQS_MAX_PAYLOAD: usize = 256 * 1024;
pub const SQS_MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// Attempts at sending the entries of one batch that SQS reported as failed.
const SEND_ATTEMPTS: u32 = 5;
/// SendMessageBatch calls in flight at once.
const SEND_CONCURRENCY: usize = 8;
const SEND_BACKOFF: Duration = Duration::from_millis(100);

/// What [`Queue::send`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSummary {
    pub sent: usize,
}

/// One received message. `receipt` is what [`Queue::delete`] and
/// [`Queue::extend_visibility`] need; it changes with every delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// How many times the message was received, this delivery included.
    pub receive_count: u32,
}

/// Why a queue operation failed.
#[derive(Debug, Error)]
pub enum QueueError {
    #[error("{not_sent} of {total} jobs were not sent to the queue: {reason}")]
    NotSent {
        total: usize,
        not_sent: usize,
        reason: String,
    },
    #[error("queue {operation} failed: {message}")]
    Service {
        operation: &'static str,
        message: String,
    },
    #[error("receipt handle is not valid (the message was deleted or received again)")]
    InvalidReceipt,
}

/// A job queue. Object safe, so the Lambda functions can hold a `Box<dyn Queue>`.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one message per job. Fails if any job could not be sent, naming how many.
    async fn send(&self, jobs: &[Job]) -> Result<SendSummary, QueueError>;

    /// Up to `max` (at most 10) messages, waiting up to `wait` for the first one; an empty
    /// list when none arrived in time.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;

    /// Removes a received message for good.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;

    /// Hides a received message for `timeout` from now (zero: visible again at once).
    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;
}

// ---------------------------------------------------------------------------------------
// In memory

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
    async fn send(&self, jobs: &[Job]) -> Result<SendSummary, QueueError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        for job in jobs {
            state.next_id += 1;
            let id = format!("m{}", state.next_id);
            state.messages.push_back(Stored {
                id,
                body: job.to_body(),
                receive_count: 0,
                visible_at: now,
                receipt: None,
            });
        }
        drop(state);
        self.arrived.notify_waiters();
        Ok(SendSummary { sent: jobs.len() })
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
        // Like SQS, deleting an already deleted message is not an error.
        let mut state = self.state.lock().await;
        state
            .messages
            .retain(|m| m.receipt.as_deref() != Some(receipt));
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

// ---------------------------------------------------------------------------------------
// Amazon SQS

/// A queue on Amazon SQS (or an SQS-compatible endpoint), addressed by its URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

/// The HTTPS client the SDK uses: hyper 1 + rustls with ring, the stack reqwest already
/// brings, instead of the SDK default's aws-lc-rs.
pub fn https_client() -> aws_sdk_sqs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// AWS configuration from the environment, the way every AWS SDK reads it: region from
/// `AWS_REGION`/`AWS_DEFAULT_REGION` or the profile; credentials from `AWS_ACCESS_KEY_ID`/
/// `AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN` (what Lambda provides), web identity, the
/// profile (`AWS_PROFILE`, `credential_process`), ECS or EC2 instance metadata; endpoint
/// overrides from `AWS_ENDPOINT_URL_SQS` or `AWS_ENDPOINT_URL` (a local moto, say).
pub async fn load_aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

impl SqsQueue {
    /// The queue at `queue_url`, configured from the environment as [`load_aws_config`]
    /// describes. Without a configured region, the region in an AWS queue URL is used.
    pub async fn from_env(queue_url: impl Into<String>) -> SqsQueue {
        SqsQueue::with_config(&load_aws_config().await, queue_url)
    }

    /// The queue at `queue_url` with explicit AWS configuration (tests pass an endpoint,
    /// region and static credentials here instead of touching the environment).
    pub fn with_config(config: &SdkConfig, queue_url: impl Into<String>) -> SqsQueue {
        let url = queue_url.into();
        let mut builder = aws_sdk_sqs::config::Builder::from(config);
        if config.region().is_none() {
            if let Some(region) = region_from_url(&url) {
                builder = builder.region(Region::new(region));
            }
        }
        SqsQueue::with_client(aws_sdk_sqs::Client::from_conf(builder.build()), url)
    }

    /// The queue at `queue_url` through an existing client.
    pub fn with_client(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            url: queue_url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// Sends one batch, retrying the entries SQS reports as failed for a reason of its own
    /// (throttling, an internal error). Returns how many entries were sent, and the reason
    /// the others were not.
    async fn send_batch(
        &self,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> (usize, Option<String>) {
        let mut pending = entries;
        let mut sent = 0;
        let mut reason = None;
        for attempt in 0..SEND_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let output = match self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(pending.clone()))
                .send()
                .await
            {
                Ok(output) => output,
                // The SDK already retried transient failures of the whole call.
                Err(e) => return (sent, Some(DisplayErrorContext(&e).to_string())),
            };
            sent += output.successful.len();
            let mut retry = Vec::new();
            for failed in output.failed {
                let why = format!(
                    "{}: {}",
                    failed.code,
                    failed.message.as_deref().unwrap_or("no message")
                );
                // A sender fault (a message too large, say) fails the same way every time.
                if !failed.sender_fault {
                    if let Some(entry) = pending.iter().find(|e| e.id == failed.id) {
                        retry.push(entry.clone());
                    }
                }
                reason = Some(why);
            }
            if retry.is_empty() {
                return (sent, reason);
            }
            pending = retry;
        }
        (sent, reason)
    }
}

/// Exponential with jitter: about 100, 200, 400, 800 ms.
fn backoff(attempt: u32) -> Duration {
    crate::backoff::jittered(SEND_BACKOFF, attempt.saturating_sub(1), Duration::MAX)
}

/// `us-east-1` from `https://sqs.us-east-1.amazonaws.com/123456789012/name`.
fn region_from_url(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_string();
    let rest = host.strip_prefix("sqs.")?;
    let (region, domain) = rest.split_once('.')?;
    (domain.starts_with("amazonaws.") && !region.is_empty()).then(|| region.to_string())
}

/// Groups message bodies into SendMessageBatch calls: at most 10 entries and 256 KiB per
/// call. A body over 256 KiB on its own can never be sent and is returned apart.
fn batches(bodies: &[String]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut too_large = Vec::new();
    let mut size = 0;
    for (i, body) in bodies.iter().enumerate() {
        if body.len() > SQS_MAX_PAYLOAD {
            too_large.push(i);
            continue;
        }
        match groups.last_mut() {
            Some(group) if group.len() < SQS_MAX_BATCH && size + body.len() <= SQS_MAX_PAYLOAD => {
                group.push(i);
                size += body.len();
            }
            _ => {
                groups.push(vec![i]);
                size = body.len();
            }
        }
    }
    (groups, too_large)
}

fn service_error<E>(operation: &'static str, error: E) -> QueueError
where
    E: std::error::Error,
{
    QueueError::Service {
        operation,
        message: DisplayErrorContext(&error).to_string(),
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, jobs: &[Job]) -> Result<SendSummary, QueueError> {
        let bodies: Vec<String> = jobs.iter().map(Job::to_body).collect();
        let (groups, too_large) = batches(&bodies);
        let mut sent = 0;
        let mut reason = (!too_large.is_empty()).then(|| {
            format!(
                "{} job(s) over SQS's {} KiB message limit",
                too_large.len(),
                SQS_MAX_PAYLOAD / 1024
            )
        });
        // A few calls in flight: 10,000 jobs are 1,000 calls, too many to wait for in turn.
        let mut results = stream::iter(groups)
            .map(|group| {
                let entries = group
                    .iter()
                    .enumerate()
                    .map(|(n, &i)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(n.to_string())
                            .message_body(&bodies[i])
                            .build()
                            .expect("id and body are set")
                    })
                    .collect();
                self.send_batch(entries)
            })
            .buffer_unordered(SEND_CONCURRENCY);
        while let Some((batch_sent, batch_reason)) = results.next().await {
            sent += batch_sent;
            if let Some(why) = batch_reason {
                reason.get_or_insert(why);
            }
        }
        if sent == jobs.len() {
            return Ok(SendSummary { sent });
        }
        Err(QueueError::NotSent {
            total: jobs.len(),
            not_sent: jobs.len() - sent,
            reason: reason.unwrap_or_else(|| "no reason given".into()),
        })
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let max = max.clamp(1, SQS_MAX_BATCH) as i32;
        let wait_seconds = wait.min(SQS_MAX_WAIT).as_secs_f64().ceil() as i32;
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| service_error("ReceiveMessage", e))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                Delivery {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt: m.receipt_handle.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                    receive_count,
                }
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| service_error("DeleteMessage", e))?;
        Ok(())
    }

    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let seconds = timeout.min(SQS_MAX_VISIBILITY).as_secs_f64().ceil() as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| service_error("ChangeMessageVisibility", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(n: usize) -> Vec<Job> {
        (0..n)
            .map(|i| {
                Job::parse(&format!(
                    r#"{{"v":1,"plan_id":"t","source":"a.io/x:{i}","targets":["b.io/x:{i}"]}}"#
                ))
                .unwrap()
            })
            .collect()
    }

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

    #[test]
    fn batches_respect_count_and_payload_limits() {
        let small = vec!["x".repeat(100); 25];
        let (groups, too_large) = batches(&small);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        assert!(too_large.is_empty());
        assert_eq!(groups.concat(), (0..25).collect::<Vec<_>>());

        let big = vec![
            "a".repeat(100 * 1024),
            "b".repeat(100 * 1024),
            "c".repeat(100 * 1024),
            "d".repeat(300 * 1024),
            "e".repeat(10),
        ];
        let (groups, too_large) = batches(&big);
        assert_eq!(groups, [vec![0, 1], vec![2, 4]]);
        assert_eq!(too_large, [3]);
    }

    #[test]
    fn finds_the_region_in_aws_queue_urls() {
        assert_eq!(
            region_from_url("https://sqs.eu-west-1.amazonaws.com/123456789012/ferry-jobs")
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_url("https://sqs.cn-north-1.amazonaws.com.cn/1/q").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            region_from_url("http://127.0.0.1:5000/123456789012/q"),
            None
        );
        assert_eq!(region_from_url("not a url"), None);
    }

    #[test]
    fn backoff_grows_and_stays_short() {
        assert!(backoff(1) <= Duration::from_millis(100));
        assert!(backoff(4) >= Duration::from_millis(400));
        assert!(backoff(4) <= Duration::from_millis(800));
    }
}
