//! Amazon SQS (or an SQS-compatible endpoint such as moto) as the job queue: the SDK set up
//! with the same TLS stack as the registry client, batched sends within SQS's count and
//! payload limits with retries of the entries SQS reports failed, long-polling receives,
//! visibility changes. The queue URL comes from `FERRY_QUEUE_URL` in the functions.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, SendMessageBatchRequestEntry};
use futures::stream::{self, StreamExt};

use super::{
    Delivery, Queue, QueueError, SendSummary, SQS_MAX_BATCH, SQS_MAX_PAYLOAD, SQS_MAX_VISIBILITY,
    SQS_MAX_WAIT,
};
use crate::aws::load_aws_config;
use crate::env::Env;

/// Attempts at sending the entries of one batch that SQS reported as failed.
const SEND_ATTEMPTS: u32 = 5;
/// SendMessageBatch calls in flight at once.
const SEND_CONCURRENCY: usize = 8;
const SEND_BACKOFF: Duration = Duration::from_millis(100);

/// Where the functions find their queue.
pub const QUEUE_URL_VARIABLE: &str = "FERRY_QUEUE_URL";

/// `FERRY_QUEUE_URL`, trimmed; an error when unset or blank.
pub fn queue_url_from_env(env: &dyn Env) -> Result<String, QueueError> {
    env.var(QUEUE_URL_VARIABLE)
        .map(|url| url.trim().to_string())
        .filter(|url| !url.is_empty())
        .ok_or(QueueError::NoQueueUrl)
}

/// A queue on Amazon SQS (or an SQS-compatible endpoint), addressed by its URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `queue_url`, configured from the environment as [`crate::aws::load_aws_config`]
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

    /// Up to `max` (at most 10) messages as SQS gives them, with their receive count and
    /// sent timestamp, waiting up to `wait` for the first; hidden for `visibility` when given,
    /// else for the queue's own visibility timeout.
    pub(super) async fn receive_messages(
        &self,
        max: usize,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<Message>, QueueError> {
        let max = max.clamp(1, SQS_MAX_BATCH) as i32;
        let wait_seconds = wait.min(SQS_MAX_WAIT).as_secs_f64().ceil() as i32;
        let visibility = visibility.map(|v| v.min(SQS_MAX_VISIBILITY).as_secs_f64().ceil() as i32);
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| service_error("ReceiveMessage", e))?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Sends one batch, retrying the entries SQS reports as failed for a reason of its own
    /// (throttling, an internal error). Returns the ids of the entries sent, and the reason
    /// the others were not.
    pub(super) async fn send_batch(
        &self,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> (Vec<String>, Option<String>) {
        let mut pending = entries;
        let mut sent = Vec::new();
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
            sent.extend(output.successful.into_iter().map(|entry| entry.id));
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

/// A message's `ApproximateReceiveCount`; 1 when SQS did not say.
pub(super) fn receive_count(message: &Message) -> u32 {
    system_attribute(message, MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or(1)
}

/// A numeric system attribute of a message, when present and a number.
pub(super) fn system_attribute<T: std::str::FromStr>(
    message: &Message,
    name: MessageSystemAttributeName,
) -> Option<T> {
    message.attributes.as_ref()?.get(&name)?.parse().ok()
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
pub(super) fn batches(bodies: &[String]) -> (Vec<Vec<usize>>, Vec<usize>) {
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

pub(super) fn service_error<E>(operation: &'static str, error: E) -> QueueError
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
    async fn send_bodies(&self, bodies: &[String]) -> Result<SendSummary, QueueError> {
        let (groups, too_large) = batches(bodies);
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
            sent += batch_sent.len();
            if let Some(why) = batch_reason {
                reason.get_or_insert(why);
            }
        }
        if sent == bodies.len() {
            return Ok(SendSummary { sent });
        }
        Err(QueueError::NotSent {
            total: bodies.len(),
            not_sent: bodies.len() - sent,
            reason: reason.unwrap_or_else(|| "no reason given".into()),
        })
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        Ok(self
            .receive_messages(max, wait, None)
            .await?
            .into_iter()
            .map(|m| Delivery {
                receive_count: receive_count(&m),
                message_id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
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

    #[test]
    fn the_queue_url_must_be_set() {
        use crate::env::MapEnv;
        assert_eq!(
            queue_url_from_env(&MapEnv::new([(QUEUE_URL_VARIABLE, " http://q/1 ")])).unwrap(),
            "http://q/1"
        );
        let unset = queue_url_from_env(&MapEnv::new([(QUEUE_URL_VARIABLE, "  ")])).unwrap_err();
        assert_eq!(unset.to_string(), "FERRY_QUEUE_URL is not set");
    }
}
