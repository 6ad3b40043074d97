//! When and where blobs move, across every image of a run: the transfer permits (`--proc`
//! of them, largest blob first, and as many again for blobs under 1 MiB so configs and
//! small layers do not queue behind the big ones), the once-cells that turn the same blob
//! wanted twice for one target repository into one transfer (and into one per target
//! registry, through `placement`), which target repositories are known not to exist, and
//! how many images and manifest lookups run at once. What one transfer does is `blob`'s;
//! the order of work within an image is the copier's (`mod`).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{AcquireError, Notify, OnceCell, Semaphore, SemaphorePermit};

use super::permits::{Permit, PriorityPermits};
use crate::reference::{Digest, Repository};
use crate::registry::Registries;
use crate::target_tags::TargetTags;

/// Target manifests HEADed at once for one image.
pub(super) const HEADS_IN_FLIGHT: usize = 8;
/// Images in flight in `copy_all`. Most of them just wait for transfer permits, which is
/// what lets the permits start the largest blobs of the whole run first; `lookup` bounds
/// how many talk to registries about manifests at once.
pub(super) const IMAGES_IN_FLIGHT: usize = 256;
/// Blobs below this size (configs, small layers) have transfer permits of their own.
const SMALL_BLOB: u64 = 1 << 20;
/// How long a repository found absent is trusted to hold only what this copier put there.
/// Other copiers (Lambdas, workers) may push to it meanwhile; past this, blobs get HEADs.
const ABSENT_TRUSTED_FOR: Duration = Duration::from_secs(120);

type InFlightCell<O, E> = Arc<OnceCell<Result<O, E>>>;
type AbsentCell = Arc<OnceCell<Option<Instant>>>;

/// The shared state that paces a run's blob transfers; `Result<O, E>` is what a transfer
/// into one repository comes to.
pub(super) struct Scheduler<O, E> {
    /// Blob transfers in flight, largest blob first.
    transfers: PriorityPermits,
    /// The same number again for blobs under `SMALL_BLOB`: they are bound by round trips,
    /// not bandwidth, and queued behind the large ones they would end a run as a long tail.
    small_transfers: PriorityPermits,
    in_flight: Mutex<HashMap<(Repository, Digest), InFlightCell<O, E>>>,
    /// Per target registry and digest, the first repository the blob was placed in, so every
    /// other repository of that registry mounts it instead of transferring it again.
    placements: Mutex<HashMap<(String, Digest), Arc<Placement>>>,
    /// Images looking up manifests at once; the rest wait, or move blobs.
    lookups: Semaphore,
    /// Target repositories found not to exist, and when (see `known_absent`).
    absent: Mutex<HashMap<Repository, AbsentCell>>,
    /// Target repositories' tags, listed once each for immutable tags.
    pub(super) target_tags: TargetTags,
}

impl<O, E> Scheduler<O, E> {
    /// For `proc` transfers at once (at least one).
    pub(super) fn new(proc: usize) -> Self {
        let proc = proc.max(1);
        Scheduler {
            transfers: PriorityPermits::new(proc),
            small_transfers: PriorityPermits::new(proc),
            in_flight: Mutex::new(HashMap::new()),
            placements: Mutex::new(HashMap::new()),
            lookups: Semaphore::new(proc * 4),
            absent: Mutex::new(HashMap::new()),
            target_tags: TargetTags::default(),
        }
    }

    /// A turn to look up an image's manifests.
    pub(super) async fn lookup(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.lookups.acquire().await
    }

    /// A transfer permit for a blob of `size` (unknown: as large as can be), from the lane
    /// of its size, larger blobs first.
    pub(super) async fn transfer_permit(&self, size: Option<u64>) -> Permit {
        let size = size.unwrap_or(u64::MAX);
        let lane = if size < SMALL_BLOB {
            &self.small_transfers
        } else {
            &self.transfers
        };
        lane.acquire(size).await
    }

    /// Where a digest is first placed on `registry`: claimed by the first transfer there.
    pub(super) fn placement(&self, registry: &str, digest: &Digest) -> Arc<Placement> {
        let mut placements = self.placements.lock().expect("placement map poisoned");
        placements
            .entry((registry.to_string(), digest.clone()))
            .or_default()
            .clone()
    }

    /// Claims, at once, the first placement of `digest` on each of `registries` that is
    /// neither placed nor being placed (`None` for the others). At once, so two images
    /// wanting the same blob in the same registries do not split them between two reads.
    pub(super) fn claim_placements(
        &self,
        registries: &[&str],
        digest: &Digest,
    ) -> Vec<Option<PlacementGuard>> {
        let mut placements = self.placements.lock().expect("placement map poisoned");
        registries
            .iter()
            .map(|registry| {
                let placement = placements
                    .entry((registry.to_string(), digest.clone()))
                    .or_default();
                match placement.try_claim() {
                    Claim::Mine(guard) => Some(guard),
                    Claim::Placed(_) | Claim::Busy => None,
                }
            })
            .collect()
    }

    /// Whether `target` was found not to exist, recently enough that only what this copier
    /// put there since can be in it: blobs and manifests need no HEAD to know they are
    /// missing. Asked once per repository; an error just means "not known".
    pub(super) async fn known_absent(&self, registries: &Registries, target: &Repository) -> bool {
        let cell = cell_for(&self.absent, target.clone());
        let found = cell
            .get_or_init(|| async {
                let client = registries.client(target.registry()).ok()?;
                match client.repository_absent(target).await {
                    Ok(true) => Some(Instant::now()),
                    Ok(false) => None,
                    Err(error) => {
                        tracing::debug!(%error, "cannot tell whether the repository exists");
                        None
                    }
                }
            })
            .await;
        found.is_some_and(|at| at.elapsed() < ABSENT_TRUSTED_FOR)
    }
}

impl<O: Clone, E: Clone> Scheduler<O, E> {
    /// Runs `work` for a digest into `target` unless another caller is running it or has
    /// run it successfully; all of them share its outcome. Also says whether this caller
    /// ran it. A failure is not remembered: the next round tries again.
    pub(super) async fn once_per_repository<F, Fut>(
        &self,
        target: &Repository,
        digest: &Digest,
        work: F,
    ) -> (Result<O, E>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<O, E>>,
    {
        let key = (target.clone(), digest.clone());
        let cell = cell_for(&self.in_flight, key.clone());
        let mut first = false;
        let outcome = cell
            .get_or_init(|| {
                first = true;
                work()
            })
            .await
            .clone();
        if outcome.is_err() {
            self.in_flight
                .lock()
                .expect("in-flight map poisoned")
                .remove(&key);
        }
        (outcome, first)
    }
}

/// The first placement of one digest on one target registry: the repository it was placed
/// in once known, and whether a transfer there holds the claim meanwhile. Unlike a once-cell
/// it can be claimed without waiting (`try_claim`), which a read shared by several
/// registries needs: it must never wait for a claim while holding others.
#[derive(Default)]
pub(super) struct Placement {
    state: Mutex<PlacementState>,
    changed: Notify,
}

#[derive(Default)]
struct PlacementState {
    placed: Option<Repository>,
    claimed: bool,
}

/// What a claim found.
pub(super) enum Claim {
    /// The blob is in this repository of the registry.
    Placed(Repository),
    /// The caller places it, and says where through the guard.
    Mine(PlacementGuard),
    /// Another transfer holds the claim.
    Busy,
}

impl Placement {
    pub(super) fn try_claim(self: &Arc<Self>) -> Claim {
        let mut state = self.state.lock().expect("placement poisoned");
        if let Some(placed) = &state.placed {
            return Claim::Placed(placed.clone());
        }
        if state.claimed {
            return Claim::Busy;
        }
        state.claimed = true;
        Claim::Mine(PlacementGuard {
            placement: self.clone(),
        })
    }

    /// Where the blob was placed, or the claim to place it: waits while another transfer
    /// holds the claim (and takes it over if that one fails, as the next round would).
    pub(super) async fn claim(self: &Arc<Self>) -> Claim {
        // Bounded by the transfers holding the claim: each ends placed or released.
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.try_claim() {
                Claim::Busy => changed.await,
                other => return other,
            }
        }
    }
}

/// A claim on a placement; dropped without `placed`, it is released for another to take.
pub(super) struct PlacementGuard {
    placement: Arc<Placement>,
}

impl PlacementGuard {
    /// The blob is now in `repository`.
    pub(super) fn placed(self, repository: &Repository) {
        self.placement
            .state
            .lock()
            .expect("placement poisoned")
            .placed = Some(repository.clone());
    }
}

impl Drop for PlacementGuard {
    fn drop(&mut self) {
        self.placement
            .state
            .lock()
            .expect("placement poisoned")
            .claimed = false;
        self.placement.changed.notify_waiters();
    }
}

/// The once-cell for `key`, created empty on first use: every caller asking for the same
/// key shares one piece of work.
fn cell_for<K: Eq + Hash, V>(
    map: &Mutex<HashMap<K, Arc<OnceCell<V>>>>,
    key: K,
) -> Arc<OnceCell<V>> {
    map.lock()
        .expect("cell map poisoned")
        .entry(key)
        .or_default()
        .clone()
}

/// Backoff between rounds of image retries: 1 s, 2 s, 4 s … capped at 30 s, with jitter.
/// A blob's own retries wait a quarter of it.
pub(super) fn round_backoff(round: u32) -> Duration {
    crate::backoff::jittered(
        Duration::from_secs(1),
        round.saturating_sub(1),
        Duration::from_secs(30),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_run_per_repository_and_digest_and_failures_are_forgotten() {
        let scheduler = Scheduler::<u32, String>::new(1);
        let target = Repository::parse("example.com/a/b").unwrap();
        let digest = Digest::sha256(b"x");
        let (failed, first) = scheduler
            .once_per_repository(&target, &digest, || async { Err("boom".to_string()) })
            .await;
        assert_eq!((failed, first), (Err("boom".to_string()), true));
        let (ran, first) = scheduler
            .once_per_repository(&target, &digest, || async { Ok(1) })
            .await;
        assert_eq!(
            (ran, first),
            (Ok(1), true),
            "the failure was not remembered"
        );
        let (shared, first) = scheduler
            .once_per_repository(&target, &digest, || async { Ok(2) })
            .await;
        assert_eq!((shared, first), (Ok(1), false), "the success is shared");
    }
}
