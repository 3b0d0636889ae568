//! Unit tests of the stream handlers (paused clock, no real sleeps).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::*;

fn table() -> StreamTable {
    StreamTable::new()
}

/// Polls `f` once.
fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

fn snap(t: &StreamTable) -> StreamSnapshot {
    t.snapshots().pop().expect("one stream")
}

/// `in == out + dropped + buffered`.
fn balanced(s: &StreamSnapshot) -> bool {
    s.items_in == s.items_out + s.dropped.total() + s.buffered_items
}

#[tokio::test(start_paused = true)]
async fn drop_newest_keeps_what_is_buffered() {
    let t = table();
    let cfg = StreamConfig::new("n")
        .max_items(2)
        .strategy(Strategy::DropNewest);
    let (tx, mut rx) = t.channel::<u32>(cfg).unwrap();
    for i in 0..5 {
        let out = tx.send(i).await.unwrap();
        assert_eq!(out.dropped_any(), i >= 2, "item {i}: {out:?}");
        assert!(tx.buffered_items() <= 2);
    }
    drop(tx);
    assert_eq!(rx.recv().await, Some(0));
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, None);
    let s = snap(&t);
    assert_eq!((s.items_in, s.items_out, s.dropped.newest), (5, 2, 3));
    assert!(balanced(&s));
}

#[tokio::test(start_paused = true)]
async fn try_send_on_a_full_blocking_buffer_gives_the_item_back() {
    let t = table();
    let (tx, _rx) = t
        .channel::<u32>(StreamConfig::new("b").max_items(1))
        .unwrap();
    tx.try_send(1).unwrap();
    assert_eq!(tx.try_send(2).unwrap_err().into_inner(), 2);
    let s = snap(&t);
    assert_eq!((s.items_in, s.refused_full, s.buffered_items), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn queue_wait_and_processing_time_are_measured() {
    let t = table();
    let (tx, mut rx) = t.channel::<u32>(StreamConfig::new("w")).unwrap();
    tx.send(1).await.unwrap();
    tx.send(2).await.unwrap();
    tokio::time::advance(Duration::from_millis(40)).await;
    assert_eq!(rx.recv().await, Some(1)); // waited 40 ms
    tokio::time::advance(Duration::from_millis(10)).await;
    assert_eq!(rx.recv().await, Some(2)); // 1 took 10 ms; 2 waited 50 ms
    let s = snap(&t);
    assert_eq!(s.queue_wait.count, 2);
    assert!(
        (s.queue_wait.max_ms - 50.0).abs() < 2.0,
        "{:?}",
        s.queue_wait
    );
    assert_eq!(s.processing.count, 1);
    assert!(
        (s.processing.max_ms - 10.0).abs() < 0.5,
        "{:?}",
        s.processing
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_sender_ends_the_stream_after_the_buffer() {
    let t = table();
    let (tx, mut rx) = t.channel::<u32>(StreamConfig::new("e")).unwrap();
    let tx2 = tx.clone();
    tx.send(1).await.unwrap();
    drop(tx);
    assert_eq!(rx.recv().await, Some(1));
    let mut next = pin!(rx.recv());
    assert_eq!(poll_once(next.as_mut()), Poll::Pending, "a sender is left");
    drop(tx2);
    assert_eq!(next.await, None);
}

#[tokio::test(start_paused = true)]
async fn a_name_keeps_its_totals_after_its_handlers() {
    let t = table();
    for _ in 0..3 {
        let (tx, mut rx) = t.channel::<u32>(StreamConfig::new("r")).unwrap();
        tx.send(1).await.unwrap();
        assert_eq!(snap(&t).handlers, 1);
        rx.recv().await.unwrap();
    }
    let s = snap(&t);
    assert_eq!((s.handlers, s.items_in, s.items_out), (0, 3, 3));
}

#[test]
fn buffered_outside_a_runtime_is_an_error() {
    let t = table();
    struct Empty;
    impl futures_core::Stream for Empty {
        type Item = u8;
        fn poll_next(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u8>> {
            Poll::Ready(None)
        }
    }
    let err = t.buffered(Empty, StreamConfig::new("x")).unwrap_err();
    assert_eq!(err, StreamError::NoRuntime("x".into()));
}
