//! `limiter::stream`: each strategy against a slow consumer (paused clock),
//! backpressure on the producer, the adaptive switch, a consumer gone
//! mid-stream, the `buffered` adapter under a slow reader and as an axum
//! body, and the statistics in the monitoring API and in Prometheus.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::{poll, Stream, StreamExt};
use limiter::http::Monitoring;
use limiter::stream::{
    DropReason, Receiver, SendError, SendOutcome, Sender, Strategy, StreamConfig, StreamMode,
    StreamSnapshot, SwitchReason,
};
use limiter::Registry;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{PrometheusType, PrometheusValue};
use serde_json::Value;
use tower::ServiceExt;

/// A registry of the test's own, so tests do not share statistics.
fn registry() -> &'static Registry {
    Box::leak(Box::new(Registry::new()))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A chunk of a stream: its sequence number and payload.
#[derive(Debug, Clone, PartialEq)]
struct Chunk {
    seq: u32,
    data: Vec<u8>,
}

fn chunk(seq: u32, len: usize) -> Chunk {
    Chunk {
        seq,
        data: vec![0; len],
    }
}

fn weigh(c: &Chunk) -> usize {
    c.data.len()
}

const BUDGET: usize = 1000;

/// `in == out + dropped + buffered`.
fn assert_balanced(s: &StreamSnapshot) {
    assert_eq!(
        s.items_in,
        s.items_out + s.dropped.total() + s.buffered_items,
        "every item delivered, dropped or buffered: {s:?}"
    );
}

fn only(reg: &Registry) -> StreamSnapshot {
    let mut all = reg.backpressure();
    assert_eq!(all.len(), 1, "{all:?}");
    all.pop().unwrap()
}

/// 200 chunks of 100..=400 bytes (and one of 2000 bytes, heavier than the
/// budget) sent every 1 ms to a consumer that takes `per_item(index)` per
/// chunk; the buffered bytes are checked against the budget after every
/// send and every pull. Returns the sequence numbers delivered, the
/// outcomes of the sends and the statistics.
async fn run(
    strategy: Strategy,
    per_item: fn(usize) -> Duration,
) -> (Vec<u32>, Vec<SendOutcome>, StreamSnapshot) {
    let reg = registry();
    let cfg = StreamConfig::new("audio")
        .max_items(8)
        .max_bytes(BUDGET)
        .strategy(strategy)
        .target_latency(ms(50));
    let (tx, mut rx) = reg.streams().weighed_channel(cfg, weigh).unwrap();
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(c) = rx.next().await {
            assert!(rx.buffered_bytes() <= BUDGET);
            got.push(c.seq);
            tokio::time::sleep(per_item(got.len())).await;
        }
        got
    });
    let mut outcomes = Vec::new();
    for seq in 0..200u32 {
        let len = if seq == 50 {
            2 * BUDGET
        } else {
            100 + (seq as usize * 37) % 301
        };
        outcomes.push(tx.send(chunk(seq, len)).await.unwrap());
        assert!(tx.buffered_bytes() <= BUDGET, "after send {seq}");
        assert!(tx.buffered_items() <= 8);
        assert_balanced(&only(reg));
        tokio::time::sleep(ms(1)).await;
    }
    drop(tx);
    let got = consumer.await.unwrap();
    let s = only(reg);
    assert_balanced(&s);
    assert!(s.peak_bytes <= BUDGET as u64 && s.peak_items <= 8, "{s:?}");
    assert_eq!((s.buffered_items, s.buffered_bytes, s.handlers), (0, 0, 0));
    assert_eq!(s.items_out, got.len() as u64);
    assert_eq!(s.items_in, 200);
    assert_eq!(s.dropped.too_large, 1);
    assert_eq!(outcomes[50], SendOutcome::Dropped(DropReason::TooLarge));
    assert!(!got.contains(&50));
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    (got, outcomes, s)
}

fn slow(_: usize) -> Duration {
    ms(10)
}

#[tokio::test(start_paused = true)]
async fn block_delivers_everything_at_the_consumers_pace() {
    let start = tokio::time::Instant::now();
    let (got, _, s) = run(Strategy::Block, slow).await;
    assert_eq!(got.len(), 199, "all but the one too large");
    assert_eq!(s.dropped.total(), 1);
    assert!(s.blocked_sends > 100, "{s:?}");
    // The producer was held to the consumer's 10 ms per item.
    assert!(start.elapsed() >= ms(1900), "{:?}", start.elapsed());
    assert!(s.queue_wait.max_ms >= 50.0, "{:?}", s.queue_wait);
    assert!(
        (s.processing.p50_ms - 10.0).abs() < 0.5,
        "{:?}",
        s.processing
    );
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_keeps_the_freshest() {
    let (got, outcomes, s) = run(Strategy::DropOldest, slow).await;
    assert_eq!(got.last(), Some(&199), "the newest always arrives");
    assert!(s.dropped.oldest > 100, "{s:?}");
    assert_eq!(s.dropped.newest + s.dropped.closed, 0);
    assert_eq!(s.blocked_sends, 0);
    let reported: usize = outcomes
        .iter()
        .map(|o| match o {
            SendOutcome::Queued { dropped_oldest } => *dropped_oldest,
            SendOutcome::Dropped(_) => 0,
        })
        .sum();
    assert_eq!(reported as u64, s.dropped.oldest, "each drop reported");
}

#[tokio::test(start_paused = true)]
async fn drop_newest_keeps_the_first() {
    let (got, outcomes, s) = run(Strategy::DropNewest, slow).await;
    assert_eq!(&got[..4], &[0, 1, 2, 3], "the first ones arrive");
    assert!(!got.contains(&199));
    assert!(s.dropped.newest > 100, "{s:?}");
    assert_eq!(s.dropped.oldest, 0);
    let refused = outcomes
        .iter()
        .filter(|o| **o == SendOutcome::Dropped(DropReason::Newest))
        .count();
    assert_eq!(refused as u64, s.dropped.newest);
}

/// 20 ms per item for the first 5 items, then 2 ms (the producer sends
/// one every 1 ms for 200 ms).
fn slow_then_fast(i: usize) -> Duration {
    if i <= 5 {
        ms(20)
    } else {
        ms(2)
    }
}

#[tokio::test(start_paused = true)]
async fn adaptive_drops_while_the_consumer_lags_and_blocks_once_it_keeps_up() {
    let (got, _, s) = run(Strategy::Adaptive, slow_then_fast).await;
    assert_eq!(s.mode, Some(StreamMode::Blocking));
    assert_eq!(s.target_latency_ms, Some(50.0));
    assert!(s.switches_to_dropping >= 1, "{s:?}");
    assert!(s.switches_to_blocking >= 1, "{s:?}");
    assert!(s.dropped.oldest > 0, "dropped while slow: {s:?}");
    let last = s.last_switch.clone().expect("a switch");
    assert_eq!(
        (last.to, last.reason),
        (StreamMode::Blocking, SwitchReason::Recovered)
    );
    assert!(last.drain_ms.unwrap() <= 50.0, "{last:?}");
    assert!(last.at_unix_ms > 0);
    assert_eq!(got.last(), Some(&199));
    assert_eq!(s.dropping_handlers, 0);
}

#[tokio::test(start_paused = true)]
async fn adaptive_reports_when_and_why_it_switched_to_dropping() {
    let reg = registry();
    let cfg = StreamConfig::new("a")
        .max_items(4)
        .strategy(Strategy::Adaptive)
        .target_latency(ms(100));
    let (tx, mut rx) = reg.streams().channel::<u32>(cfg).unwrap();
    // The consumer takes 50 ms over each of two items: S = 50 ms.
    for i in 0..3 {
        tx.send(i).await.unwrap();
    }
    for _ in 0..2 {
        rx.next().await.unwrap();
        tokio::time::advance(ms(50)).await;
    }
    rx.next().await.unwrap(); // the last one held; buffer empty
    for i in 3..7 {
        assert_eq!(
            tx.try_send(i).unwrap(),
            SendOutcome::Queued { dropped_oldest: 0 }
        );
    }
    assert_eq!(only(reg).last_switch, None, "not full yet: no decision");
    // Full: 4 x 50 ms = 200 ms > 100 ms: drop the oldest, and say so.
    assert_eq!(
        tx.try_send(7).unwrap(),
        SendOutcome::Queued { dropped_oldest: 1 }
    );
    let s = only(reg);
    assert_eq!(
        (s.mode, s.dropping_handlers),
        (Some(StreamMode::Dropping), 1)
    );
    let sw = s.last_switch.unwrap();
    assert_eq!(
        (sw.to, sw.reason, sw.buffered_items),
        (StreamMode::Dropping, SwitchReason::SlowConsumer, 4)
    );
    assert!((sw.service_ms.unwrap() - 50.0).abs() < 1.0, "{sw:?}");
    assert!((sw.drain_ms.unwrap() - 200.0).abs() < 4.0, "{sw:?}");
    drop(rx);
    assert_eq!(
        only(reg).dropping_handlers,
        1,
        "the sender keeps the handler"
    );
    drop(tx);
    assert_eq!(
        only(reg).dropping_handlers,
        0,
        "a gone handler drops nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn adaptive_stops_blocking_a_stalled_consumer_after_the_target() {
    let reg = registry();
    let cfg = StreamConfig::new("stall")
        .max_items(2)
        .strategy(Strategy::Adaptive)
        .target_latency(ms(100));
    let (tx, _rx) = reg.streams().channel::<u32>(cfg).unwrap();
    tx.send(0).await.unwrap();
    tx.send(1).await.unwrap();
    let start = tokio::time::Instant::now();
    // Nobody pulls: the send blocks for the target, then drops the oldest.
    assert_eq!(
        tx.send(2).await.unwrap(),
        SendOutcome::Queued { dropped_oldest: 1 }
    );
    assert_eq!(start.elapsed(), ms(100));
    let s = only(reg);
    assert_eq!(s.last_switch.unwrap().reason, SwitchReason::Stalled);
    assert_eq!((s.blocked_sends, s.waiting_senders), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn block_holds_the_producer_until_the_consumer_pulls() {
    let reg = registry();
    let (tx, mut rx) = reg
        .streams()
        .channel::<u32>(StreamConfig::new("b").max_items(2))
        .unwrap();
    tx.send(1).await.unwrap();
    tx.send(2).await.unwrap();
    let mut third = pin!(tx.send(3));
    for _ in 0..3 {
        assert!(poll!(third.as_mut()).is_pending(), "full: the send waits");
        tokio::time::advance(ms(100)).await;
    }
    assert_eq!(only(reg).waiting_senders, 1);
    assert_eq!(rx.next().await, Some(1));
    assert_eq!(
        third.await.unwrap(),
        SendOutcome::Queued { dropped_oldest: 0 }
    );
    let s = only(reg);
    assert_eq!(
        (s.blocked_sends, s.waiting_senders, s.buffered_items),
        (1, 0, 2)
    );
    assert_eq!(s.dropped.total(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_consumer_gone_mid_stream_releases_everything() {
    let reg = registry();
    let cfg = StreamConfig::new("gone").max_items(3).max_bytes(BUDGET);
    let (tx, mut rx) = reg.streams().weighed_channel(cfg, weigh).unwrap();
    for seq in 0..3 {
        tx.send(chunk(seq, 300)).await.unwrap();
    }
    rx.next().await.unwrap();
    tx.send(chunk(3, 300)).await.unwrap();
    let blocked = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(chunk(4, 300)).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(only(reg).waiting_senders, 1);
    assert_eq!(tx.buffered_bytes(), 900);
    drop(rx);
    assert_eq!(tx.buffered_bytes(), 0);
    let err: SendError<Chunk> = blocked.await.unwrap().unwrap_err();
    assert_eq!(err.0.seq, 4, "the item comes back");
    assert!(tx.is_closed());
    tx.closed().await;
    assert!(tx.send(chunk(5, 1)).await.is_err());
    let s = only(reg);
    assert_eq!((s.buffered_items, s.buffered_bytes), (0, 0));
    assert_eq!((s.dropped.closed, s.refused_closed, s.items_out), (3, 2, 1));
    assert_balanced(&s);
}

/// A stream of `n` chunks available at once, then (with `hang`) pending
/// forever; it holds `alive` until dropped.
fn producer(n: u32, hang: bool, alive: Arc<()>) -> impl Stream<Item = Chunk> + Send {
    let items = futures::stream::iter((0..n).map(|i| chunk(i, 100)));
    let tail = futures::stream::pending().take(if hang { 1 } else { 0 });
    items.chain(tail).map(move |c| {
        let _hold = &alive;
        c
    })
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn buffered_applies_the_strategy_to_a_slow_reader() {
    let reg = registry();
    let alive = Arc::new(());
    let cfg = StreamConfig::new("body")
        .max_items(4)
        .max_bytes(300)
        .strategy(Strategy::DropOldest);
    let body = reg
        .streams()
        .weighed_buffered(producer(100, false, Arc::clone(&alive)), cfg, weigh)
        .unwrap();
    let mut body = pin!(body);
    let mut got = Vec::new();
    while let Some(c) = body.next().await {
        assert!(body.buffered_bytes() <= 300);
        got.push(c.seq);
        tokio::time::sleep(ms(10)).await;
    }
    assert_eq!(got.last(), Some(&99), "the reader ends with the newest");
    assert!(got.len() < 10, "the slow reader skipped: {got:?}");
    assert_eq!(Arc::strong_count(&alive), 1, "the pump ended");
    let s = only(reg);
    assert_eq!(s.items_in, 100);
    assert_eq!(s.dropped.oldest, 100 - got.len() as u64);
    assert!(s.peak_bytes <= 300 && s.peak_items <= 3, "{s:?}");
    assert_balanced(&s);
}

#[tokio::test(start_paused = true)]
async fn a_reader_gone_ends_the_pump_whether_it_waits_for_the_producer_or_the_consumer() {
    for (hang, n) in [(true, 2), (false, 50)] {
        let reg = registry();
        let alive = Arc::new(());
        let cfg = StreamConfig::new("r").max_items(4); // blocks when full
        let mut body = reg
            .streams()
            .buffered(producer(n, hang, Arc::clone(&alive)), cfg)
            .unwrap();
        assert_eq!(body.next().await.unwrap().seq, 0);
        settle().await;
        assert_eq!(Arc::strong_count(&alive), 2, "pump running");
        drop(body);
        settle().await;
        assert_eq!(Arc::strong_count(&alive), 1, "pump ended (hang = {hang})");
        let s = only(reg);
        assert_eq!((s.buffered_items, s.handlers), (0, 0));
        assert_balanced(&s);
    }
}

#[tokio::test(start_paused = true)]
async fn buffered_streams_serve_as_an_axum_body() {
    let reg = registry();
    let chunks = futures::stream::iter(0..50u8)
        .map(|i| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![i; 64])));
    let cfg = StreamConfig::new("http")
        .max_items(100)
        .max_bytes(256)
        .strategy(Strategy::DropOldest);
    let weigh = |c: &Result<axum::body::Bytes, std::io::Error>| c.as_ref().map_or(0, |b| b.len());
    let body = Body::from_stream(reg.streams().weighed_buffered(chunks, cfg, weigh).unwrap());
    let mut data = body.into_data_stream();
    settle().await; // the pump fills the budget before the first read
    let mut firsts = Vec::new();
    while let Some(b) = data.next().await {
        firsts.push(b.unwrap()[0]);
        tokio::time::sleep(ms(5)).await;
    }
    assert_eq!(firsts.last(), Some(&49));
    let s = only(reg);
    assert!(s.peak_bytes <= 256, "{s:?}");
    assert_eq!(s.dropped.oldest, 50 - firsts.len() as u64);
}

async fn get(app: &axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, body.to_vec())
}

/// One handler with 2 items out, 1 dropped (oldest) and 1 buffered (40
/// bytes); returns its halves so it stays alive.
async fn busy_stream(reg: &Registry) -> (Sender<Chunk>, Receiver<Chunk>) {
    let cfg = StreamConfig::new("tts")
        .max_items(2)
        .max_bytes(100)
        .strategy(Strategy::DropOldest);
    let (tx, mut rx) = reg.streams().weighed_channel(cfg, weigh).unwrap();
    for seq in 0..3 {
        tx.send(chunk(seq, 40)).await.unwrap();
    }
    assert_eq!(rx.next().await.unwrap().seq, 1, "0 was dropped for 2");
    assert_eq!(rx.next().await.unwrap().seq, 2);
    tx.send(chunk(3, 40)).await.unwrap();
    (tx, rx)
}

#[tokio::test]
async fn the_monitoring_api_serves_the_statistics() {
    let reg = registry();
    let _keep = busy_stream(reg).await;
    let app = Monitoring::new().registry(reg).router().unwrap();
    let (status, body) = get(&app, "/monitoring/backpressure", None).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let s = &v["streams"][0];
    assert_eq!(s["name"], "tts");
    assert_eq!(s["strategy"], "drop_oldest");
    assert_eq!(
        (s["max_items"].as_u64(), s["max_bytes"].as_u64()),
        (Some(2), Some(100))
    );
    assert_eq!(s["items_in"], 4);
    assert_eq!(s["items_out"], 2);
    assert_eq!(s["dropped"]["oldest"], 1);
    assert_eq!(
        (s["buffered_items"].as_u64(), s["buffered_bytes"].as_u64()),
        (Some(1), Some(40))
    );
    assert_eq!(s["queue_wait"]["count"], 2);
    assert!(s["mode"].is_null(), "not adaptive");

    // Behind the admin token when reads are protected.
    let guarded = Monitoring::new()
        .registry(reg)
        .admin_token("t0k")
        .protect_reads(true)
        .router()
        .unwrap();
    let (status, _) = get(&guarded, "/monitoring/backpressure", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(&guarded, "/monitoring/backpressure", Some("t0k")).await;
    assert_eq!(status, StatusCode::OK);
}

fn value(
    family: &openmetrics_parser::MetricFamily<PrometheusType, PrometheusValue>,
    labels: &[&str],
) -> f64 {
    let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    let sample = family
        .get_sample_by_label_values(&labels)
        .unwrap_or_else(|| panic!("no sample {labels:?}"));
    match &sample.value {
        PrometheusValue::Counter(c) => c.value.as_f64(),
        PrometheusValue::Gauge(g) => g.as_f64(),
        other => panic!("not a counter or gauge: {other:?}"),
    }
}

#[tokio::test]
async fn prometheus_exposes_the_stream_families() {
    let reg = registry();
    let _keep = busy_stream(reg).await;
    let _unbounded = reg
        .streams()
        .channel::<u8>(StreamConfig::new("events"))
        .unwrap();
    let text = reg.prometheus();
    let parsed = parse_prometheus(&text).expect("valid exposition");
    let family = |name: &str| {
        parsed
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"))
    };
    let items = family("limiter_stream_items_total");
    assert_eq!(items.family_type, PrometheusType::Counter);
    // The parser sorts label names.
    assert_eq!(items.get_label_names(), ["direction", "stream"]);
    assert_eq!(value(items, &["in", "tts"]), 4.0);
    assert_eq!(value(items, &["out", "tts"]), 2.0);
    let dropped = family("limiter_stream_dropped_total");
    assert_eq!(value(dropped, &["oldest", "tts"]), 1.0);
    assert_eq!(value(dropped, &["too_large", "tts"]), 0.0);
    assert_eq!(
        value(family("limiter_stream_buffered_bytes"), &["tts"]),
        40.0
    );
    assert_eq!(
        value(family("limiter_stream_buffered_items"), &["tts"]),
        1.0
    );
    assert_eq!(value(family("limiter_stream_max_bytes"), &["tts"]), 100.0);
    let no_budget = value(family("limiter_stream_max_bytes"), &["events"]);
    assert!(no_budget.is_infinite() && no_budget > 0.0, "{no_budget}");
    assert_eq!(value(family("limiter_stream_handlers"), &["tts"]), 1.0);
    let wait = family("limiter_stream_queue_wait_seconds");
    assert_eq!(wait.family_type, PrometheusType::Histogram);
    assert!(matches!(
        &wait.get_sample_by_label_values(&["tts".to_string()]).unwrap().value,
        PrometheusValue::Histogram(h) if h.count == Some(2)
    ));
    family("limiter_stream_processing_seconds");
    family("limiter_stream_mode_switches_total");
}
