//! The `metrics` facade publisher (feature `metrics`): every family of the
//! `/metrics` text reaches a `metrics` recorder with the same name, kind,
//! label sets and values. The families are compared as sets, so a family
//! the text gains and the publisher misses fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use limiter::http::{LimiterLayer, Rule};
use limiter::metrics_export::Publisher;
use limiter::stream::StreamConfig;
use limiter::{LimitError, OpConfig, Registry, TaskSpec};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{PrometheusType, PrometheusValue};

/// One series: family, kind and sorted labels.
type Series = (String, &'static str, BTreeSet<(String, String)>);

/// What a series holds: a counter's or gauge's value, or a histogram's
/// count of values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Number(f64),
    Count(u64),
}

/// Every series of the text exposition, with its value.
fn text_series(text: &str) -> BTreeMap<Series, Value> {
    let parsed = parse_prometheus(text).expect("valid exposition");
    let mut out = BTreeMap::new();
    for (name, family) in &parsed.families {
        let kind = match family.family_type {
            PrometheusType::Counter => "counter",
            PrometheusType::Gauge => "gauge",
            PrometheusType::Histogram => "histogram",
            ref other => panic!("{name}: unexpected type {other:?}"),
        };
        let mut any = false;
        for s in family.iter_samples() {
            any = true;
            let labels = s
                .get_labelset()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let value = match &s.value {
                PrometheusValue::Counter(c) => Value::Number(c.value.as_f64()),
                PrometheusValue::Gauge(g) => Value::Number(g.as_f64()),
                PrometheusValue::Histogram(h) => Value::Count(h.count.unwrap()),
                other => panic!("{name}: unexpected value {other:?}"),
            };
            out.insert((name.clone(), kind, labels), value);
        }
        assert!(any, "{name}: no series; the test should make one");
    }
    out
}

/// Every series the recorder saw since its last snapshot; histograms by
/// the number of values recorded.
fn recorded(recorder: &DebuggingRecorder) -> BTreeMap<Series, Value> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _, _, value)| {
            let kind = match ck.kind() {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
                MetricKind::Histogram => "histogram",
            };
            let key = ck.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => Value::Number(n as f64),
                DebugValue::Gauge(v) => Value::Number(v.into_inner()),
                DebugValue::Histogram(vs) => Value::Count(vs.len() as u64),
            };
            ((key.name().to_owned(), kind, labels), value)
        })
        .collect()
}

/// The families of `series`, by name, with the label names of each.
fn families(series: &BTreeMap<Series, Value>) -> BTreeMap<String, BTreeSet<BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    for (name, _, labels) in series.keys() {
        out.entry(name.clone())
            .or_default()
            .insert(labels.iter().map(|l| l.0.clone()).collect());
    }
    out
}

/// Serves `app` on a local port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// Runs an op through every limit (admitted, refused by its per-key rate
/// and by its bulkhead, timed out), a route, an HTTP rule, a stream and a
/// background task.
async fn exercise(reg: &'static Registry) {
    reg.configure(
        "db",
        OpConfig {
            timeout: Some(Duration::from_millis(20)),
            max_concurrent: Some(1),
            queue: Some(0),
            ..OpConfig::default()
        }
        .with_rate_per_key("2/s")
        .unwrap(),
    )
    .unwrap();
    let db = reg.op("db");
    let ok = || async { Ok::<_, LimitError>(()) };
    db.run(Some(&"a"), ok).await.unwrap();
    db.run(Some(&"a"), ok).await.unwrap();
    let refused = db.run(Some(&"a"), ok).await.unwrap_err();
    assert!(
        matches!(refused, LimitError::RateLimited { .. }),
        "{refused:?}"
    );
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok::<_, LimitError>(())
    };
    let (timed_out, full) = tokio::join!(db.run(Some(&"b"), slow), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        db.run(Some(&"c"), ok).await
    });
    assert!(
        matches!(timed_out, Err(LimitError::Timeout { .. })),
        "{timed_out:?}"
    );
    assert!(
        matches!(full, Err(LimitError::QueueFull { .. })),
        "{full:?}"
    );

    // A route recorded by hand, and one behind a limiter-layer rule.
    let route = reg.monitor().route("POST", "/jobs");
    route.start();
    route.slow_poll();
    route.finish(201, Duration::from_millis(3));
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("/users/{id}").name("users").per_minute(2))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "ok" }))
        .layer(layer);
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for id in 0..3 {
        let r = client
            .get(format!("{base}/users/{id}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);

    let (tx, mut rx) = reg
        .streams()
        .channel::<u32>(StreamConfig::new("events").max_items(2))
        .unwrap();
    tx.send(1).await.unwrap();
    assert_eq!(rx.recv().await, Some(1));

    let task = reg
        .tasks()
        .spawn_once(TaskSpec::new("report"), async { Ok::<_, LimitError>(()) })
        .unwrap();
    task.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_of_the_text_is_published_with_its_labels_and_values() {
    let reg: &'static Registry = Box::leak(Box::new(Registry::new()));
    exercise(reg).await;

    let recorder = DebuggingRecorder::new();
    let mut publisher = Publisher::new();
    let text = reg.prometheus();
    metrics::with_local_recorder(&recorder, || publisher.publish(reg));
    let want = text_series(&text);
    let got = recorded(&recorder);

    assert_eq!(families(&got), families(&want), "families and label names");
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(missing.is_empty(), "not published: {missing:#?}");
    assert!(extra.is_empty(), "not in the text: {extra:#?}");
    for (series, value) in &want {
        assert_eq!(got[series], *value, "{series:?}");
    }
    for name in [
        "limiter_op_calls_total",
        "limiter_op_rejected_total",
        "limiter_op_keys",
        "limiter_http_request_duration_seconds",
        "limiter_rule_decisions_total",
        "limiter_stream_items_total",
        "limiter_background_spawned_total",
    ] {
        assert!(families(&got).contains_key(name), "{name}");
    }
    let series = |name: &str, kind, labels: &[(&str, &str)]| -> Series {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (name.to_owned(), kind, labels)
    };
    let refused = series(
        "limiter_op_rejected_total",
        "counter",
        &[("op", "db"), ("reason", "rate_limited")],
    );
    assert_eq!(got[&refused], Value::Number(1.0));
    let timeouts = series(
        "limiter_op_outcomes_total",
        "counter",
        &[("op", "db"), ("outcome", "timeout")],
    );
    assert_eq!(got[&timeouts], Value::Number(1.0));

    // Published again: counters stay absolute, histograms get only what
    // was recorded since (one more call).
    reg.op("db")
        .run(Some(&"d"), || async { Ok::<_, LimitError>(()) })
        .await
        .unwrap();
    metrics::with_local_recorder(&recorder, || publisher.publish(reg));
    let again = recorded(&recorder);
    let calls = series("limiter_op_calls_total", "counter", &[("op", "db")]);
    assert_eq!(again[&calls], Value::Number(got_number(&got[&calls]) + 1.0));
    let latency = series("limiter_op_duration_seconds", "histogram", &[("op", "db")]);
    assert_eq!(again[&latency], Value::Count(1));
    let route = series(
        "limiter_http_request_duration_seconds",
        "histogram",
        &[("method", "POST"), ("route", "/jobs")],
    );
    assert_eq!(again[&route], Value::Count(0));
}

fn got_number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => *n,
        Value::Count(n) => *n as f64,
    }
}
