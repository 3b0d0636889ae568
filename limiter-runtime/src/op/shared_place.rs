//! The second place of a call of an op with `concurrency = "shared"`: a
//! place of the op's bulkhead shared by every instance, kept in the store,
//! taken once the call holds its local place and given back with it.
//!
//! A full shared bulkhead is waited for by polling the store (2 ms
//! doubling to 50 ms, sooner when a lease ends sooner), within the op's
//! `queue_timeout`; then the call is refused as `QueueTimeout`. When the
//! store cannot answer, the op's degradation decides ([`OpCore::degrade`]):
//! `fail_open` runs the call with its local place only, `fail_closed`
//! refuses it, `local` lets this instance run its share of the bound,
//! `ceil(max_concurrent / instances)` calls at once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{HoldId, SharedPlace, Store};
use crate::bulkhead::{BulkPermit, Bulkhead};
use crate::error::LimitError;

use super::remote::NO_STORE;
use super::{OpCore, Policy};

/// The first pause between two polls of a full shared bulkhead.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
/// The longest pause between two polls.
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// Calls of one op in this instance that passed the shared bulkhead (held
/// there, or let through by the degradation): what the local share is
/// checked against.
#[derive(Debug, Default)]
pub(crate) struct SharedPlaces {
    running: Arc<AtomicU32>,
}

/// This instance's share of a shared bound of `max` calls: `ceil(max /
/// instances)`, at least 1, where `instances` is the configured count,
/// else the store's, else 1.
fn share(max: u32, instances: Option<u32>, store: Option<&Store>) -> u32 {
    let instances = instances
        .or_else(|| store.map(|s| s.instances()))
        .unwrap_or(1)
        .max(1);
    max.div_ceil(instances).max(1)
}

/// A call's part in the shared bulkhead: counted in this instance while
/// alive, and, when the store holds a place for it, given back there when
/// dropped (off the caller's path).
struct SharedHold {
    running: Arc<AtomicU32>,
    held: Option<(Store, Arc<str>, HoldId)>,
}

impl Drop for SharedHold {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        if let Some((store, op, hold)) = self.held.take() {
            release(store, op, hold);
        }
    }
}

/// Gives `hold` back to the store in the background: on the caller's
/// runtime, else on the limiter's own (plain threads); with neither, the
/// lease returns it (its renewal stops at once either way).
fn release(store: Store, op: Arc<str>, hold: HoldId) {
    let name = Arc::clone(&op);
    let giving = store.place_release(op, hold);
    let job = async move {
        if let Err(e) = giving.await {
            tracing::debug!(op = &*name, error = %e, "shared place not given back; its lease returns it");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn(job)),
        Err(_) => {
            if let Some(rt) = super::blocking::driver() {
                drop(rt.spawn(job));
            }
        }
    }
}

/// What one try at the shared bulkhead gave.
enum Try {
    Held(SharedHold),
    /// Full: try again after at most this long.
    Wait(Duration),
}

impl SharedPlaces {
    /// Counts one more call, unconditionally.
    fn count(&self, held: Option<(Store, Arc<str>, HoldId)>) -> SharedHold {
        self.running.fetch_add(1, Ordering::AcqRel);
        SharedHold {
            running: Arc::clone(&self.running),
            held,
        }
    }

    /// Counts one more call if fewer than `share` run.
    fn count_within(&self, share: u32) -> Option<SharedHold> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < share).then_some(n + 1)
            })
            .ok()
            .map(|_| SharedHold {
                running: Arc::clone(&self.running),
                held: None,
            })
    }
}

impl OpCore {
    /// Takes one of the `max_concurrent` places of the op's shared bulkhead
    /// (under policy `p`) for a call holding its local place `bulk`, waiting for one until `deadline`; the place is
    /// attached to `bulk`, so it is given back with it on every path.
    pub(super) async fn take_shared_place<B>(
        &self,
        bulk: &mut BulkPermit<B>,
        p: &Policy,
        deadline: Instant,
    ) -> Result<(), LimitError>
    where
        B: std::ops::Deref<Target = Bulkhead>,
    {
        let mut pause = FIRST_PAUSE;
        loop {
            let hint = match self.try_shared_place(p).await? {
                Try::Held(hold) => {
                    bulk.attach(Box::new(hold));
                    return Ok(());
                }
                Try::Wait(hint) => hint,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(LimitError::QueueTimeout {
                    op: self.name.clone(),
                });
            }
            let nap = pause.min(hint.max(FIRST_PAUSE));
            tokio::time::sleep_until((now + nap).min(deadline)).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// One try at the shared bulkhead, degraded as configured when the
    /// store cannot answer (or none is set).
    async fn try_shared_place(&self, p: &Policy) -> Result<Try, LimitError> {
        let max = p.cfg.max_concurrent;
        let store = self.store();
        let failure = match &store {
            None => NO_STORE.to_owned(),
            Some(store) => match store.place_acquire(&self.name, max).await {
                // The store keeps no bulkhead: the local place is all.
                Ok(None) => return Ok(Try::Held(self.shared_places.count(None))),
                Ok(Some(SharedPlace::Held(hold))) => {
                    let held = (Store::clone(store), self.name.clone(), hold);
                    return Ok(Try::Held(self.shared_places.count(Some(held))));
                }
                Ok(Some(SharedPlace::Full { wait })) => return Ok(Try::Wait(wait)),
                Err(e) => e.to_string(),
            },
        };
        let mut local = None;
        self.degrade("bulkhead", &failure, p, || {
            let share = share(max, p.cfg.instances, store.as_deref());
            local = Some(self.shared_places.count_within(share));
            Ok(())
        })?;
        Ok(match local {
            // `fail_open`: the local place is all.
            None => Try::Held(self.shared_places.count(None)),
            Some(Some(hold)) => Try::Held(hold),
            Some(None) => Try::Wait(LONGEST_PAUSE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_rounded_up_and_never_zero() {
        assert_eq!(share(6, Some(2), None), 3);
        assert_eq!(share(5, Some(2), None), 3);
        assert_eq!(share(1, Some(4), None), 1);
        assert_eq!(share(6, None, None), 6, "alone");
    }

    #[test]
    fn the_local_count_bounds_the_share_and_drops_back() {
        let places = SharedPlaces::default();
        let a = places.count_within(2).expect("first");
        let b = places.count_within(2).expect("second");
        assert!(places.count_within(2).is_none(), "the share is full");
        drop(a);
        let c = places.count_within(2).expect("a place came back");
        let d = places.count(None);
        assert_eq!(places.running.load(Ordering::Relaxed), 3);
        drop((b, c, d));
        assert_eq!(places.running.load(Ordering::Relaxed), 0);
    }

    /// The op's side against a store of the test's own, on tokio's paused
    /// clock: the waits, the refusals and every path that gives a place
    /// back.
    #[cfg(feature = "redis")]
    mod with_a_store {
        use std::collections::HashSet;
        use std::sync::Mutex;

        use crate::backend::{
            BackendError, Check, SharedBreakerState, SharedState, SharedTicket, StoreFuture, Take,
        };
        use crate::keys::LimitKey;
        use crate::settings::{Backend, BreakerPolicy, ConcurrencyScope, Degradation, RateSpec};
        use crate::{LimitError, OpConfig, Registry};

        use super::*;

        /// A shared bulkhead of `max` places in memory; `down` makes it
        /// fail every call.
        #[derive(Debug, Default)]
        struct Places {
            max: u32,
            held: Mutex<HashSet<u64>>,
            next: AtomicU32,
            down: std::sync::atomic::AtomicBool,
        }

        impl Places {
            fn held(&self) -> usize {
                self.held.lock().unwrap().len()
            }
        }

        impl SharedState for Places {
            fn key_name(&self, _: &dyn LimitKey) -> u64 {
                0
            }

            fn check<'a>(
                &'a self,
                _: &'a str,
                _: Option<u64>,
                _: &'a RateSpec,
                _: Take,
            ) -> StoreFuture<'a, Check> {
                Box::pin(async { Ok(Check::Admitted { remaining: 0 }) })
            }

            fn breaker_admit<'a>(
                &'a self,
                _: &'a str,
                _: &'a BreakerPolicy,
            ) -> StoreFuture<'a, Result<SharedTicket, Duration>> {
                Box::pin(async { Ok(Ok(SharedTicket::Closed { round: 0 })) })
            }

            fn breaker_settle<'a>(
                &'a self,
                _: &'a str,
                _: SharedTicket,
                _: Option<bool>,
                _: &'a BreakerPolicy,
            ) -> StoreFuture<'a, SharedBreakerState> {
                Box::pin(async { Ok(SharedBreakerState::Closed) })
            }

            fn breaker_set<'a>(&'a self, _: &'a str, _: bool) -> StoreFuture<'a, ()> {
                Box::pin(async { Ok(()) })
            }

            fn instances(&self) -> u32 {
                4
            }

            fn place_acquire<'a>(
                &'a self,
                _: &'a str,
                max: u32,
            ) -> StoreFuture<'a, Option<SharedPlace>> {
                assert_eq!(max, self.max);
                let answer = if self.down.load(Ordering::Relaxed) {
                    Err(BackendError::Paused)
                } else {
                    let mut held = self.held.lock().unwrap();
                    if held.len() < max as usize {
                        let id = u64::from(self.next.fetch_add(1, Ordering::Relaxed));
                        held.insert(id);
                        Ok(Some(SharedPlace::Held(HoldId(id))))
                    } else {
                        Ok(Some(SharedPlace::Full {
                            wait: Duration::from_secs(1),
                        }))
                    }
                };
                Box::pin(async move { answer })
            }

            fn place_release(
                self: Arc<Self>,
                _: Arc<str>,
                hold: HoldId,
            ) -> StoreFuture<'static, ()> {
                Box::pin(async move {
                    self.held.lock().unwrap().remove(&hold.0);
                    Ok(())
                })
            }
        }

        fn instance(store: &Arc<Places>, degradation: Degradation) -> Registry {
            let reg = Registry::new();
            reg.set_shared_state(Arc::clone(store) as Arc<dyn SharedState>);
            reg.configure(
                "op",
                OpConfig {
                    backend: Some(Backend::Redis),
                    concurrency: Some(ConcurrencyScope::Shared),
                    degradation: Some(degradation),
                    max_concurrent: Some(store.max),
                    queue_timeout: Some(Duration::from_secs(1)),
                    ..OpConfig::default()
                },
            )
            .unwrap();
            reg
        }

        fn store(max: u32) -> Arc<Places> {
            Arc::new(Places {
                max,
                ..Places::default()
            })
        }

        async fn panics() -> Result<(), LimitError> {
            panic!("the body panics")
        }

        /// Lets spawned releases run.
        async fn settle() {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_full_shared_bulkhead_is_waited_for_within_the_queue_timeout() {
            let places = store(2);
            let (a, b) = (
                instance(&places, Degradation::FailClosed),
                instance(&places, Degradation::FailClosed),
            );
            let held = (
                a.op("op").acquire(None).await,
                a.op("op").acquire(None).await,
            );
            assert_eq!(places.held(), 2);
            let started = Instant::now();
            let refused = b.op("op").acquire(None).await;
            assert!(
                matches!(refused, Err(LimitError::QueueTimeout { .. })),
                "{refused:?}"
            );
            assert_eq!(
                started.elapsed(),
                Duration::from_secs(1),
                "the whole queue_timeout"
            );
            assert_eq!(
                b.op("op").snapshot().bulkhead.in_flight,
                0,
                "the local place came back"
            );

            // A place freed while waiting is taken within the longest pause.
            let op = b.op("op");
            let waiting = tokio::spawn(async move { op.acquire(None).await.map(drop) });
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(held.0);
            let started = Instant::now();
            waiting.await.unwrap().unwrap();
            assert!(
                started.elapsed() <= LONGEST_PAUSE,
                "{:?}",
                started.elapsed()
            );
            settle().await;
            assert_eq!(
                places.held(),
                1,
                "the waiter's place went back with its permit"
            );
            drop(held.1);
            settle().await;
            assert_eq!(places.held(), 0);
        }

        #[tokio::test(start_paused = true)]
        async fn a_shared_place_goes_back_on_error_panic_and_cancellation() {
            let places = store(1);
            let reg = instance(&places, Degradation::FailClosed);
            let failed = reg
                .op("op")
                .run(None, || async {
                    Err::<(), _>(LimitError::Timeout { op: "x".into() })
                })
                .await;
            assert!(failed.is_err());
            settle().await;
            assert_eq!(places.held(), 0, "after an error");

            let op = reg.op("op");
            let panicked = tokio::spawn(async move { op.run(None, panics).await }).await;
            assert!(panicked.is_err());
            settle().await;
            assert_eq!(places.held(), 0, "after a panic");

            let op = reg.op("op");
            let running = tokio::spawn(async move {
                op.run(None, std::future::pending::<Result<(), LimitError>>)
                    .await
            });
            settle().await;
            assert_eq!(places.held(), 1);
            running.abort();
            let _ = running.await;
            settle().await;
            assert_eq!(places.held(), 0, "after the caller went away");
        }

        #[test]
        fn a_plain_threads_place_goes_back_without_a_runtime_of_its_own() {
            let places = store(1);
            let reg = instance(&places, Degradation::FailClosed);
            let permit = reg.op("op").acquire_blocking(None).unwrap();
            assert_eq!(places.held(), 1);
            drop(permit);
            // Given back on the limiter's own runtime, not by the lease.
            let given_back = (0..200).any(|_| {
                std::thread::sleep(Duration::from_millis(5));
                places.held() == 0
            });
            assert!(given_back, "still held after 1 s");
            assert!(reg.op("op").acquire_blocking(None).is_ok());
        }

        #[tokio::test(start_paused = true)]
        async fn a_store_that_cannot_answer_is_degraded_as_configured() {
            let places = store(8);
            places.down.store(true, Ordering::Relaxed);
            let open = instance(&places, Degradation::FailOpen);
            let op = open.op("op");
            let mut permits = Vec::new();
            for _ in 0..8 {
                permits.push(op.acquire(None).await.unwrap());
            }
            assert_eq!(permits.len(), 8, "fail_open: the local places are all");

            let closed = instance(&places, Degradation::FailClosed);
            let refused = closed.op("op").acquire(None).await;
            assert!(
                matches!(refused, Err(LimitError::Overloaded { .. })),
                "{refused:?}"
            );

            // `local`: 8 across the store's 4 instances, 2 here at once.
            let local = instance(&places, Degradation::Local);
            let first = local.op("op").acquire(None).await.unwrap();
            let second = local.op("op").acquire(None).await.unwrap();
            let third = local.op("op").acquire(None).await;
            assert!(
                matches!(third, Err(LimitError::QueueTimeout { .. })),
                "{third:?}"
            );
            drop(first);
            let again = local.op("op").acquire(None).await;
            assert!(again.is_ok(), "{again:?}");
            drop((second, again));
            assert!(local.op("op").snapshot().counters.backend_fallbacks >= 4);
        }
    }
}
