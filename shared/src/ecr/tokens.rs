//! ECR's registry passwords, cached for the process (a warm Lambda container too): one slot
//! per (registry id, region), filled single-flight, renewed ahead of `expiresAt`, and once
//! more after the registry refused a password. Calling ECR is `ecr`'s; this file only decides
//! when a call is due.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::credentials::Credentials;

/// Renew this long before ECR says a password expires (tokens live 12 hours).
const RENEW_AHEAD: Duration = Duration::from_secs(15 * 60);
/// How long a password is used when its `expiresAt` is already past or too close (a skewed
/// clock, or moto's fixed date): long enough that a run does not call ECR per request, and
/// a refusal renews it anyway.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// A refusal renews a password only if it is older than this, so a registry that refuses
/// everything costs one token call per this interval, not one per request.
const MIN_AGE_TO_RENEW_ON_REFUSAL: Duration = Duration::from_secs(30);

/// Which password: the registry id (`None`: the caller's own registry) and the API's region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub registry_id: Option<String>,
    pub region: String,
    /// ECR Public rather than a private registry.
    pub public: bool,
}

/// A password and when ECR says it expires.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub credentials: Credentials,
    pub expires_at: Option<SystemTime>,
}

#[derive(Debug)]
struct Cached {
    credentials: Credentials,
    fetched: Instant,
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// The cache. Cheap to share.
#[derive(Debug, Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<TokenKey, Slot>>,
}

impl TokenCache {
    /// The cached password for `key`, or `fetch`'s if none is cached or it is due for
    /// renewal. Callers for one key wait for one fetch.
    pub async fn get_or_fetch<F, Fut, E>(&self, key: &TokenKey, fetch: F) -> Result<Credentials, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuedToken, E>>,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
            return Ok(c.credentials.clone());
        }
        let issued = fetch().await?;
        let now = Instant::now();
        let entry = Cached {
            credentials: issued.credentials.clone(),
            fetched: now,
            renew_at: now + lifetime(issued.expires_at, SystemTime::now()),
        };
        *cached = Some(entry);
        Ok(issued.credentials)
    }

    /// The registry refused the password cached for `key`: the next lookup fetches a new
    /// one, unless the cached one is younger than [`MIN_AGE_TO_RENEW_ON_REFUSAL`].
    pub fn refused(&self, key: &TokenKey) {
        let slot = self.slot(key);
        // A fetch in progress holds the lock; its fresh password needs no renewal.
        let Ok(mut cached) = slot.try_lock() else {
            return;
        };
        if cached
            .as_ref()
            .is_some_and(|c| c.fetched.elapsed() >= MIN_AGE_TO_RENEW_ON_REFUSAL)
        {
            *cached = None;
        }
    }

    fn slot(&self, key: &TokenKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(key.clone()).or_default())
    }
}

/// How long to use a password that expires at `expires_at`, seen at `now`.
fn lifetime(expires_at: Option<SystemTime>, now: SystemTime) -> Duration {
    expires_at
        .and_then(|at| at.duration_since(now).ok())
        .and_then(|left| left.checked_sub(RENEW_AHEAD))
        .filter(|usable| *usable >= Duration::from_secs(60))
        .unwrap_or(FALLBACK_LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key() -> TokenKey {
        TokenKey {
            registry_id: Some("123456789012".into()),
            region: "us-east-1".into(),
            public: false,
        }
    }

    fn token(n: usize, expires_at: Option<SystemTime>) -> IssuedToken {
        IssuedToken {
            credentials: Credentials::Basic {
                username: "AWS".into(),
                password: Secret::new(format!("token-{n}")),
            },
            expires_at,
        }
    }

    #[test]
    fn lifetimes() {
        let now = SystemTime::now();
        let twelve_hours = Duration::from_secs(12 * 3600);
        assert_eq!(
            lifetime(Some(now + twelve_hours), now),
            twelve_hours - RENEW_AHEAD
        );
        // Past, absent or nearly expired: the fallback, never zero.
        let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_430_000_000);
        assert_eq!(lifetime(Some(past), now), FALLBACK_LIFETIME);
        assert_eq!(lifetime(None, now), FALLBACK_LIFETIME);
        assert_eq!(lifetime(Some(now + RENEW_AHEAD), now), FALLBACK_LIFETIME);
    }

    #[tokio::test]
    async fn one_fetch_for_many_callers_even_with_an_expiry_in_the_past() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let past = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_430_000_000));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&key(), || async {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(token(n, past))
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refusal_renews_an_old_password_but_not_a_fresh_one() {
        let cache = TokenCache::default();
        let fetch = |n| move || async move { Ok::<_, ()>(token(n, None)) };
        cache.get_or_fetch(&key(), fetch(1)).await.unwrap();
        cache.refused(&key());
        // Fresh: kept.
        let kept = cache.get_or_fetch(&key(), fetch(2)).await.unwrap();
        assert_eq!(kept, token(1, None).credentials);
        // Old: renewed.
        {
            let slot = cache.slot(&key());
            let mut cached = slot.lock().await;
            let c = cached.as_mut().unwrap();
            c.fetched = Instant::now() - MIN_AGE_TO_RENEW_ON_REFUSAL;
        }
        cache.refused(&key());
        let renewed = cache.get_or_fetch(&key(), fetch(3)).await.unwrap();
        assert_eq!(renewed, token(3, None).credentials);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = TokenCache::default();
        let failed = cache
            .get_or_fetch(&key(), || async { Err::<IssuedToken, _>("down") })
            .await;
        assert_eq!(failed.unwrap_err(), "down");
        let ok = cache
            .get_or_fetch(&key(), || async { Ok::<_, &str>(token(1, None)) })
            .await;
        assert!(ok.is_ok());
    }
}
