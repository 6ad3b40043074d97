//! A registry host's rate limits, as its answers state them: the pull budget (Docker Hub's
//! `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600`, elsewhere
//! `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset`) and the requests in
//! flight, lowered on each 429 and raised again slowly (additive increase, multiplicative
//! decrease).
//!
//! Once a host says no pulls are left, its budget is spent until the reset it names (else
//! its window, else its `Retry-After`, else a minute; a day at most): manifest GETs (the
//! pulls registries count) fail at once with the time they may succeed again, rather than
//! being retried into more 429s. What a 429 means for one request (wait and retry) is
//! `transport`'s; which requests are pulls is the API files'.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::error::ErrorKind;
use crate::report::RegistryUsage;
use crate::timestamp::{rfc3339, unix_secs};

/// Counts above this are taken as this: a hostile header cannot overflow a sum.
const MAX_COUNT: u64 = 1_000_000_000;
/// A budget is taken as spent for a day at most, whatever a header says.
const MAX_SPENT: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a budget is spent when the host names no reset, window or `Retry-After`.
const DEFAULT_SPENT: Duration = Duration::from_secs(60);
/// A reset value above this many seconds is a UNIX time (GitHub's `x-ratelimit-reset`),
/// below it a delay (the IETF draft's `ratelimit-reset`): no delay is thirty years long.
const RESET_IS_UNIX_TIME_ABOVE: u64 = 1_000_000_000;
/// Requests in flight per host until the first 429.
pub const DEFAULT_REQUESTS_IN_FLIGHT: usize = 64;
/// The most requests in flight per host any setting gets, which also bounds the loop that
/// retires permits on a cut.
const MAX_REQUESTS_IN_FLIGHT: usize = 1024;

/// What one response says about the pull budget; `None` where it says nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BudgetHeaders {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// The window the counts are for (Docker Hub's `;w=`).
    pub window: Option<Duration>,
    /// How long until the budget is back.
    pub reset: Option<Duration>,
}

impl BudgetHeaders {
    /// Reads the rate-limit headers, the unprefixed names first. Lenient: a value that is
    /// not a number is ignored, a huge one capped.
    pub(crate) fn parse(headers: &HeaderMap, now: SystemTime) -> BudgetHeaders {
        let value = |name: &str| -> Option<&str> {
            [name.to_string(), format!("x-{name}")]
                .iter()
                .find_map(|n| headers.get(n.as_str())?.to_str().ok())
        };
        let limit = value("ratelimit-limit").and_then(first_policy);
        let remaining = value("ratelimit-remaining").and_then(first_policy);
        let window = limit
            .and_then(|(_, w)| w)
            .or_else(|| remaining.and_then(|(_, w)| w));
        let reset = value("ratelimit-reset")
            .and_then(|v| number(v.trim()))
            .map(|reset| {
                let seconds = if reset > RESET_IS_UNIX_TIME_ABOVE {
                    reset.saturating_sub(unix_secs(now))
                } else {
                    reset
                };
                Duration::from_secs(seconds).min(MAX_SPENT)
            });
        BudgetHeaders {
            limit: limit.map(|(n, _)| n),
            remaining: remaining.map(|(n, _)| n),
            window,
            reset,
        }
    }

    fn is_empty(&self) -> bool {
        *self == BudgetHeaders::default()
    }
}

/// The count and window of a value's first policy: `76`, `76;w=21600`, or the IETF draft's
/// list `100, 100;w=60, 1000;w=3600` (the first is the one in force).
fn first_policy(value: &str) -> Option<(u64, Option<Duration>)> {
    let policy = value.split(',').next()?;
    let mut parts = policy.split(';');
    let count = number(parts.next()?.trim())?.min(MAX_COUNT);
    // Bounded: a header value is at most what the HTTP client accepted.
    let window = parts
        .filter_map(|p| p.trim().strip_prefix("w="))
        .find_map(|w| number(w.trim()))
        .map(|w| Duration::from_secs(w).min(MAX_SPENT));
    Some((count, window))
}

/// A decimal number, saturating at `u64::MAX` (callers cap it further); `None` for anything
/// but ASCII digits.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |n, digit| {
        n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
    }))
}

/// What is known of a host's pull budget.
#[derive(Debug, Default)]
struct Budget {
    limit: Option<u64>,
    window: Option<Duration>,
    /// Pulls left at the first answer that said, and at the last.
    first_remaining: Option<u64>,
    remaining: Option<u64>,
    spent_until: Option<SystemTime>,
    too_many_requests: u64,
}

/// Why a pull was not sent: the budget is spent until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spent {
    pub until: SystemTime,
    pub limit: Option<u64>,
    pub window: Option<Duration>,
    pub first_remaining: Option<u64>,
}

impl Spent {
    /// The error a pull not sent gets.
    pub(crate) fn error_kind(&self) -> ErrorKind {
        let mut facts = Vec::new();
        match (self.limit, self.window) {
            (Some(limit), Some(window)) => {
                facts.push(format!("{limit} pulls per {}s", window.as_secs()))
            }
            (Some(limit), None) => facts.push(format!("{limit} pulls")),
            _ => {}
        }
        if let Some(n) = self.first_remaining {
            facts.push(format!("{n} were left when the run began"));
        }
        ErrorKind::BudgetSpent {
            until: rfc3339(unix_secs(self.until)),
            budget: facts.join("; "),
        }
    }
}

/// One host's rate limits: its pull budget and its requests in flight.
#[derive(Debug)]
pub(crate) struct RateLimits {
    /// The registry as named in references, for logs and the report.
    registry: String,
    budget: Mutex<Budget>,
    in_flight: InFlight,
}

impl RateLimits {
    pub(crate) fn new(registry: &str, max_in_flight: usize) -> Self {
        RateLimits {
            registry: registry.to_string(),
            budget: Mutex::new(Budget::default()),
            in_flight: InFlight::new(max_in_flight),
        }
    }

    /// A turn to send one request to the host.
    pub(crate) async fn permit(&self) -> InFlightPermit<'_> {
        self.in_flight.acquire().await
    }

    /// Learns from one answer: its budget headers, and whether it was a 429 (which lowers
    /// the requests in flight; any other status counts towards raising them again).
    /// `retry_after` is the answer's own, for a spent budget that names no reset.
    pub(crate) fn observe(
        &self,
        permit: &InFlightPermit<'_>,
        status: StatusCode,
        headers: &HeaderMap,
        retry_after: Option<Duration>,
    ) {
        let throttled = status == StatusCode::TOO_MANY_REQUESTS;
        self.in_flight.finished(permit, throttled, &self.registry);
        let now = SystemTime::now();
        let stated = BudgetHeaders::parse(headers, now);
        let mut budget = self.budget.lock().expect("budget poisoned");
        budget.too_many_requests += u64::from(throttled);
        if stated.is_empty() {
            return;
        }
        budget.limit = stated.limit.or(budget.limit);
        budget.window = stated.window.or(budget.window);
        let spent_now = budget.spent_until.is_some_and(|until| until > now);
        if let Some(remaining) = stated.remaining {
            budget.first_remaining.get_or_insert(remaining);
            // While spent, none are left, whatever an answer overtaken by others says.
            if !spent_now {
                budget.remaining = Some(remaining);
            }
        }
        if stated.remaining == Some(0) && !spent_now {
            let lasts = stated
                .reset
                .or(stated.window)
                .or(retry_after)
                .unwrap_or(DEFAULT_SPENT)
                .min(MAX_SPENT);
            budget.spent_until = Some(now + lasts);
            tracing::warn!(registry = %self.registry, until = %rfc3339(unix_secs(now + lasts)), "pull budget spent: no pulls until then");
        }
    }

    /// When the budget is spent, until when (and what was known of it).
    pub(crate) fn spent(&self) -> Option<Spent> {
        let budget = self.budget.lock().expect("budget poisoned");
        let until = budget.spent_until.filter(|&t| t > SystemTime::now())?;
        Some(Spent {
            until,
            limit: budget.limit,
            window: budget.window,
            first_remaining: budget.first_remaining,
        })
    }

    /// What the run saw of this host, for the report; `None` when it stated no budget and
    /// never answered 429.
    pub(crate) fn usage(&self) -> Option<RegistryUsage> {
        let lowest = self.in_flight.lowest();
        let budget = self.budget.lock().expect("budget poisoned");
        if budget.remaining.is_none() && budget.limit.is_none() && budget.too_many_requests == 0 {
            return None;
        }
        Some(RegistryUsage {
            registry: self.registry.clone(),
            pull_limit: budget.limit,
            pull_window_secs: budget.window.map(|w| w.as_secs()),
            pulls_left_at_start: budget.first_remaining,
            pulls_left: budget.remaining,
            spent_until: budget
                .spent_until
                .filter(|&t| t > SystemTime::now())
                .map(|t| rfc3339(unix_secs(t))),
            too_many_requests: budget.too_many_requests,
            lowest_in_flight: lowest,
        })
    }
}

/// Requests in flight to one host, lowered on 429 and raised back slowly: a 429 halves the
/// limit (down to what was actually in flight, at least 1), at most once per round of
/// requests (a 429 to a request sent before the last cut does not cut again); every
/// `limit` answers without one raise it by 1, up to the maximum.
#[derive(Debug)]
pub(crate) struct InFlight {
    permits: Semaphore,
    state: Mutex<Aimd>,
}

#[derive(Debug)]
struct Aimd {
    limit: usize,
    max: usize,
    in_flight: usize,
    /// Permits to retire as they come back, after a cut deeper than the free ones.
    debt: usize,
    /// Answers without a 429 since the last change.
    successes: usize,
    /// Bumped by each cut.
    epoch: u64,
    lowest: usize,
}

/// A turn to send one request; dropping it ends the turn.
pub(crate) struct InFlightPermit<'a> {
    limiter: &'a InFlight,
    permit: Option<SemaphorePermit<'a>>,
    epoch: u64,
}

impl Drop for InFlightPermit<'_> {
    fn drop(&mut self) {
        let mut state = self.limiter.state.lock().expect("limiter poisoned");
        state.in_flight -= 1;
        if let Some(permit) = self.permit.take() {
            if state.debt > 0 {
                state.debt -= 1;
                permit.forget();
            }
        }
    }
}

impl InFlight {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.clamp(1, MAX_REQUESTS_IN_FLIGHT);
        InFlight {
            permits: Semaphore::new(max),
            state: Mutex::new(Aimd {
                limit: max,
                max,
                in_flight: 0,
                debt: 0,
                successes: 0,
                epoch: 0,
                lowest: max,
            }),
        }
    }

    pub(crate) async fn acquire(&self) -> InFlightPermit<'_> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the in-flight semaphore is never closed");
        let mut state = self.state.lock().expect("limiter poisoned");
        state.in_flight += 1;
        InFlightPermit {
            limiter: self,
            permit: Some(permit),
            epoch: state.epoch,
        }
    }

    /// Records how a request ended: cut on a 429, else count towards a raise.
    pub(crate) fn finished(&self, permit: &InFlightPermit<'_>, throttled: bool, registry: &str) {
        let mut state = self.state.lock().expect("limiter poisoned");
        if throttled {
            if permit.epoch != state.epoch {
                return;
            }
            let cut_to = (state.limit.min(state.in_flight) / 2).max(1);
            let mut retire = state.limit.saturating_sub(cut_to);
            state.limit = cut_to;
            state.epoch += 1;
            state.successes = 0;
            state.lowest = state.lowest.min(cut_to);
            // At most `MAX_REQUESTS_IN_FLIGHT` passes; what is not free now is retired as it
            // comes back.
            while retire > 0 {
                match self.permits.try_acquire() {
                    Ok(free) => free.forget(),
                    Err(_) => break,
                }
                retire -= 1;
            }
            state.debt += retire;
            tracing::debug!(registry, limit = cut_to, "429: requests in flight lowered");
            return;
        }
        if state.limit >= state.max {
            return;
        }
        state.successes += 1;
        if state.successes >= state.limit {
            state.successes = 0;
            state.limit += 1;
            if state.debt > 0 {
                state.debt -= 1;
            } else {
                self.permits.add_permits(1);
            }
            tracing::debug!(registry, limit = state.limit, "requests in flight raised");
        }
    }

    /// The current limit.
    #[cfg(test)]
    fn limit(&self) -> usize {
        self.state.lock().expect("limiter poisoned").limit
    }

    /// The lowest limit so far, when it was ever lowered.
    fn lowest(&self) -> Option<usize> {
        let state = self.state.lock().expect("limiter poisoned");
        (state.lowest < state.max).then_some(state.lowest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        map
    }

    fn parse(pairs: &[(&str, &str)]) -> BudgetHeaders {
        BudgetHeaders::parse(&headers(pairs), SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn reads_docker_hub_and_x_ratelimit_headers() {
        assert_eq!(
            parse(&[
                ("ratelimit-limit", "100;w=21600"),
                ("ratelimit-remaining", "76;w=21600"),
            ]),
            BudgetHeaders {
                limit: Some(100),
                remaining: Some(76),
                window: Some(Duration::from_secs(21600)),
                reset: None,
            }
        );
        assert_eq!(
            parse(&[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", " 0 "),
                ("x-ratelimit-reset", "30"),
            ]),
            BudgetHeaders {
                limit: Some(5000),
                remaining: Some(0),
                window: None,
                reset: Some(Duration::from_secs(30)),
            }
        );
        // The IETF draft's list of policies: the first is in force.
        assert_eq!(
            parse(&[("ratelimit-limit", "10, 10;w=1, 50;w=60")]).limit,
            Some(10)
        );
        // A reset as a UNIX time is a delay from now.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let stated = BudgetHeaders::parse(&headers(&[("x-ratelimit-reset", "1700000090")]), now);
        assert_eq!(stated.reset, Some(Duration::from_secs(90)));
        assert!(parse(&[("content-type", "x")]).is_empty());
    }

    #[test]
    fn hostile_values_are_ignored_or_capped() {
        for bad in ["-1", "", "1e9", "0x10", "١٢", "NaN", ";w=5", "+3"] {
            let stated = parse(&[("ratelimit-remaining", bad), ("ratelimit-limit", bad)]);
            assert_eq!(stated.remaining, None, "{bad:?}");
            assert_eq!(stated.limit, None, "{bad:?}");
        }
        // A window that is not a number is no window; the count still stands.
        let stated = parse(&[("ratelimit-remaining", "7;w=soon")]);
        assert_eq!((stated.remaining, stated.window), (Some(7), None));
        let huge = "9".repeat(4000);
        let stated = parse(&[
            ("ratelimit-limit", &format!("{huge};w={huge}")),
            ("ratelimit-remaining", &huge),
            ("ratelimit-reset", &huge),
        ]);
        assert_eq!(stated.limit, Some(MAX_COUNT));
        assert_eq!(stated.remaining, Some(MAX_COUNT));
        assert_eq!(stated.window, Some(MAX_SPENT));
        assert_eq!(stated.reset, Some(MAX_SPENT));
        // A reset long past is no delay at all.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let past = BudgetHeaders::parse(&headers(&[("x-ratelimit-reset", "1000000001")]), now);
        assert_eq!(past.reset, Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_budget_of_none_left_is_spent_until_its_window_ends() {
        let limits = RateLimits::new("h", 4);
        let permit = limits.permit().await;
        limits.observe(
            &permit,
            StatusCode::OK,
            &headers(&[
                ("ratelimit-limit", "3;w=21600"),
                ("ratelimit-remaining", "2;w=21600"),
            ]),
            None,
        );
        assert_eq!(limits.spent(), None);
        limits.observe(
            &permit,
            StatusCode::OK,
            &headers(&[("ratelimit-remaining", "0;w=21600")]),
            None,
        );
        let spent = limits.spent().expect("spent");
        let lasts = spent.until.duration_since(SystemTime::now()).unwrap();
        assert!(lasts > Duration::from_secs(21000) && lasts <= Duration::from_secs(21600));
        let text = spent.error_kind().to_string();
        assert!(text.starts_with("rate limited until 20"), "{text}");
        assert!(
            text.ends_with(
                "the registry's pull budget is spent (3 pulls per 21600s; 2 were left when the run began)"
            ),
            "{text}"
        );
        // An answer sent before the last one, arriving after it, does not refill the budget.
        limits.observe(
            &permit,
            StatusCode::OK,
            &headers(&[("ratelimit-remaining", "1;w=21600")]),
            None,
        );
        assert!(limits.spent().is_some());
        let usage = limits.usage().unwrap();
        assert_eq!(
            (
                usage.pulls_left_at_start,
                usage.pulls_left,
                usage.pull_limit
            ),
            (Some(2), Some(0), Some(3))
        );
        assert!(usage.spent_until.is_some());
        assert_eq!(usage.lowest_in_flight, None);
    }

    #[tokio::test]
    async fn a_429_with_none_left_and_no_window_is_spent_for_its_retry_after() {
        let limits = RateLimits::new("h", 4);
        let permit = limits.permit().await;
        limits.observe(
            &permit,
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("x-ratelimit-remaining", "0")]),
            Some(Duration::from_secs(120)),
        );
        let spent = limits.spent().expect("spent");
        assert!(spent.until > SystemTime::now() + Duration::from_secs(100));
        let text = spent.error_kind().to_string();
        assert!(
            text.ends_with("pull budget is spent (0 were left when the run began)"),
            "{text}"
        );
        // A 429 without budget headers spends nothing, but is counted.
        let other = RateLimits::new("h", 4);
        other.observe(
            &permit,
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            None,
        );
        assert_eq!(other.spent(), None);
        assert_eq!(other.usage().unwrap().too_many_requests, 1);
        assert!(RateLimits::new("h", 4).usage().is_none());
    }

    #[tokio::test]
    async fn a_429_halves_what_was_in_flight_once_per_round_and_successes_raise_it_slowly() {
        let limiter = InFlight::new(8);
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(limiter.acquire().await);
        }
        // Six in flight; the first 429 cuts to three, the others of the same round do not.
        limiter.finished(&held[0], true, "h");
        assert_eq!(limiter.limit(), 3);
        limiter.finished(&held[1], true, "h");
        assert_eq!(limiter.limit(), 3);
        assert_eq!(limiter.lowest(), Some(3));
        // Two free permits were retired at once; three more as they come back.
        drop(held);
        assert_eq!(limiter.permits.available_permits(), 3);
        // A 429 to a request sent after the cut cuts again: 1 in flight, so to 1.
        let next = limiter.acquire().await;
        limiter.finished(&next, true, "h");
        drop(next);
        assert_eq!(limiter.limit(), 1);
        assert_eq!(limiter.permits.available_permits(), 1);
        // `limit` successes raise it by one: 1, then 2, then 3 more to reach 4.
        for expected in [2, 2, 3, 3, 3, 4] {
            let permit = limiter.acquire().await;
            limiter.finished(&permit, false, "h");
            drop(permit);
            assert_eq!(limiter.limit(), expected);
        }
        assert_eq!(limiter.permits.available_permits(), 4);
        // Never above the maximum.
        for _ in 0..100 {
            let permit = limiter.acquire().await;
            limiter.finished(&permit, false, "h");
        }
        assert_eq!(limiter.limit(), 8);
        assert_eq!(limiter.permits.available_permits(), 8);
        assert_eq!(limiter.lowest(), Some(1));
        // Any setting is held to a bounded maximum.
        assert_eq!(InFlight::new(usize::MAX).limit(), MAX_REQUESTS_IN_FLIGHT);
        assert_eq!(InFlight::new(0).limit(), 1);
    }

    #[tokio::test]
    async fn the_limit_holds_while_permits_are_out() {
        let limiter = InFlight::new(4);
        let held: Vec<_> = futures::future::join_all((0..4).map(|_| limiter.acquire())).await;
        limiter.finished(&held[3], true, "h");
        assert_eq!(limiter.limit(), 2);
        drop(held);
        let first = limiter.acquire().await;
        let second = limiter.acquire().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), limiter.acquire())
                .await
                .is_err(),
            "a third request waits"
        );
        drop((first, second));
        assert_eq!(limiter.permits.available_permits(), 2);
    }
}
