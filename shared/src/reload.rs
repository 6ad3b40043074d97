//! A warm function's configuration kept current with its files in S3. The copier and webhook
//! functions build their state (registry clients, rules, policy) once per cold start; with
//! `FERRY_IMAGES_FILE` or `FERRY_AUTH_FILE` in S3 an upload must count without a redeploy,
//! yet a container can stay warm for hours. So before a batch, once at least the reload
//! interval has passed (`FERRY_RELOAD_SECONDS`, default 60), the documents are read again,
//! and the state is rebuilt only when they changed: an unchanged file keeps the registry
//! clients and their cached tokens. A read or a new document that fails keeps the state
//! that works (logged, with the URI), and is tried again after the next interval: one bad
//! upload must not stop copies already queued. What is read, and how it is validated, is
//! `input`'s; what is built from it, the caller's.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::env::Env;
use crate::input::{EnvDocuments, InputError, Inputs};
use crate::s3::S3;

/// The variable that sets the reload interval, in whole seconds.
pub const RELOAD_VARIABLE: &str = "FERRY_RELOAD_SECONDS";
/// At most one read of the files per interval: a busy copier takes a batch every few
/// seconds, and a GetObject per batch would cost more than the change is worth.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
/// A day: beyond it, a reload interval is a typo, not a wish.
const MAX_RELOAD_SECONDS: u64 = 86_400;

/// A reload interval that is not a number of seconds from 0 to a day.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{RELOAD_VARIABLE}={value:?}: expected whole seconds from 0 to {MAX_RELOAD_SECONDS}")]
pub struct BadReloadInterval {
    pub value: String,
}

/// `FERRY_RELOAD_SECONDS`, or the default when it is unset or blank. 0 reads the files
/// before every batch.
pub fn reload_interval_from_env(env: &dyn Env) -> Result<Duration, BadReloadInterval> {
    match env.var(RELOAD_VARIABLE) {
        None => Ok(DEFAULT_RELOAD_INTERVAL),
        Some(text) if text.trim().is_empty() => Ok(DEFAULT_RELOAD_INTERVAL),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(seconds) if seconds <= MAX_RELOAD_SECONDS => Ok(Duration::from_secs(seconds)),
            _ => Err(BadReloadInterval { value: text }),
        },
    }
}

/// Builds a function's state from validated inputs.
pub type Build<T, E> = Box<dyn Fn(Inputs, &dyn Env) -> Result<T, E> + Send + Sync>;

/// A function's state built from its environment's documents, rebuilt when files in S3
/// change (see the module's documentation).
pub struct Reloading<T, E> {
    env: Arc<dyn Env>,
    s3: Arc<S3>,
    rules_required: bool,
    interval: Duration,
    build: Build<T, E>,
    /// `None` when no document is in S3: nothing can change, nothing is read again.
    state: Option<Mutex<State<T>>>,
    first: Arc<T>,
}

struct State<T> {
    current: Arc<T>,
    fingerprint: [u8; 32],
    read_at: Instant,
}

impl<T, E> fmt::Debug for Reloading<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("interval", &self.interval)
            .field("from_s3", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, E> Reloading<T, E>
where
    E: From<InputError> + fmt::Display,
{
    /// Reads the documents and builds the first state; any error is the cold start's, as
    /// without reloading. The interval comes from `FERRY_RELOAD_SECONDS`.
    pub async fn load(
        env: Arc<dyn Env>,
        s3: Arc<S3>,
        rules_required: bool,
        build: Build<T, E>,
    ) -> Result<Reloading<T, E>, E>
    where
        E: From<BadReloadInterval>,
    {
        let interval = reload_interval_from_env(env.as_ref())?;
        let documents = EnvDocuments::read(env.as_ref(), &s3).await?;
        let fingerprint = documents.fingerprint();
        let from_s3 = documents.from_s3();
        let first = Arc::new(build(
            documents.into_inputs(env.as_ref(), rules_required)?,
            env.as_ref(),
        )?);
        let state = from_s3.then(|| {
            Mutex::new(State {
                current: Arc::clone(&first),
                fingerprint,
                read_at: Instant::now(),
            })
        });
        Ok(Reloading {
            env,
            s3,
            rules_required,
            interval,
            build,
            state,
            first,
        })
    }

    /// The state for the next batch: the current one, or, once the interval has passed
    /// since the last read, one built from documents that changed since.
    pub async fn current(&self) -> Arc<T> {
        let Some(state) = &self.state else {
            return Arc::clone(&self.first);
        };
        let mut state = state.lock().await;
        if state.read_at.elapsed() < self.interval {
            return Arc::clone(&state.current);
        }
        // Whatever happens, the next read waits a whole interval.
        state.read_at = Instant::now();
        match self.reread(state.fingerprint).await {
            Ok(Some((fingerprint, rebuilt))) => {
                tracing::info!(
                    "configuration files changed in S3; new rules and credentials in use"
                );
                state.fingerprint = fingerprint;
                state.current = Arc::new(rebuilt);
            }
            Ok(None) => tracing::debug!("configuration files in S3 unchanged"),
            Err(error) => tracing::error!(
                %error,
                "configuration files in S3 could not be read again; the previous ones stay in use"
            ),
        }
        Arc::clone(&state.current)
    }

    /// The documents read again; a state built from them if their fingerprint changed.
    async fn reread(&self, previous: [u8; 32]) -> Result<Option<([u8; 32], T)>, E> {
        let documents = EnvDocuments::read(self.env.as_ref(), &self.s3).await?;
        let fingerprint = documents.fingerprint();
        if fingerprint == previous {
            return Ok(None);
        }
        let inputs = documents.into_inputs(self.env.as_ref(), self.rules_required)?;
        Ok(Some((
            fingerprint,
            (self.build)(inputs, self.env.as_ref())?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    #[test]
    fn intervals_are_checked() {
        let interval =
            |value: &str| reload_interval_from_env(&MapEnv::new([(RELOAD_VARIABLE, value)]));
        assert_eq!(
            reload_interval_from_env(&MapEnv::default()),
            Ok(DEFAULT_RELOAD_INTERVAL)
        );
        assert_eq!(interval(" "), Ok(DEFAULT_RELOAD_INTERVAL));
        assert_eq!(interval("0"), Ok(Duration::ZERO));
        assert_eq!(interval("300"), Ok(Duration::from_secs(300)));
        for bad in ["-1", "1.5", "ten", "86401", "99999999999999999999999"] {
            let error = interval(bad).unwrap_err();
            assert!(error.to_string().contains(bad), "{error}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Input(#[from] InputError),
        #[error(transparent)]
        Interval(#[from] BadReloadInterval),
    }

    #[tokio::test]
    async fn local_documents_are_read_once() {
        let env: Arc<dyn Env> = Arc::new(MapEnv::new([
            ("FERRY_IMAGES", "quay.io/a/b: mirror.io/b"),
            (RELOAD_VARIABLE, "0"),
        ]));
        let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&builds);
        let reloading: Reloading<usize, TestError> = Reloading::load(
            env,
            Arc::new(S3::new()),
            true,
            Box::new(move |inputs, _| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(inputs.rules.len())
            }),
        )
        .await
        .unwrap();
        for _ in 0..3 {
            assert_eq!(*reloading.current().await, 1);
        }
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
