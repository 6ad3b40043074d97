//! The HTTP layer under the registry API: retries with capped exponential backoff and
//! jitter for transient faults (connect errors, resets, timeouts, 5xx, 408, 429 honouring
//! `Retry-After`). Only this file knows about retries; the API files call `execute`. Each
//! attempt to a registry host waits for a turn among its requests in flight and tells the
//! host's `RateLimits` how it was answered; a 429 from a host whose pull budget is spent is
//! not retried.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use reqwest::{RequestBuilder, Response, StatusCode};

use super::error::{ErrorKind, RegistryError};
use super::ratelimit::RateLimits;

/// How often and how patiently transient faults are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound for one delay, also for a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The default policy, with the base delay overridable through `FERRY_RETRY_BASE_MS`
    /// (tests shorten it; operators facing a strict rate limit lengthen it).
    pub fn from_env(env: &dyn crate::env::Env) -> Self {
        let mut policy = RetryPolicy::default();
        if let Some(ms) = env
            .var("FERRY_RETRY_BASE_MS")
            .and_then(|v| v.parse::<u64>().ok())
        {
            policy.base_delay = Duration::from_millis(ms);
        }
        policy
    }

    /// The delay before retry number `retry` (from 0).
    fn backoff(&self, retry: u32) -> Duration {
        crate::backoff::jittered(self.base_delay, retry, self.max_delay)
    }
}

/// Why a request failed after its retries.
#[derive(Debug)]
pub(crate) enum TransportFailure {
    /// The connection failed (or timed out) on every attempt.
    Io(reqwest::Error),
    /// A transient status persisted; the last response is returned for its body.
    Status(Response),
}

/// Sends the request built by `build` (called once per attempt), retrying transient faults.
/// Returns the first non-transient response, whatever its status. With `limits` (the
/// registry host's own), each attempt takes a turn among the host's requests in flight.
pub(crate) async fn execute(
    policy: &RetryPolicy,
    limits: Option<&RateLimits>,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, TransportFailure> {
    let mut retry = 0;
    loop {
        let last = retry + 1 >= policy.attempts.max(1);
        let sent = match limits {
            Some(limits) => send_limited(limits, build()).await,
            None => build().send().await,
        };
        match sent {
            Ok(response) if is_transient_status(response.status()) => {
                // A spent pull budget lasts hours, not a retry's backoff.
                let spent = response.status() == StatusCode::TOO_MANY_REQUESTS
                    && limits.is_some_and(|l| l.spent().is_some());
                if last || spent {
                    return Err(TransportFailure::Status(response));
                }
                let delay = retry_after(&response)
                    .map(|d| d.min(policy.max_delay))
                    .unwrap_or_else(|| policy.backoff(retry));
                tracing::debug!(status = %response.status(), url = %redact_url(response.url()), ?delay, "transient status, retrying");
                tokio::time::sleep(delay).await;
            }
            Ok(response) => return Ok(response),
            Err(error) if is_transient_error(&error) && !last => {
                let delay = policy.backoff(retry);
                tracing::debug!(error = %error, ?delay, "transient error, retrying");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(TransportFailure::Io(error)),
        }
        retry += 1;
    }
}

/// Sends one request to a registry host in a turn among its requests in flight (held until
/// the answer's headers arrive), and tells the host's limits how it was answered.
pub(crate) async fn send_limited(
    limits: &RateLimits,
    request: RequestBuilder,
) -> reqwest::Result<Response> {
    let turn = limits.permit().await;
    let sent = request.send().await;
    if let Ok(response) = &sent {
        limits.observe(
            &turn,
            response.status(),
            response.headers(),
            retry_after(response),
        );
    }
    sent
}

fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error()
        && status != StatusCode::NOT_IMPLEMENTED
        && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

fn is_transient_error(error: &reqwest::Error) -> bool {
    // Body/decode errors and builder errors are not going to get better by asking again.
    error.is_connect() || error.is_timeout() || error.is_request()
}

/// A response's `Retry-After`.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// A `Retry-After` value, seconds or an HTTP date, as a wait from `now` (a date already
/// past is no wait). Not capped here: the caller caps it.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A response body read to its end, refused when it is larger than `limit` bytes: a hostile
/// registry must not make ferry hold an arbitrarily large document. The stated
/// `Content-Length` is checked first, then what actually arrives.
pub(crate) async fn read_capped(
    response: Response,
    limit: usize,
    what: &str,
    context: &str,
) -> Result<Bytes, RegistryError> {
    let too_large = || {
        RegistryError::new(
            context,
            ErrorKind::Protocol(format!("{what} larger than {limit} bytes")),
        )
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::new(context, ErrorKind::Transport(e.without_url().to_string()))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// At most the first `limit` bytes of a body, for messages: an error body is read only as
/// far as it is worth quoting, and a failure to read it just shortens it.
pub(crate) async fn read_prefix(response: Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == limit {
            break;
        }
    }
    body.freeze()
}

/// A URL without its query string, which can carry upload state or tokens.
pub(crate) fn redact_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let first = policy.backoff(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let late = policy.backoff(9);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
        }
        assert!(policy.backoff(40) <= Duration::from_secs(1));
    }

    #[test]
    fn transient_statuses() {
        assert!(is_transient_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_transient_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient_status(StatusCode::NOT_IMPLEMENTED));
        assert!(!is_transient_status(StatusCode::NOT_FOUND));
        assert!(!is_transient_status(StatusCode::UNAUTHORIZED));
    }
}
