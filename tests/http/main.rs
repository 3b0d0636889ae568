//! The HTTP integration over real TCP: status mapping, `LimiterLayer`
//! rules, client identity, internal bypass, shadow mode, the monitoring
//! API with its admin token, and the Prometheus exposition.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use limiter::http::{ClientClass, KeySet, LimiterLayer, Monitoring, Rule};
use limiter::monitor::{AlertKind, MonitorConfig};
use limiter::{LimitError, QueueScope, Quota, Registry};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{PrometheusType, PrometheusValue};
use reqwest::header::HeaderMap;
use serde_json::Value;

mod hostile;
mod identity;
mod routes;

/// A registry of the test's own, so tests do not share limits or metrics.
fn registry() -> &'static Registry {
    Box::leak(Box::new(Registry::new()))
}

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

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get_status(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut req = c.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    StatusCode::from_u16(req.send().await.unwrap().status().as_u16()).unwrap()
}

/// Sends the `n` requests `request(i)` makes, one after another; returns
/// how many were answered with `status`.
async fn count_status(
    n: usize,
    status: StatusCode,
    mut request: impl FnMut(usize) -> reqwest::RequestBuilder,
) -> usize {
    let mut count = 0;
    for i in 0..n {
        let got = request(i).send().await.unwrap().status().as_u16();
        count += usize::from(got == status.as_u16());
    }
    count
}

/// `n` GETs of `url` with `headers`: how many were answered 200.
async fn count_ok(c: &reqwest::Client, url: &str, headers: &[(&str, &str)], n: usize) -> usize {
    count_status(n, StatusCode::OK, |_| {
        headers
            .iter()
            .fold(c.get(url), |req, (k, v)| req.header(*k, *v))
    })
    .await
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("missing header {name} in {h:?}"))
        .to_str()
        .unwrap()
}

/// The `r` of a `RateLimit` value.
fn remaining(limit: &str) -> u64 {
    limit
        .split(';')
        .find_map(|p| p.strip_prefix("r="))
        .unwrap_or_else(|| panic!("no r in {limit}"))
        .parse()
        .unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An error, its status, and its `RateLimit-Policy` and `RateLimit` values
/// (`Some(("", ""))`: `Retry-After` alone, the answer of an open breaker or
/// a shed service, which have no quota to tell).
type Case = (LimitError, u16, Option<(&'static str, &'static str)>);

#[tokio::test]
async fn every_limit_error_maps_to_its_status_headers_and_body() {
    let op = || "db".into();
    let cases: Vec<Case> = vec![
        (
            LimitError::RateLimited {
                op: op(),
                retry_after: Duration::from_millis(17_200),
                quota: Quota::rate(100, secs(60), false),
            },
            429,
            Some((r#""db";q=100;w=60"#, r#""db";r=0;t=18"#)),
        ),
        (
            LimitError::QueueFull {
                op: op(),
                scope: QueueScope::Key,
                retry_after: secs(2),
                quota: Quota::concurrency(3, true),
            },
            429,
            Some((
                r#""db.concurrency";q=3;qu="concurrent-requests""#,
                r#""db.concurrency";r=0;t=2"#,
            )),
        ),
        (
            LimitError::QueueFull {
                op: op(),
                scope: QueueScope::Global,
                retry_after: secs(1),
                quota: Quota::concurrency(20, false),
            },
            503,
            Some((
                r#""db.concurrency";q=20;qu="concurrent-requests""#,
                r#""db.concurrency";r=0;t=1"#,
            )),
        ),
        (
            LimitError::Overloaded {
                op: op(),
                retry_after: secs(1),
            },
            503,
            Some(("", "")),
        ),
        (
            LimitError::CircuitOpen {
                op: op(),
                retry_after: secs(30),
            },
            503,
            Some(("", "")),
        ),
        (LimitError::QueueTimeout { op: op() }, 408, None),
        (LimitError::Timeout { op: op() }, 504, None),
        (
            LimitError::MovedToBackground {
                op: op(),
                task_id: 7,
            },
            202,
            None,
        ),
    ];
    let n = cases.len();
    let errors: Vec<LimitError> = cases.iter().map(|c| c.0.clone()).collect();
    let app = Router::new().route(
        "/e/{i}",
        get(move |axum::extract::Path(i): axum::extract::Path<usize>| {
            let e = errors[i].clone();
            async move { e.into_response() }
        }),
    );
    let base = serve(app).await;
    let c = client();
    for (i, (err, status, rl)) in cases.into_iter().enumerate() {
        let resp = c.get(format!("{base}/e/{i}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{err:?}");
        let h = resp.headers().clone();
        assert_eq!(header(&h, "content-type"), "application/json");
        match rl {
            Some((policy, limit)) => {
                let retry: u64 = header(&h, "retry-after").parse().unwrap();
                assert!(retry >= 1, "{err:?}");
                if policy.is_empty() {
                    assert!(h.get("ratelimit-policy").is_none(), "{err:?}");
                    assert!(h.get("ratelimit").is_none(), "{err:?}");
                } else {
                    assert_eq!(header(&h, "ratelimit-policy"), policy, "{err:?}");
                    assert_eq!(header(&h, "ratelimit"), limit, "{err:?}");
                }
            }
            None => {
                assert!(h.get("retry-after").is_none(), "{err:?}");
                assert!(h.get("ratelimit").is_none(), "{err:?}");
            }
        }
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], err.code());
        assert_eq!(body["message"], err.to_string());
        assert_eq!(
            body["retry_after"],
            match err.retry_after() {
                Some(d) => serde_json::json!(d.as_secs() + u64::from(d.subsec_nanos() > 0)),
                None => Value::Null,
            }
        );
        if status == 202 {
            assert_eq!(header(&h, "location"), "/monitoring/background/7");
            assert_eq!(body["task_id"], 7);
        }
    }
    assert_eq!(n, 8);
}

#[tokio::test]
async fn a_real_rate_limit_answers_429_with_its_quota() {
    let reg = registry();
    reg.configure(
        "slow-api",
        limiter::OpConfig::default().with_rate("2/s").unwrap(),
    )
    .unwrap();
    let app = Router::new().route(
        "/x",
        get(move || async move {
            reg.op("slow-api")
                .run(None, || async { Ok::<_, LimitError>("ok") })
                .await
                .into_response()
        }),
    );
    let base = serve(app).await;
    let c = client();
    let mut last = None;
    for _ in 0..4 {
        last = Some(c.get(format!("{base}/x")).send().await.unwrap());
    }
    let resp = last.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        header(resp.headers(), "ratelimit-policy"),
        r#""slow-api";q=2;w=1"#
    );
    assert_eq!(header(resp.headers(), "retry-after"), "1");
}

fn ok_app(layer: LimiterLayer) -> Router {
    Router::new()
        .route("/login", post(|| async { "ok" }).get(|| async { "ok" }))
        .route("/api/{*rest}", get(|| async { "ok" }))
        .route("/hourly", get(|| async { "ok" }))
        .route("/daily", get(|| async { "ok" }))
        .route("/users/{id}", get(|| async { "ok" }))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(layer)
}

#[tokio::test]
async fn head_is_limited_by_a_get_rule() {
    let layer = LimiterLayer::builder()
        .registry(registry())
        .rule(
            Rule::new("/users/{id}")
                .methods([Method::GET])
                .per_minute(2),
        )
        .build()
        .unwrap();
    let base = serve(ok_app(layer)).await;
    let c = client();
    let ok = count_status(5, StatusCode::OK, |_| c.head(format!("{base}/users/1"))).await;
    assert_eq!(ok, 2, "axum runs the GET handler for HEAD");
}

#[tokio::test]
async fn rules_apply_by_path_method_class_and_window() {
    let reg = registry();
    let keys = KeySet::new()
        .key("key-a", "a")
        .key("key-b", "b")
        .key("key-c", "c");
    let layer = LimiterLayer::builder()
        .registry(reg)
        .api_keys("x-api-key", keys)
        .rule(Rule::new("/login").methods([Method::POST]).per_minute(2))
        .rule(
            Rule::new("/api/{*rest}")
                .classes([ClientClass::Api])
                .per_second(4),
        )
        .rule(Rule::new("/hourly").per_hour(3))
        .rule(Rule::new("/daily").per_day(2))
        .rule(
            Rule::new("*")
                .classes([ClientClass::Anonymous])
                .per_minute(5),
        )
        .build()
        .unwrap();
    let base = serve(ok_app(layer)).await;
    let c = client();

    // Method: POST /login has its own 2/min; GET /login falls to the
    // anonymous catch-all (5/min).
    let post_ok = count_status(4, StatusCode::OK, |_| c.post(format!("{base}/login"))).await;
    assert_eq!(post_ok, 2);
    let resp = c.post(format!("{base}/login")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(
        header(resp.headers(), "ratelimit-policy"),
        r#""POST /login";q=2;w=60"#
    );

    // Class: API keys get their own rule and each key its own budget;
    // anonymous callers of /api fall to the catch-all.
    let key_a = [("x-api-key", "key-a")];
    let key_b = [("x-api-key", "key-b")];
    assert_eq!(
        count_ok(&c, &format!("{base}/api/v1/things"), &key_a, 6).await,
        4
    );
    assert_eq!(
        count_ok(&c, &format!("{base}/api/v1/things"), &key_b, 6).await,
        4
    );
    let resp = c
        .get(format!("{base}/api/x"))
        .header("x-api-key", "key-a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(resp.headers(), "ratelimit-policy"),
        r#""/api/{*rest}";q=4;w=1"#
    );

    // Windows: per hour and per day advertise their windows.
    assert_eq!(count_ok(&c, &format!("{base}/hourly"), &[], 5).await, 3);
    let resp = c.get(format!("{base}/hourly")).send().await.unwrap();
    assert_eq!(
        header(resp.headers(), "ratelimit-policy"),
        r#""/hourly";q=3;w=3600"#
    );
    assert_eq!(count_ok(&c, &format!("{base}/daily"), &[], 5).await, 2);
    let resp = c.get(format!("{base}/daily")).send().await.unwrap();
    assert_eq!(
        header(resp.headers(), "ratelimit-policy"),
        r#""/daily";q=2;w=86400"#
    );

    // The anonymous catch-all: GET /login and /users/{id} share 5/min.
    let login = count_ok(&c, &format!("{base}/login"), &[], 3).await;
    let users = count_ok(&c, &format!("{base}/users/1"), &[], 5).await;
    assert_eq!(login + users, 5);

    // Admitted responses say what is left.
    let resp = c
        .get(format!("{base}/api/z"))
        .header("x-api-key", "key-c")
        .send()
        .await
        .unwrap();
    assert_eq!(header(resp.headers(), "ratelimit"), r#""/api/{*rest}";r=3"#);
}

#[tokio::test]
async fn limits_hold_across_clones_of_the_layer() {
    let reg = registry();
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("*").per_minute(10))
        .build()
        .unwrap();
    // Two servers (think: two workers) built from clones of one layer.
    let a = serve(ok_app(layer.clone())).await;
    let b = serve(ok_app(layer)).await;
    let c = client();
    let ok = count_status(30, StatusCode::OK, |i| {
        let base = if i % 2 == 0 { &a } else { &b };
        c.get(format!("{base}/users/{i}"))
    })
    .await;
    assert_eq!(ok, 10, "one budget for the client across both services");
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let c = client();
    // The test's peer (127.0.0.1) is not a trusted proxy: a spoofed
    // X-Forwarded-For changes nothing.
    let untrusting = LimiterLayer::builder()
        .registry(registry())
        .rule(Rule::new("*").per_minute(3))
        .trust_proxies(["10.0.0.0/8"])
        .build()
        .unwrap();
    let base = serve(ok_app(untrusting)).await;
    let ok = count_status(6, StatusCode::OK, |i| {
        c.get(format!("{base}/users/1"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
    })
    .await;
    assert_eq!(
        ok, 3,
        "spoofed addresses from an untrusted peer are ignored"
    );

    // When the peer is a trusted proxy, each forwarded client has its own
    // budget, taken from the rightmost untrusted hop.
    let reg = registry();
    let trusting = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("*").per_minute(3))
        .trust_proxies(["127.0.0.1"])
        .build()
        .unwrap();
    let base = serve(ok_app(trusting)).await;
    for i in 0..3 {
        let client_ip = format!("198.51.100.{i}");
        let ok = count_ok(
            &c,
            &format!("{base}/users/1"),
            &[("x-forwarded-for", &client_ip)],
            5,
        )
        .await;
        assert_eq!(ok, 3, "client {client_ip}");
    }
    // A client that prepends a fake address is still itself.
    let ok = count_ok(
        &c,
        &format!("{base}/users/1"),
        &[("x-forwarded-for", "1.1.1.1, 198.51.100.0")],
        2,
    )
    .await;
    assert_eq!(ok, 0, "198.51.100.0 used up its budget above");
    let usage: Value = c
        .get(format!(
            "{}/monitoring/limits/ip:198.51.100.1",
            serve(monitoring(reg, Some("t"))).await
        ))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["limits"][0]["source"], "rule *");
    assert_eq!(usage["limits"][0]["available"], 0);
}

fn monitoring(reg: &'static Registry, token: Option<&str>) -> Router {
    let mut m = Monitoring::new().registry(reg);
    if let Some(t) = token {
        m = m.admin_token(t);
    }
    m.router().unwrap()
}

#[tokio::test]
async fn internal_callers_bypass_only_with_the_right_secret() {
    let reg = registry();
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("*").per_minute(2))
        .internal_secret("x-internal-secret", "let-me-in")
        .build()
        .unwrap();
    let base = serve(ok_app(layer)).await;
    let c = client();
    let url = format!("{base}/users/1");
    assert_eq!(
        count_ok(&c, &url, &[("x-internal-secret", "let-me-in")], 10).await,
        10
    );
    // Wrong, truncated, missing secret, or a bare "internal" header: limited
    // like anyone (the budget of 2 was not touched by the bypass).
    assert_eq!(
        count_ok(&c, &url, &[("x-internal-secret", "let-me-out")], 1).await,
        1
    );
    assert_eq!(
        count_ok(&c, &url, &[("x-internal-secret", "let-me-i")], 1).await,
        1
    );
    assert_eq!(
        count_ok(&c, &url, &[("x-internal-service", "true")], 3).await,
        0
    );
    assert_eq!(count_ok(&c, &url, &[], 2).await, 0);
    let rule = &reg.monitor().rules()[0];
    assert_eq!(rule.bypassed, 10);
    assert_eq!((rule.allowed, rule.rejected), (2, 5));
    assert!(LimiterLayer::builder()
        .internal_secret("x-internal-secret", "")
        .build()
        .is_err());
}

#[tokio::test]
async fn shadow_rules_count_but_refuse_nothing() {
    let reg = registry();
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("/users/{id}").per_minute(2).shadow(true))
        .build()
        .unwrap();
    let base = serve(ok_app(layer)).await;
    let c = client();
    assert_eq!(count_ok(&c, &format!("{base}/users/9"), &[], 6).await, 6);
    let rule = &reg.monitor().rules()[0];
    assert!(rule.shadow);
    assert_eq!(
        (rule.allowed, rule.shadow_rejected, rule.rejected),
        (2, 4, 0)
    );
}

#[tokio::test]
async fn route_metrics_are_keyed_by_template_not_url() {
    let reg = registry();
    let layer = LimiterLayer::builder().registry(reg).build().unwrap();
    let base = serve(ok_app(layer).merge(monitoring(reg, None))).await;
    let c = client();
    for id in 0..40 {
        get_status(&c, &format!("{base}/users/{id}"), &[]).await;
    }
    get_status(&c, &format!("{base}/no/such/path/123"), &[]).await;
    let body: Value = c
        .get(format!("{base}/monitoring/routes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let routes = body["routes"].as_array().unwrap();
    let names: Vec<String> = routes
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["route"].as_str().unwrap()
            )
        })
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["GET /users/{id}", "GET <unmatched>"]);
    let users = routes.iter().find(|r| r["route"] == "/users/{id}").unwrap();
    assert_eq!(users["requests"], 40);
    assert_eq!(users["by_code"]["200"], 40);
    let unmatched = routes.iter().find(|r| r["route"] == "<unmatched>").unwrap();
    assert_eq!(unmatched["by_code"]["404"], 1);
}

#[tokio::test]
async fn alert_lifecycle_and_admin_token_over_http() {
    let reg = registry();
    let mut cfg = MonitorConfig::default();
    cfg.thresholds.min_calls = 5;
    // Raised and called critical at the first evaluation.
    cfg.thresholds.sustain = Duration::ZERO;
    cfg.thresholds.critical_after = Duration::ZERO;
    reg.monitor().configure(cfg).unwrap();
    let layer = LimiterLayer::builder().registry(reg).build().unwrap();
    let app = Router::new()
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(layer)
        .merge(monitoring(reg, Some("tok3n")));
    let base = serve(app).await;
    let c = client();
    for _ in 0..10 {
        get_status(&c, &format!("{base}/broken"), &[]).await;
    }
    let alerts: Value = c
        .get(format!("{base}/monitoring/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alert = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "error_rate")
        .expect("an error-rate alert")
        .clone();
    assert_eq!(alert["level"], "critical");
    assert_eq!(alert["state"], "active");
    assert_eq!(alert["subject"], "route GET /broken");
    assert!(
        alert["message"].as_str().unwrap().contains("100.0%"),
        "{alert}"
    );
    let id = alert["id"].as_u64().unwrap();

    let ack = format!("{base}/monitoring/alerts/{id}/acknowledge");
    assert_eq!(c.post(&ack).send().await.unwrap().status(), 401);
    let wrong = c.post(&ack).bearer_auth("tok3m").send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    let ok: Value = c
        .post(&ack)
        .bearer_auth("tok3n")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["state"], "acknowledged");
    assert!(ok["acknowledged_ms"].as_u64().is_some());

    let resolve = format!("{base}/monitoring/alerts/{id}/resolve");
    let done: Value = c
        .post(&resolve)
        .bearer_auth("tok3n")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (done["state"].as_str(), done["resolution"].as_str()),
        (Some("resolved"), Some("manual"))
    );
    assert_eq!(
        c.post(&resolve)
            .bearer_auth("tok3n")
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    let missing = format!("{base}/monitoring/alerts/999999/acknowledge");
    assert_eq!(
        c.post(&missing)
            .bearer_auth("tok3n")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let bad = format!("{base}/monitoring/alerts/abc/acknowledge");
    assert_eq!(
        c.post(&bad)
            .bearer_auth("tok3n")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    let resolved: Value = c
        .get(format!("{base}/monitoring/alerts?state=resolved"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(resolved["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id));
    assert_eq!(
        c.get(format!("{base}/monitoring/alerts?state=nope"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    // The other mutating endpoints need the token too.
    for path in [
        "/monitoring/breakers/db/reset",
        "/monitoring/limits/ip:1.2.3.4/reset",
    ] {
        assert_eq!(
            c.post(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            401,
            "{path}"
        );
    }
    assert_eq!(
        c.post(format!("{base}/monitoring/breakers/nope/reset"))
            .bearer_auth("tok3n")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        reg.monitor()
            .alerts()
            .iter()
            .filter(|a| a.kind == AlertKind::ErrorRate)
            .count(),
        1
    );
}

#[tokio::test]
async fn protected_reads_need_the_token_but_the_page_does_not() {
    let reg = registry();
    let app = Monitoring::new()
        .registry(reg)
        .admin_token("r3ad")
        .protect_reads(true)
        .router()
        .unwrap();
    let base = serve(app).await;
    let c = client();
    for path in [
        "/monitoring/summary",
        "/monitoring/routes",
        "/monitoring/ops",
        "/metrics",
    ] {
        assert_eq!(
            c.get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            401,
            "{path}"
        );
        let wrong = c
            .get(format!("{base}{path}"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403, "{path}");
        let right = c
            .get(format!("{base}{path}"))
            .bearer_auth("r3ad")
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200, "{path}");
    }
    let page = c
        .get(format!("{base}/monitoring/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("latency-chart"));
    assert!(Monitoring::new().protect_reads(true).router().is_err());

    // Without a token, writes are off unless opened on purpose: a client
    // reaching the router cannot reset its own limits.
    let closed = serve(Monitoring::new().registry(reg).router().unwrap()).await;
    let r = c
        .post(format!("{closed}/monitoring/limits/ip:127.0.0.1/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let open = serve(
        Monitoring::new()
            .registry(reg)
            .allow_unauthenticated_writes(true)
            .router()
            .unwrap(),
    )
    .await;
    let r = c
        .post(format!("{open}/monitoring/limits/ip:127.0.0.1/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(Monitoring::new().admin_token("").router().is_err());
}

#[tokio::test]
async fn prometheus_exposition_is_valid_for_a_scraper() {
    let reg = registry();
    reg.op("db");
    reg.op("db")
        .run(None, || async { Ok::<_, LimitError>(()) })
        .await
        .unwrap();
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("*").name("all \"quoted\"").per_minute(100))
        .build()
        .unwrap();
    let base = serve(ok_app(layer).merge(monitoring(reg, None))).await;
    let c = client();
    for id in 0..12 {
        get_status(&c, &format!("{base}/users/{id}"), &[]).await;
    }
    let resp = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(header(resp.headers(), "content-type").starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    // A real parser (a pest grammar of the exposition format): label
    // values hold `{`, `}` and escaped quotes.
    let parsed = parse_prometheus(&text).expect("valid exposition");
    let family = |name: &str| {
        parsed
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"))
    };
    let labels = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let requests = family("limiter_http_requests_total");
    assert_eq!(requests.family_type, PrometheusType::Counter);
    assert_eq!(requests.get_label_names(), ["method", "route", "status"]);
    let sample = requests
        .get_sample_by_label_values(&labels(&["GET", "/users/{id}", "200"]))
        .expect("route counter by template");
    assert!(matches!(&sample.value, PrometheusValue::Counter(c) if c.value.as_f64() == 12.0));
    assert_eq!(
        requests.iter_samples().count(),
        1,
        "raw URLs never become labels"
    );

    let hist = family("limiter_http_request_duration_seconds");
    assert_eq!(hist.family_type, PrometheusType::Histogram);
    let sample = hist
        .get_sample_by_label_values(&labels(&["GET", "/users/{id}"]))
        .expect("route latency histogram");
    let PrometheusValue::Histogram(h) = &sample.value else {
        panic!("not a histogram");
    };
    assert!(h.buckets.len() >= 10);
    assert!(h.buckets.windows(2).all(|w| {
        w[0].upper_bound < w[1].upper_bound && w[0].count.as_f64() <= w[1].count.as_f64()
    }));
    let last = h.buckets.last().unwrap();
    assert!(last.upper_bound.is_infinite());
    assert_eq!(last.count.as_f64(), 12.0);
    assert_eq!(h.count, Some(12));
    assert!(h.sum.as_ref().unwrap().as_f64() > 0.0);

    let op_hist = family("limiter_op_duration_seconds");
    let sample = op_hist
        .get_sample_by_label_values(&labels(&["db"]))
        .expect("op latency histogram");
    assert!(matches!(&sample.value, PrometheusValue::Histogram(h) if h.count == Some(1)));

    let rules = family("limiter_rule_decisions_total");
    let sample = rules
        .iter_samples()
        .find(|s| s.get_labelset().unwrap().get_label_value("decision") == Some("allowed"))
        .expect("rule decisions");
    // The quotes of the name were escaped; the parser reads them back.
    let rule = sample
        .get_labelset()
        .unwrap()
        .get_label_value("rule")
        .map(str::to_owned);
    assert_eq!(rule.as_deref(), Some(r#"all "quoted""#));
    assert!(matches!(&sample.value, PrometheusValue::Counter(c) if c.value.as_f64() == 12.0));
    assert_eq!(
        family("limiter_op_breaker_state").family_type,
        PrometheusType::Gauge
    );
}

#[tokio::test]
async fn client_limits_can_be_read_and_reset() {
    let reg = registry();
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("/users/{id}").per_minute(2))
        .build()
        .unwrap();
    let base = serve(ok_app(layer).merge(monitoring(reg, Some("t")))).await;
    let c = client();
    let url = format!("{base}/users/1");
    assert_eq!(count_ok(&c, &url, &[], 3).await, 2);
    let key = "ip:127.0.0.1";
    let usage: Value = c
        .get(format!("{base}/monitoring/limits/{key}"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["key"], key);
    assert_eq!(usage["limits"][0]["available"], 0);
    let reset: Value = c
        .post(format!("{base}/monitoring/limits/{key}/reset"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reset["reset"], 1);
    assert_eq!(
        count_ok(&c, &url, &[], 3).await,
        2,
        "a fresh budget after the reset"
    );
}

/// A rule's `RateLimit-Policy` names every window under a stable name on
/// every response, admitted or refused; `RateLimit` names the window it
/// speaks of and never promises more than its quota (a burst beyond it is
/// not promised).
#[tokio::test]
async fn every_window_is_advertised_and_r_never_exceeds_q() {
    let layer = LimiterLayer::builder()
        .registry(registry())
        .rule(
            Rule::new("*")
                .name("anon")
                .per_second(2)
                .burst(4)
                .per_minute(5),
        )
        .build()
        .unwrap();
    let base = serve(ok_app(layer)).await;
    let c = client();
    let policy = r#""anon/1s";q=2;w=1, "anon/60s";q=5;w=60"#;
    let quota = |name: &str| match name {
        "\"anon/1s\"" => 2,
        "\"anon/60s\"" => 5,
        other => panic!("unknown policy {other}"),
    };
    let mut seen = Vec::new();
    for pause in [0, 0, 0, 0, 0, 600, 600] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let resp = c.get(format!("{base}/users/1")).send().await.unwrap();
        let h = resp.headers();
        assert_eq!(header(h, "ratelimit-policy"), policy);
        let limit = header(h, "ratelimit");
        let name = limit.split(';').next().unwrap();
        let r = remaining(limit);
        assert!(r <= quota(name), "r={r} above q in {limit}");
        seen.push((resp.status().as_u16(), name.to_owned()));
    }
    let statuses: Vec<u16> = seen.iter().map(|s| s.0).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 200, 429]);
    assert_eq!(seen[4].1, "\"anon/1s\"", "the burst ran out first");
    assert_eq!(seen[6].1, "\"anon/60s\"", "then the minute's quota");
}

/// A quota is what a client gets: `per_minute(300)` under 12 requests a
/// second for three minutes admits at most 300 in every 60 s span, and
/// every response names the window with `r` never above `q`.
#[tokio::test(start_paused = true)]
async fn a_rule_admits_at_most_its_quota_in_every_span() {
    use tower::ServiceExt;
    let layer = LimiterLayer::builder()
        .registry(registry())
        .rule(Rule::new("*").name("minute").per_minute(300))
        .build()
        .unwrap();
    let app = ok_app(layer);
    let start = tokio::time::Instant::now();
    let mut admitted: Vec<Duration> = Vec::new();
    for _ in 0..(3 * 60 * 12) {
        let req = axum::http::Request::get("/users/1")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let h = resp.headers();
        assert_eq!(header(h, "ratelimit-policy"), r#""minute";q=300;w=60"#);
        let limit = header(h, "ratelimit");
        let r = remaining(limit);
        assert!(r <= 300, "{limit}");
        match resp.status().as_u16() {
            200 => admitted.push(start.elapsed()),
            429 => assert!(h.get("retry-after").is_some()),
            other => panic!("status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(1000 / 12)).await;
    }
    let mut most = 0;
    let mut first = 0;
    for last in 0..admitted.len() {
        while admitted[last] - admitted[first] >= Duration::from_secs(60) {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    assert!(most <= 300, "{most} admitted in one 60 s span");
    assert!(
        admitted.len() >= 3 * 280,
        "and close to it: {}",
        admitted.len()
    );
}

/// One client's limits tell whether a key or token was used and how much
/// of its budget is left: they are read with the admin token only, even
/// where the other reads are open.
#[tokio::test]
async fn one_clients_limits_need_the_admin_token() {
    let reg = registry();
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("/users/{id}").per_minute(2))
        .build()
        .unwrap();
    let with_token = serve(ok_app(layer).merge(monitoring(reg, Some("t")))).await;
    let without_token = serve(monitoring(reg, None)).await;
    let c = client();
    assert_eq!(
        count_ok(&c, &format!("{with_token}/users/1"), &[], 1).await,
        1
    );
    let path = "/monitoring/limits/ip:127.0.0.1";
    let status = |r: reqwest::Response| r.status().as_u16();
    let anonymous = c.get(format!("{with_token}{path}")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"limiter\""
    );
    let wrong = c.get(format!("{with_token}{path}")).bearer_auth("x");
    assert_eq!(status(wrong.send().await.unwrap()), 403);
    let right = c.get(format!("{with_token}{path}")).bearer_auth("t");
    let usage: Value = right.send().await.unwrap().json().await.unwrap();
    assert_eq!(usage["limits"][0]["available"], 1, "{usage}");
    // Without a configured token the endpoint is off; aggregates stay open.
    let off = c
        .get(format!("{without_token}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status().as_u16(), 403);
    let body: Value = off.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("admin token"),
        "{body}"
    );
    let summary = c.get(format!("{without_token}/monitoring/summary"));
    assert_eq!(status(summary.send().await.unwrap()), 200);
}

/// The dashboard runs only its own inline script and style, talks only to
/// the router and cannot be framed.
#[tokio::test]
async fn the_dashboard_sends_a_content_security_policy() {
    let base = serve(monitoring(registry(), None)).await;
    let r = client()
        .get(format!("{base}/monitoring/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    let page = r.text().await.unwrap();
    for directive in [
        "default-src 'none'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    // The page holds exactly the script and style the policy names.
    assert_eq!(page.matches("<script").count(), 1);
    assert_eq!(page.matches("<style").count(), 1);
    let script = csp.split("script-src '").nth(1).unwrap();
    assert!(
        script.starts_with("sha256-") && script.contains("'; "),
        "{csp}"
    );
}

#[tokio::test]
async fn bad_layer_settings_are_errors_naming_the_value() {
    let err = |b: limiter::http::LimiterLayerBuilder| b.build().unwrap_err().to_string();
    assert_eq!(
        err(LimiterLayer::builder().rule(Rule::new("/a/{id").per_second(1))),
        "op `rule /a/{id`: pattern = /a/{id: segment `{id` opens `{` without closing it"
    );
    assert!(err(LimiterLayer::builder().rule(Rule::new("/a"))).contains("at least one limit"));
    assert!(
        err(LimiterLayer::builder().rule(Rule::new("/a").per_minute(0))).contains("per_minute = 0")
    );
    assert!(err(LimiterLayer::builder().trust_proxies(["not-an-ip"])).contains("not-an-ip"));
    assert!(err(LimiterLayer::builder()
        .rule(Rule::new("/a").per_second(1))
        .rule(Rule::new("/a").per_second(2)))
    .contains("two rules have this name"));
}

#[tokio::test]
async fn refusing_a_request_with_an_unread_body_closes_the_connection() {
    let layer = LimiterLayer::builder()
        .registry(registry())
        .rule(Rule::new("*").per_minute(1))
        .build()
        .unwrap();
    let base = serve(ok_app(layer)).await;
    let c = client();
    let first = c
        .post(format!("{base}/login"))
        .body(vec![7u8; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    // Refused with its body unread: the server says the connection ends,
    // so a pooled client does not send the next request into a closed
    // socket.
    for _ in 0..20 {
        let refused = c
            .post(format!("{base}/login"))
            .body(vec![7u8; 64 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 429);
        assert_eq!(header(refused.headers(), "connection"), "close");
    }
    let get = c.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(get.status(), 429);
    assert!(
        get.headers().get("connection").is_none(),
        "no body, the connection stays"
    );
}

/// A rule is an op of the layer's registry, named by the rule: a run-time
/// override changes the rule's limit (and what its headers say), its calls
/// and refusals are in the op metric families, and a second layer with a
/// rule of the same name gets an op of its own (`name#2`).
#[tokio::test]
async fn a_rule_is_an_op_configured_and_monitored_like_any() {
    use limiter::OpConfig;
    let reg = registry();
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("/users/{id}").name("visitors").per_minute(5))
        .build()
        .unwrap();
    let op = reg.op("visitors");
    let cfg = op.config();
    assert_eq!(cfg.rate_per_key.as_ref().unwrap().windows[0].count(), 5);
    let base = serve(ok_app(layer).merge(monitoring(reg, None))).await;
    let c = client();
    let url = format!("{base}/users/1");
    assert_eq!(count_ok(&c, &url, &[], 8).await, 5);

    // Raised at run time: the rule's per-client table starts afresh under
    // the new windows (as any op's per-key table does when they change).
    reg.configure(
        "visitors",
        OpConfig::default().with_rate_per_key("7/min").unwrap(),
    )
    .unwrap();
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the raised limit admits again");
    assert_eq!(
        header(resp.headers(), "ratelimit-policy"),
        r#""visitors";q=7;w=60"#
    );
    assert_eq!(count_ok(&c, &url, &[], 8).await, 6, "7 in all");

    let snap = reg.op("visitors").snapshot();
    assert_eq!(snap.counters.calls, 17);
    assert_eq!(snap.counters.admitted, 12);
    assert_eq!(snap.counters.rejected_rate_limited, 5);
    assert_eq!(snap.counters.succeeded, 12);

    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let parsed = parse_prometheus(&text).expect("valid exposition");
    let rejected = parsed.families.get("limiter_op_rejected_total").unwrap();
    let labels = ["visitors".to_string(), "rate_limited".to_string()];
    let sample = rejected
        .get_sample_by_label_values(&labels)
        .expect("the rule's refusals by op");
    assert!(matches!(&sample.value, PrometheusValue::Counter(c) if c.value.as_f64() == 5.0));

    // Turned off at run time: the rule limits nothing.
    reg.configure(
        "visitors",
        OpConfig {
            enabled: Some(false),
            ..OpConfig::default()
        },
    )
    .unwrap();
    assert_eq!(count_ok(&c, &url, &[], 3).await, 3);

    // A second layer on the same registry: its own op, its own budget.
    let second = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("*").name("visitors").per_minute(2))
        .build()
        .unwrap();
    let base2 = serve(ok_app(second)).await;
    assert_eq!(count_ok(&c, &format!("{base2}/users/1"), &[], 4).await, 2);
    assert_eq!(reg.op("visitors#2").snapshot().counters.admitted, 2);
}

/// An override that breaks the rule is refused like any op's, naming the
/// field; a configuration naming the rule before the layer exists applies
/// once it is built.
#[tokio::test]
async fn rule_overrides_are_checked_and_may_come_first() {
    use limiter::config::settings_from_vars;
    let reg = registry();
    let settings = settings_from_vars(
        [("LIMITER_OP_LOGIN_RATE_PER_KEY", "2/min")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    reg.apply(&settings).unwrap();
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("/login").name("login").per_minute(10))
        .build()
        .unwrap();
    let base = serve(ok_app(layer)).await;
    let c = client();
    assert_eq!(
        count_ok(&c, &format!("{base}/login"), &[], 5).await,
        2,
        "the environment wins"
    );
    let err = reg
        .configure(
            "login",
            limiter::OpConfig {
                burst: Some(3),
                ..limiter::OpConfig::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("burst") && err.contains("sliding_exact"),
        "{err}"
    );
}

/// The layer wraps any HTTP service, not only axum's: responses with
/// another body type come out with axum's body, and the inner service's
/// errors pass through as they are (counted as server failures).
#[tokio::test]
async fn the_layer_wraps_any_http_service() {
    use axum::extract::ConnectInfo;
    use axum::http::Request;
    use tower::{service_fn, Layer, ServiceExt};

    let layer = LimiterLayer::builder()
        .registry(registry())
        .rule(Rule::new("*").name("plain").per_minute(3))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        if req.uri().path() == "/fail" {
            Err(std::io::Error::other("backend down"))
        } else {
            Ok(axum::http::Response::new(String::from("hello")))
        }
    }));
    let req = |path: &str| {
        let mut r = Request::builder().uri(path).body(()).unwrap();
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 9))));
        r
    };
    let resp = svc.clone().oneshot(req("/a")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "ratelimit"), r#""plain";r=2"#);
    let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"hello");
    let err = svc.clone().oneshot(req("/fail")).await.unwrap_err();
    assert_eq!(err.to_string(), "backend down");
    assert_eq!(svc.clone().oneshot(req("/a")).await.unwrap().status(), 200);
    let refused = svc.clone().oneshot(req("/a")).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(refused.headers(), "ratelimit-policy"),
        r#""plain";q=3;w=60"#
    );
}

/// Readiness follows the breakers: 200, then 503 naming the op while its
/// breaker is open, then 200 once it closes; liveness stays 200.
#[tokio::test]
async fn health_is_503_while_a_breaker_is_open() {
    use limiter::{BreakerConfig, OpConfig};
    let reg = registry();
    reg.configure(
        "payments",
        OpConfig {
            breaker: BreakerConfig {
                enabled: Some(true),
                failure_rate: Some(0.5),
                min_calls: Some(2),
                window: Some(2),
                recovery: Some(Duration::from_millis(200)),
                ..BreakerConfig::default()
            },
            ..OpConfig::default()
        },
    )
    .unwrap();
    let op = reg.op("payments");
    let base = serve(monitoring(reg, Some("admin"))).await;
    let c = client();
    let health = |c: reqwest::Client| {
        let url = format!("{base}/monitoring/health");
        async move {
            let r = c.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            assert_eq!(header(r.headers(), "cache-control"), "no-store");
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = health(c.clone()).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("ok")),
        "{body}"
    );

    for _ in 0..2 {
        let _ = op
            .run(None, || async {
                Err::<(), _>(LimitError::Timeout { op: "body".into() })
            })
            .await;
    }
    let (status, body) = health(c.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    let reason = &body["reasons"][0];
    assert_eq!(
        (&reason["kind"], &reason["op"]),
        (&Value::from("breaker_open"), &Value::from("payments"))
    );
    let live = c
        .get(format!("{base}/monitoring/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200, "liveness does not follow dependencies");

    // After the recovery time a successful probe closes the breaker.
    tokio::time::sleep(Duration::from_millis(250)).await;
    op.run(None, || async { Ok::<_, LimitError>(()) })
        .await
        .unwrap();
    let (status, body) = health(c.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reasons"], Value::Array(vec![]));
}
