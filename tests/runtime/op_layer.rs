//! `OpLayer`: an op's policy on every request of a tower service.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use limiter::{LimitError, OpConfig, OpLayer, Registry};
use tower::{service_fn, Layer, Service, ServiceExt};

use super::*;

/// Counts a request alive until it is dropped (done or cancelled).
struct Alive(Arc<AtomicU32>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A service whose requests are `(user, millis)`: it sleeps that long and
/// answers the user, counting the requests alive at once.
fn sleeper(
    alive: Arc<AtomicU32>,
    most: Arc<AtomicU32>,
) -> impl Service<(u32, u64), Response = u32, Error = LimitError, Future: Send> + Clone {
    service_fn(move |(user, ms): (u32, u64)| {
        let (alive, most) = (alive.clone(), most.clone());
        async move {
            let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
            let _alive = Alive(alive);
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(user)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn every_request_is_a_limited_call_of_the_op() {
    let reg = Registry::new();
    reg.configure(
        "svc",
        OpConfig {
            timeout: Some(ms(100)),
            max_concurrent: Some(2),
            queue: Some(10),
            burst: Some(3),
            ..OpConfig::default()
        }
        .with_rate_per_key("3/min")
        .unwrap(),
    )
    .unwrap();
    let (alive, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let layer = OpLayer::new(reg.op("svc")).key(|req: &(u32, u64)| Some(req.0));
    let svc = layer.layer(sleeper(alive.clone(), most.clone()));

    // The bulkhead: 6 concurrent requests of 6 users, 2 at a time.
    let calls: Vec<_> = (0..6u32)
        .map(|user| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot((user, 10)).await })
        })
        .collect();
    for (user, c) in calls.into_iter().enumerate() {
        assert_eq!(c.await.unwrap(), Ok(user as u32));
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more than max_concurrent"
    );

    // The per-key rate: user 0 has 2 more calls this minute, user 9 has 3.
    for _ in 0..2 {
        assert!(svc.clone().oneshot((0, 1)).await.is_ok());
    }
    let refused = svc.clone().oneshot((0, 1)).await;
    assert!(
        matches!(refused, Err(LimitError::RateLimited { .. })),
        "{refused:?}"
    );
    assert!(svc.clone().oneshot((9, 1)).await.is_ok());

    // The timeout: a slow request is cut at 100 ms, and its place freed.
    let slow = svc.clone().oneshot((8, 1_000)).await;
    assert!(matches!(slow, Err(LimitError::Timeout { .. })), "{slow:?}");
    assert_eq!(
        alive.load(Ordering::SeqCst),
        0,
        "the timed-out request was dropped"
    );
    let snap = reg.op("svc").snapshot();
    assert_eq!(snap.bulkhead.in_flight, 0);
    assert_eq!(snap.counters.timeouts, 1);
}

/// A refused request never reaches the service: the service is called
/// only once the op admitted the request (a tonic channel would send it
/// the moment it is called).
#[tokio::test]
async fn a_refused_request_never_reaches_the_service() {
    let reg = Registry::new();
    reg.configure("gate", OpConfig::default().with_rate("1/min").unwrap())
        .unwrap();
    let called = Arc::new(AtomicU32::new(0));
    #[derive(Clone)]
    struct Counting(Arc<AtomicU32>);
    impl Service<u32> for Counting {
        type Response = u32;
        type Error = LimitError;
        type Future = std::future::Ready<Result<u32, LimitError>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), LimitError>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, x: u32) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(x))
        }
    }
    let svc = OpLayer::new(reg.op("gate")).layer(Counting(called.clone()));
    assert_eq!(svc.clone().oneshot(1).await, Ok(1));
    let refused = svc.clone().oneshot(2).await;
    assert!(
        matches!(refused, Err(LimitError::RateLimited { .. })),
        "{refused:?}"
    );
    assert_eq!(
        called.load(Ordering::SeqCst),
        1,
        "the refused request was not sent"
    );
}
