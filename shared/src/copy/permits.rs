//! Transfer permits handed out largest blob first.
//!
//! A run's blobs range from a few bytes to hundreds of MiB. Taken in arrival order, the
//! biggest layer of a late image can start when everything else is done and leave the run
//! waiting on one stream at the end; started first, it overlaps the many small ones. Waiters
//! of equal priority are served in arrival order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// A fixed number of permits, granted to the waiter with the highest priority.
#[derive(Clone)]
pub(crate) struct PriorityPermits {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
}

struct State {
    free: usize,
    waiting: BinaryHeap<Waiter>,
    /// Arrival counter: among equal priorities, the earlier waiter wins.
    arrivals: u64,
}

struct Waiter {
    priority: u64,
    arrival: u64,
    grant: oneshot::Sender<Permit>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.arrival.cmp(&self.arrival))
    }
}

/// One permit; dropping it passes it on to the most important waiter.
pub(crate) struct Permit {
    inner: Option<Arc<Inner>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            release(&inner);
        }
    }
}

impl PriorityPermits {
    pub(crate) fn new(permits: usize) -> Self {
        PriorityPermits {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    free: permits,
                    waiting: BinaryHeap::new(),
                    arrivals: 0,
                }),
            }),
        }
    }

    /// Waits for a permit; among waiters, the highest `priority` is served first.
    /// Cancel-safe: a permit granted to a waiter that has gone is passed on.
    pub(crate) async fn acquire(&self, priority: u64) -> Permit {
        let granted = {
            let mut state = self.inner.state.lock().expect("permit state poisoned");
            if state.free > 0 {
                state.free -= 1;
                return self.permit();
            }
            let (grant, granted) = oneshot::channel();
            let arrival = state.arrivals;
            state.arrivals += 1;
            state.waiting.push(Waiter {
                priority,
                arrival,
                grant,
            });
            granted
        };
        // The sender lives in the heap until a permit is sent through it, so this resolves.
        granted
            .await
            .expect("a waiter's sender is dropped only after granting")
    }

    fn permit(&self) -> Permit {
        Permit {
            inner: Some(self.inner.clone()),
        }
    }
}

/// Gives a returned permit to the most important waiter still listening, or back to the
/// pool. A permit sent to a receiver dropped later comes back here through its own `Drop`.
fn release(inner: &Arc<Inner>) {
    // Bounded: each pass removes one waiter from a finite heap.
    loop {
        let waiter = {
            let mut state = inner.state.lock().expect("permit state poisoned");
            match state.waiting.pop() {
                Some(waiter) => waiter,
                None => {
                    state.free += 1;
                    return;
                }
            }
        };
        let permit = Permit {
            inner: Some(inner.clone()),
        };
        match waiter.grant.send(permit) {
            Ok(()) => return,
            // That waiter was cancelled: defuse the permit and offer it to the next.
            Err(mut permit) => permit.inner = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Lets spawned tasks run until they block.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_highest_priority_waiter_goes_first_and_ties_keep_arrival_order() {
        let permits = PriorityPermits::new(1);
        let held = permits.acquire(0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [
            ("small", 1),
            ("big", 100),
            ("medium-a", 10),
            ("medium-b", 10),
        ] {
            let (permits, order) = (permits.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = permits.acquire(priority).await;
                order.lock().unwrap().push(name);
            }));
            settle().await;
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["big", "medium-a", "medium-b", "small"]
        );
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_lose_the_permit() {
        let permits = PriorityPermits::new(1);
        let held = permits.acquire(0).await;
        let cancelled = tokio::spawn({
            let permits = permits.clone();
            async move {
                let _permit = permits.acquire(50).await;
                std::future::pending::<()>().await;
            }
        });
        settle().await;
        let waiting = tokio::spawn({
            let permits = permits.clone();
            async move { drop(permits.acquire(1).await) }
        });
        settle().await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the permit reached the remaining waiter")
            .unwrap();
        // The permit is back in the pool.
        let _a = tokio::time::timeout(Duration::from_secs(5), permits.acquire(0))
            .await
            .expect("the permit is free again");
    }

    #[tokio::test]
    async fn a_permit_granted_to_a_waiter_dropped_before_it_ran_comes_back() {
        let permits = PriorityPermits::new(1);
        let held = permits.acquire(0).await;
        let waiter = permits.acquire(5);
        let mut waiter = Box::pin(waiter);
        // Poll once so it queues, then grant it and drop it without polling again.
        assert!(futures::poll!(&mut waiter).is_pending());
        drop(held);
        drop(waiter);
        let _again = tokio::time::timeout(Duration::from_secs(5), permits.acquire(0))
            .await
            .expect("the granted-then-dropped permit went back to the pool");
    }
}
