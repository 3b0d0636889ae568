//! Redis-backed rate limits against a real Redis: the shared one on
//! 127.0.0.1:6379 when it answers (`.ci/run` starts it), else a private one
//! of this test process (`support::redis_url`), and servers of the test's
//! own on spare ports for the fault tests.
#![cfg(feature = "redis")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use limiter::config::RateSpec;
use limiter::redis::{BackendError, Check, RedisBackend, RedisConfig, Take};
use limiter::spec::parse_rates;
use limiter::Algorithm;

mod support;

use support::redis_url;

/// A prefix no other test or run shares.
fn prefix(name: &str) -> String {
    format!(
        "limiter-test-{name}-{}-{}",
        std::process::id(),
        fastrand_u64()
    )
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

fn backend(prefix: &str, url: &str) -> RedisBackend {
    RedisBackend::new(RedisConfig {
        prefix: prefix.into(),
        ..RedisConfig::new(url)
    })
    .unwrap()
}

fn spec(rates: &str, burst: Option<u32>, algorithm: Algorithm) -> RateSpec {
    RateSpec {
        windows: parse_rates(rates).unwrap(),
        burst,
        algorithm,
    }
}

async fn admitted(b: &RedisBackend, op: &str, key: Option<u64>, s: &RateSpec, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if let Check::Admitted { .. } = b.check(op, key, s, Take::Tokens(1)).await.unwrap() {
            ok += 1;
        }
    }
    ok
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_instances_share_one_gcra_limit_exactly() {
    let p = prefix("gcra");
    let (a, b) = (backend(&p, redis_url()), backend(&p, redis_url()));
    // 5 a minute with a burst of 5: within this test nothing refills.
    let s = spec("5/min", Some(5), Algorithm::TokenBucket);
    let mut ok = 0;
    for i in 0..40 {
        let inst = if i % 2 == 0 { &a } else { &b };
        if let Check::Admitted { .. } = inst.check("api", None, &s, Take::Tokens(1)).await.unwrap()
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 5, "the two instances together admit what one would");
    match a.check("api", None, &s, Take::Tokens(1)).await.unwrap() {
        Check::Limited { wait, window } => {
            assert_eq!(window, 0);
            assert!(
                wait > Duration::from_secs(11) && wait <= Duration::from_secs(12),
                "{wait:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // At a rate: over a span t, burst + rate·t, within one request.
    let s = spec("50/s", Some(1), Algorithm::TokenBucket);
    let start = Instant::now();
    let mut ok = 0;
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(600) {
        let inst = if i % 2 == 0 { &a } else { &b };
        if let Check::Admitted { .. } = inst.check("fast", None, &s, Take::Tokens(1)).await.unwrap()
        {
            ok += 1;
        }
        i += 1;
    }
    let expected = 1.0 + 50.0 * start.elapsed().as_secs_f64();
    // Never more than the rate allows; fewer only when a check was held
    // up (a bucket of 1 loses the tokens of a gap longer than 20 ms, as on
    // a machine busy building), so that side has room.
    assert!(
        ok as f64 <= expected + 1.5 && ok as f64 >= expected * 0.8,
        "admitted {ok} of {i}, expected {expected:.1}"
    );
}

#[tokio::test]
async fn per_key_limits_are_separate_and_named_alike_by_every_instance() {
    let p = prefix("keys");
    let (a, b) = (backend(&p, redis_url()), backend(&p, redis_url()));
    let s = spec("3/min", None, Algorithm::TokenBucket);
    let alice = a.key_name(&"alice");
    assert_eq!(alice, b.key_name(&"alice"), "stable across instances");
    assert_ne!(alice, a.key_name(&"bob"));
    assert_eq!(admitted(&a, "db", Some(alice), &s, 2).await, 2);
    assert_eq!(admitted(&b, "db", Some(alice), &s, 5).await, 1);
    assert_eq!(admitted(&b, "db", Some(a.key_name(&"bob")), &s, 5).await, 3);
}

#[tokio::test]
async fn several_windows_all_must_admit() {
    let p = prefix("windows");
    let b = backend(&p, redis_url());
    // Plenty per second, 4 per minute.
    let s = spec("100/s, 4/min", Some(100), Algorithm::TokenBucket);
    assert_eq!(admitted(&b, "op", None, &s, 10).await, 4);
    match b.check("op", None, &s, Take::Tokens(1)).await.unwrap() {
        Check::Limited { window, .. } => assert_eq!(window, 1, "the minute window refused"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sliding_window_counts_the_previous_window_by_overlap() {
    let p = prefix("sliding");
    let b = backend(&p, redis_url());
    let s = spec("10/1s", None, Algorithm::SlidingWindow);
    // Align to the start of a server second so the burst fits in one window.
    let mut con = raw(redis_url()).await;
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
    let _ = secs;
    tokio::time::sleep(Duration::from_micros(1_000_000 - micros + 20_000)).await;
    assert_eq!(admitted(&b, "op", None, &s, 15).await, 10);
    match b.check("op", None, &s, Take::Tokens(1)).await.unwrap() {
        // Past the window's end, until the 10 of this window weigh 9.
        Check::Limited { wait, .. } => assert!(
            wait > Duration::from_millis(1_000) && wait <= Duration::from_millis(1_100),
            "{wait:?}"
        ),
        other => panic!("{other:?}"),
    }
    // Half-way through the next second the previous 10 weigh about 5.
    tokio::time::sleep(Duration::from_millis(1_500 - 60)).await;
    let ok = admitted(&b, "op", None, &s, 15).await;
    assert!((4..=6).contains(&ok), "admitted {ok}");

    // Fixed windows reset at the boundary.
    let s = spec("3/1s", None, Algorithm::FixedWindow);
    assert!(admitted(&b, "fixed", None, &s, 5).await <= 3);
}

#[tokio::test]
async fn keys_carry_expiry_and_disappear_when_idle() {
    let p = prefix("expiry");
    let b = backend(&p, redis_url());
    let s = spec("10/s", Some(1), Algorithm::TokenBucket);
    b.check("op", None, &s, Take::Tokens(1)).await.unwrap();
    let key = format!("{{{p}:op}}:g0");
    let mut con = raw(redis_url()).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!((1..=200).contains(&ttl), "ttl {ttl} ms");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 0, "an idle key expires");

    let s = spec("10/1s", None, Algorithm::SlidingWindow);
    b.check("op", None, &s, Take::Tokens(1)).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{{{p}:op}}:s0"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!((1..=2001).contains(&ttl), "sliding key ttl {ttl} ms");
}

#[tokio::test]
async fn scripts_are_reloaded_after_a_script_flush() {
    let p = prefix("noscript");
    let b = backend(&p, redis_url());
    let s = spec("100/s", None, Algorithm::TokenBucket);
    assert!(matches!(
        b.check("op", None, &s, Take::Tokens(1)).await,
        Ok(Check::Admitted { .. })
    ));
    let mut con = raw(redis_url()).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(matches!(
        b.check("op", None, &s, Take::Tokens(1)).await,
        Ok(Check::Admitted { .. })
    ));
    assert_eq!(b.stats().errors, 0);
}

/// A Redis server of the test's own, on `port`.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    fn start_with(port: u16, extra: &[&str]) -> Self {
        let child = Command::new(support::redis_server())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let s = Self { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_dead_or_stalled_redis_costs_at_most_the_timeout_and_recovers_by_itself() {
    let port = 16_379 + (std::process::id() % 1000) as u16;
    let server = Server::start(port);
    let url = server.url();
    let b = RedisBackend::new(RedisConfig {
        prefix: prefix("fault"),
        timeout: Duration::from_millis(50),
        ..RedisConfig::new(url.clone())
    })
    .unwrap();
    let s = spec("1000/s", None, Algorithm::TokenBucket);
    assert!(matches!(
        b.check("op", None, &s, Take::Tokens(1)).await,
        Ok(Check::Admitted { .. })
    ));

    // Stalled: the server accepts but does not answer.
    let mut con = raw(&url).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("ALL")
        .query_async(&mut con)
        .await
        .unwrap();
    let t = Instant::now();
    let err = b.check("op", None, &s, Take::Tokens(1)).await.unwrap_err();
    assert_eq!(err, BackendError::Timeout(Duration::from_millis(50)));
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "bounded by the timeout: {:?}",
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(matches!(
        b.check("op", None, &s, Take::Tokens(1)).await,
        Ok(Check::Admitted { .. })
    ));

    // Stopped: every check fails fast, then Redis is left alone.
    server.stop();
    for _ in 0..3 {
        let t = Instant::now();
        assert!(b.check("op", None, &s, Take::Tokens(1)).await.is_err());
        assert!(
            t.elapsed() < Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
    }
    let t = Instant::now();
    assert_eq!(
        b.check("op", None, &s, Take::Tokens(1)).await.unwrap_err(),
        BackendError::Paused
    );
    assert!(
        t.elapsed() < Duration::from_millis(5),
        "a paused backend does not even try"
    );
    assert!(b.stats().paused);

    // Back on the same port: after the pause one probe finds it, and the
    // limiter uses it again without a restart.
    let _server = Server::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Check::Admitted { .. }) = b.check("op", None, &s, Take::Tokens(1)).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis came back but was not used again: {:?}",
            b.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = b.stats();
    assert!(!stats.paused);
    assert_eq!(stats.recoveries, 2, "the stall and the restart: {stats:?}");
    assert!(stats.skipped >= 1 && stats.timeouts >= 1, "{stats:?}");
}

/// Redis killed and restarted after a long outage (the health pause has
/// reached its longest): the limiter uses it again within a second of the
/// server accepting connections.
#[tokio::test]
async fn a_restarted_redis_is_used_again_within_a_second() {
    let port = 17_379 + (std::process::id() % 1000) as u16;
    let server = Server::start(port);
    let b = RedisBackend::new(RedisConfig {
        prefix: prefix("restart"),
        timeout: Duration::from_millis(50),
        ..RedisConfig::new(server.url())
    })
    .unwrap();
    let s = spec("1000/s", None, Algorithm::TokenBucket);
    assert!(matches!(
        b.check("op", None, &s, Take::Tokens(1)).await,
        Ok(Check::Admitted { .. })
    ));
    server.stop();
    // Three seconds of calls against a dead Redis.
    let down_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < down_until {
        assert!(b.check("op", None, &s, Take::Tokens(1)).await.is_err());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.stats().paused);
    let _server = Server::start(port);
    let up = Instant::now();
    loop {
        if let Ok(Check::Admitted { .. }) = b.check("op", None, &s, Take::Tokens(1)).await {
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(1),
            "redis answers again but was not used within a second: {:?}",
            b.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = up.elapsed();
    assert!(!b.stats().paused);
    eprintln!("used again {took:?} after the restart");
}

#[test]
fn bad_settings_are_errors_naming_the_value() {
    let e = RedisBackend::new(RedisConfig::new("htp://nowhere")).unwrap_err();
    assert!(e.to_string().contains("url = htp://nowhere"), "{e}");
    let e = RedisBackend::new(RedisConfig {
        prefix: "a{b".into(),
        ..RedisConfig::new(redis_url())
    })
    .unwrap_err();
    assert!(e.to_string().contains("hash tag"), "{e}");
}

mod lease;

mod ops {
    use super::*;
    use limiter::{Backend, Degradation, LimitError, OpConfig, Registry};

    fn shared_op(reg: &Registry, name: &str, rate: &str, degradation: Degradation) {
        reg.configure(
            name,
            OpConfig {
                backend: Some(Backend::Redis),
                degradation: Some(degradation),
                burst: Some(4),
                ..OpConfig::default()
            }
            .with_rate(rate)
            .unwrap(),
        )
        .unwrap();
    }

    async fn run(reg: &Registry, name: &str) -> Result<(), LimitError> {
        reg.op(name)
            .run(None, || async { Ok::<_, LimitError>(()) })
            .await
    }

    #[tokio::test]
    async fn two_registries_share_an_ops_rate_through_redis() {
        let p = prefix("ops");
        let (a, b) = (Registry::new(), Registry::new());
        for reg in [&a, &b] {
            reg.set_redis(RedisConfig {
                prefix: p.clone(),
                ..RedisConfig::new(redis_url())
            })
            .unwrap();
            shared_op(reg, "search", "4/min", Degradation::FailClosed);
        }
        let mut ok = 0;
        for i in 0..20 {
            match run(if i % 2 == 0 { &a } else { &b }, "search").await {
                Ok(()) => ok += 1,
                Err(LimitError::RateLimited { quota, .. }) => {
                    assert_eq!(
                        (quota.limit, quota.window),
                        (4, Some(Duration::from_secs(60)))
                    );
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 4, "both instances together admit one limit's worth");
    }

    #[tokio::test]
    async fn each_degradation_mode_when_redis_is_down() {
        for (mode, expect_ok) in [
            (Degradation::FailOpen, 10),
            (Degradation::FailClosed, 0),
            (Degradation::Local, 4),
        ] {
            let reg = Registry::new();
            // A port where nothing listens.
            reg.set_redis(RedisConfig {
                prefix: prefix("down"),
                timeout: Duration::from_millis(30),
                ..RedisConfig::new("redis://127.0.0.1:9/")
            })
            .unwrap();
            shared_op(&reg, "api", "4/min", mode);
            let t = Instant::now();
            let mut ok = 0;
            for _ in 0..10 {
                match run(&reg, "api").await {
                    Ok(()) => ok += 1,
                    Err(LimitError::Overloaded { .. }) if mode == Degradation::FailClosed => {}
                    Err(LimitError::RateLimited { .. }) if mode == Degradation::Local => {}
                    Err(e) => panic!("{mode}: {e}"),
                }
            }
            assert_eq!(ok, expect_ok, "{mode}");
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{mode}: {:?}",
                t.elapsed()
            );
            let snap = reg.op("api").snapshot();
            assert_eq!(snap.counters.backend_fallbacks, 10, "{mode}");
        }
    }

    #[tokio::test]
    async fn per_key_rates_are_shared_by_key() {
        let p = prefix("opkeys");
        let (a, b) = (Registry::new(), Registry::new());
        for reg in [&a, &b] {
            reg.set_redis(RedisConfig {
                prefix: p.clone(),
                ..RedisConfig::new(redis_url())
            })
            .unwrap();
            reg.configure(
                "user",
                OpConfig {
                    backend: Some(Backend::Redis),
                    burst: Some(2),
                    ..OpConfig::default()
                }
                .with_rate_per_key("2/min")
                .unwrap(),
            )
            .unwrap();
        }
        let call = |reg: &Registry, who: &'static str| {
            let op = reg.op("user");
            async move {
                op.call()
                    .key(who)
                    .run(|| async { Ok::<_, LimitError>(()) })
                    .await
            }
        };
        let mut alice = 0;
        for i in 0..6 {
            match call(if i % 2 == 0 { &a } else { &b }, "alice").await {
                Ok(()) => alice += 1,
                Err(LimitError::RateLimited { quota, .. }) => assert!(quota.per_key),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(alice, 2, "alice's budget is one across both instances");
        let bob = call(&b, "bob").await;
        assert!(bob.is_ok(), "bob has his own: {bob:?}");

        // Redis down, degradation local: each key falls back to its own
        // in-process budget.
        let down = Registry::new();
        down.set_redis(RedisConfig {
            timeout: Duration::from_millis(30),
            ..RedisConfig::new("redis://127.0.0.1:9/")
        })
        .unwrap();
        down.configure(
            "user",
            OpConfig {
                backend: Some(Backend::Redis),
                degradation: Some(Degradation::Local),
                burst: Some(2),
                ..OpConfig::default()
            }
            .with_rate_per_key("2/min")
            .unwrap(),
        )
        .unwrap();
        let mut ok = 0;
        for _ in 0..5 {
            ok += usize::from(call(&down, "alice").await.is_ok());
        }
        assert_eq!(ok, 2);
        assert!(call(&down, "bob").await.is_ok());
    }
}

mod settings {
    use super::*;
    use limiter::config::{settings_from_toml, settings_from_vars};
    use limiter::Registry;

    #[test]
    fn redis_from_the_environment_and_the_file() {
        let vars = [
            ("LIMITER_REDIS_URL", "redis://127.0.0.1:6379/"),
            ("LIMITER_REDIS_PREFIX", "app"),
            ("LIMITER_REDIS_TIMEOUT", "20ms"),
            ("LIMITER_REDIS_LEASE_TTL", "900ms"),
            ("LIMITER_OP_SEARCH_BACKEND", "redis"),
            ("LIMITER_OP_SEARCH_DEGRADATION", "fail_open"),
            ("LIMITER_OP_SEARCH_RATE", "10/s"),
        ];
        let s =
            settings_from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert_eq!(s.redis.prefix.as_deref(), Some("app"));
        assert_eq!(s.redis.timeout, Some(Duration::from_millis(20)));
        assert_eq!(s.redis.lease_ttl, Some(Duration::from_millis(900)));
        let reg = Registry::new();
        reg.apply(&s).unwrap();
        assert!(reg.redis().is_some());
        assert_eq!(reg.op("search").config().backend, limiter::Backend::Redis);

        let bad = [("LIMITER_REDIS_TIMEOUT", "soon")];
        let err = settings_from_vars(bad.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("environment variable LIMITER_REDIS_TIMEOUT=\"soon\""),
            "{err}"
        );
        let bad = [("LIMITER_REDIS_URL", "tcp://x")];
        let s =
            settings_from_vars(bad.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        let err = Registry::new().apply(&s).unwrap_err();
        assert!(err.to_string().contains("url = tcp://x"), "{err}");

        let toml = "[redis]\nurl = \"redis://127.0.0.1:6379/\"\ntimeout = \"30ms\"\nlease_ttl = \"2s\"\n\n[ops.search]\nbackend = \"redis\"\nrate = \"5/s\"\n";
        let s = settings_from_toml(toml, "limiter.toml", None).unwrap();
        assert_eq!(s.redis.timeout, Some(Duration::from_millis(30)));
        assert_eq!(s.redis.lease_ttl, Some(Duration::from_secs(2)));
        let err = settings_from_toml("[redis]\nurls = \"x\"\n", "limiter.toml", None).unwrap_err();
        assert!(err.to_string().contains("`redis.urls`"), "{err}");
    }
}

mod attribute {
    use super::*;
    use limiter::{limit_blocking, registry, LimitError};

    #[limit_blocking(
        op = "attr.redis.search",
        backend = "redis",
        rate = "3/min",
        burst = 3,
        degradation = "fail_closed"
    )]
    async fn search(q: &'static str) -> usize {
        q.len()
    }

    #[tokio::test]
    async fn the_attribute_keeps_its_rate_in_redis() {
        registry()
            .set_redis(RedisConfig {
                prefix: prefix("attr"),
                ..RedisConfig::new(redis_url())
            })
            .unwrap();
        let mut ok = 0;
        for _ in 0..6 {
            match search("rust").await {
                Ok(4) => ok += 1,
                Err(LimitError::RateLimited { .. }) => {}
                other => panic!("{other:?}"),
            }
        }
        let cfg = registry().op("attr.redis.search").config();
        assert_eq!(ok, 3);
        assert_eq!(cfg.backend, limiter::Backend::Redis);
        assert_eq!(cfg.degradation, limiter::Degradation::FailClosed);
        let stats = registry().redis().unwrap().stats();
        assert_eq!(stats.checks, 6);
    }
}

#[tokio::test]
async fn backend_figures_reach_the_prometheus_exposition() {
    let reg = limiter::Registry::new();
    reg.set_redis(RedisConfig {
        prefix: prefix("prom"),
        ..RedisConfig::new(redis_url())
    })
    .unwrap();
    reg.configure(
        "p",
        limiter::OpConfig {
            backend: Some(limiter::Backend::Redis),
            ..limiter::OpConfig::default()
        }
        .with_rate("100/s")
        .unwrap(),
    )
    .unwrap();
    for _ in 0..3 {
        reg.op("p")
            .run(None, || async { Ok::<_, limiter::LimitError>(()) })
            .await
            .unwrap();
    }
    let text = reg.prometheus();
    assert!(text.contains("limiter_redis_checks_total 3"), "{text}");
    assert!(text.contains("limiter_redis_paused 0"));
    assert!(text.contains("limiter_op_backend_fallbacks_total{op=\"p\"} 0"));
}

mod breaker {
    use super::*;
    use limiter::config::BreakerPolicy;
    use limiter::redis::{SharedBreakerState, SharedTicket};

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failure_rate: 0.5,
            min_calls: 4,
            window: 4,
            slow_call: None,
            recovery: Duration::from_millis(300),
            half_open_calls: 1,
            success_threshold: 2,
            consecutive_failures: None,
        }
    }

    #[tokio::test]
    async fn a_breaker_in_redis_opens_for_every_instance() {
        let p = prefix("breaker");
        let (a, b) = (backend(&p, redis_url()), backend(&p, redis_url()));
        let pol = policy();
        // Instance a records the failures...
        for failed in [false, true, false, true] {
            let t = a.breaker_admit("pay", &pol).await.unwrap().unwrap();
            a.breaker_record("pay", t, failed, &pol).await.unwrap();
        }
        // ...and instance b is refused: 2 of 4 failed reaches 0.5.
        let wait = b.breaker_admit("pay", &pol).await.unwrap().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(300),
            "{wait:?}"
        );

        // After the recovery, one probe at a time, from any instance.
        tokio::time::sleep(Duration::from_millis(320)).await;
        let probe = b.breaker_admit("pay", &pol).await.unwrap().unwrap();
        assert!(matches!(probe, SharedTicket::Probe { .. }));
        assert!(
            a.breaker_admit("pay", &pol).await.unwrap().is_err(),
            "one probe at a time"
        );
        assert_eq!(
            b.breaker_record("pay", probe, false, &pol).await.unwrap(),
            SharedBreakerState::HalfOpen,
            "two successes are needed"
        );
        let probe = a.breaker_admit("pay", &pol).await.unwrap().unwrap();
        assert_eq!(
            a.breaker_record("pay", probe, false, &pol).await.unwrap(),
            SharedBreakerState::Closed
        );
        let closed = b.breaker_admit("pay", &pol).await.unwrap().unwrap();
        assert!(matches!(closed, SharedTicket::Closed { .. }));
    }

    #[tokio::test]
    async fn a_failed_probe_reopens_and_stale_outcomes_are_ignored() {
        let p = prefix("breaker2");
        let b = backend(&p, redis_url());
        let pol = BreakerPolicy {
            consecutive_failures: Some(2),
            ..policy()
        };
        let stale = b.breaker_admit("api", &pol).await.unwrap().unwrap();
        for _ in 0..2 {
            let t = b.breaker_admit("api", &pol).await.unwrap().unwrap();
            b.breaker_record("api", t, true, &pol).await.unwrap();
        }
        assert!(
            b.breaker_admit("api", &pol).await.unwrap().is_err(),
            "2 in a row opened it"
        );
        // A call admitted before the breaker opened reports late: ignored.
        assert_eq!(
            b.breaker_record("api", stale, false, &pol).await.unwrap(),
            SharedBreakerState::Open
        );
        tokio::time::sleep(Duration::from_millis(320)).await;
        let probe = b.breaker_admit("api", &pol).await.unwrap().unwrap();
        assert_eq!(
            b.breaker_record("api", probe, true, &pol).await.unwrap(),
            SharedBreakerState::Open,
            "a failed probe reopens"
        );
        assert!(b.breaker_admit("api", &pol).await.unwrap().is_err());

        // A probe whose outcome never comes (its instance died) does not
        // hold the half-open breaker forever: after the recovery time the
        // place is taken back.
        tokio::time::sleep(Duration::from_millis(320)).await;
        let lost = b.breaker_admit("api", &pol).await.unwrap().unwrap();
        assert!(matches!(lost, SharedTicket::Probe { .. }));
        assert!(b.breaker_admit("api", &pol).await.unwrap().is_err());
        tokio::time::sleep(Duration::from_millis(320)).await;
        let probe = b.breaker_admit("api", &pol).await.unwrap().unwrap();
        assert_eq!(
            b.breaker_record("api", probe, false, &pol).await.unwrap(),
            SharedBreakerState::HalfOpen
        );
    }
}

mod shared_breaker {
    use super::*;
    use limiter::{Backend, BreakerConfig, LimitError, OpConfig, Registry};

    fn cfg() -> OpConfig {
        OpConfig {
            backend: Some(Backend::Redis),
            breaker: BreakerConfig {
                enabled: Some(true),
                failure_rate: Some(0.5),
                min_calls: Some(4),
                window: Some(4),
                recovery: Some(Duration::from_millis(300)),
                ..BreakerConfig::default()
            },
            ..OpConfig::default()
        }
    }

    async fn call(reg: &Registry, fail: bool) -> Result<(), LimitError> {
        reg.op("pay")
            .run(None, || async move {
                if fail {
                    Err(LimitError::Timeout {
                        op: "upstream".into(),
                    })
                } else {
                    Ok(())
                }
            })
            .await
    }

    /// The breaker kept in Redis is what monitoring shows: a second
    /// instance that never called the op reports it open in
    /// `/monitoring/breakers`, in its snapshot, and in Prometheus.
    #[tokio::test]
    async fn a_second_instance_shows_the_shared_breaker_it_never_called() {
        let p = prefix("viewbreaker");
        let (a, b): (&'static Registry, &'static Registry) = (
            Box::leak(Box::new(Registry::new())),
            Box::leak(Box::new(Registry::new())),
        );
        for reg in [a, b] {
            reg.set_redis(RedisConfig {
                prefix: p.clone(),
                ..RedisConfig::new(redis_url())
            })
            .unwrap();
            reg.configure(
                "pay",
                OpConfig {
                    breaker: BreakerConfig {
                        recovery: Some(Duration::from_secs(60)),
                        ..cfg().breaker
                    },
                    ..cfg()
                },
            )
            .unwrap();
        }
        for fail in [false, true, false, true] {
            let _ = call(a, fail).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let router = limiter::http::Monitoring::new()
            .registry(b)
            .router()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let body: serde_json::Value = reqwest::get(format!("http://{addr}/monitoring/breakers"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pay = body["breakers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["op"] == "pay")
            .unwrap_or_else(|| panic!("{body}"));
        assert_eq!(pay["state"], "open", "{body}");
        let left = pay["retry_after_ms"].as_u64().unwrap();
        assert!(left > 50_000 && left <= 60_000, "{left}");
        assert_eq!(
            b.op("pay").snapshot().counters.calls,
            0,
            "b never called it"
        );
        let metrics = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l == "limiter_op_breaker_state{op=\"pay\",state=\"open\"} 1"),
            "{metrics}"
        );
        let health = reqwest::get(format!("http://{addr}/monitoring/health"))
            .await
            .unwrap();
        assert_eq!(health.status(), 503);
    }

    #[tokio::test]
    async fn failures_recorded_by_one_instance_open_the_breaker_for_both() {
        let p = prefix("opbreaker");
        let (a, b) = (Registry::new(), Registry::new());
        for reg in [&a, &b] {
            reg.set_redis(RedisConfig {
                prefix: p.clone(),
                ..RedisConfig::new(redis_url())
            })
            .unwrap();
            reg.configure("pay", cfg()).unwrap();
        }
        for fail in [false, true, false, true] {
            let _ = call(&a, fail).await;
        }
        // Outcomes are recorded off the caller's path: give them a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
        match call(&b, false).await {
            Err(LimitError::CircuitOpen { retry_after, .. }) => {
                assert!(retry_after <= Duration::from_millis(300), "{retry_after:?}")
            }
            other => panic!("b should find the breaker open: {other:?}"),
        }
        assert_eq!(b.op("pay").snapshot().counters.rejected_circuit_open, 1);
        // After the recovery a probe from b closes it for a as well.
        tokio::time::sleep(Duration::from_millis(300)).await;
        call(&b, false).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        call(&a, false).await.unwrap();

        // Held open by hand on one instance, reset on the other.
        a.op("pay").force_open_breaker();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(
            call(&b, false).await,
            Err(LimitError::CircuitOpen { .. })
        ));
        b.op("pay").reset_breaker();
        a.op("pay").reset_breaker();
        tokio::time::sleep(Duration::from_millis(100)).await;
        call(&a, false).await.unwrap();
        call(&b, false).await.unwrap();
    }

    #[tokio::test]
    async fn with_redis_down_the_local_breaker_decides() {
        let reg = Registry::new();
        reg.set_redis(RedisConfig {
            timeout: Duration::from_millis(30),
            ..RedisConfig::new("redis://127.0.0.1:9/")
        })
        .unwrap();
        reg.configure("pay", cfg()).unwrap();
        for _ in 0..4 {
            let _ = call(&reg, true).await;
        }
        assert!(matches!(
            call(&reg, false).await,
            Err(LimitError::CircuitOpen { .. })
        ));
        assert!(reg.op("pay").snapshot().counters.backend_fallbacks >= 5);
    }
}

mod cluster {
    use super::*;

    /// Three masters on spare ports, joined with `redis-cli --cluster create`.
    fn start_cluster(base: u16) -> Vec<Server> {
        let dir = std::env::temp_dir().join(format!("limiter-cluster-{base}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let servers: Vec<Server> = (0..3)
            .map(|i| {
                let port = base + i;
                let conf = dir.join(format!("nodes-{port}.conf"));
                Server::start_with(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        conf.to_str().unwrap(),
                        "--dir",
                        dir.to_str().unwrap(),
                    ],
                )
            })
            .collect();
        let nodes: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        for _ in 0..100 {
            let out = Command::new("redis-cli")
                .args(["-p", &base.to_string(), "cluster", "info"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                return servers;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster did not come up");
    }

    #[tokio::test]
    async fn limits_and_breakers_work_on_a_redis_cluster() {
        let base = 17_000 + (std::process::id() % 500) as u16 * 3;
        let _servers = start_cluster(base);
        let url = format!(
            "redis://127.0.0.1:{},redis://127.0.0.1:{},redis://127.0.0.1:{}",
            base,
            base + 1,
            base + 2
        );
        let p = prefix("cluster");
        // A cluster just formed on a loaded 2-core machine can take longer
        // than the 50 ms default to route a first command (slot discovery,
        // redirections): the test is about results, not latency.
        let slow = |prefix: &str| {
            RedisBackend::new(RedisConfig {
                prefix: prefix.into(),
                timeout: std::time::Duration::from_secs(2),
                ..RedisConfig::new(&url)
            })
            .unwrap()
        };
        let (a, b) = (slow(&p), slow(&p));
        // Several windows: several keys, one slot thanks to the hash tag.
        let s = spec("100/s, 5/min", Some(100), Algorithm::TokenBucket);
        let mut ok = 0;
        for i in 0..20 {
            let inst = if i % 2 == 0 { &a } else { &b };
            for op in ["alpha", "beta", "gamma"] {
                if let Check::Admitted { .. } =
                    inst.check(op, None, &s, Take::Tokens(1)).await.unwrap()
                {
                    ok += 1;
                }
            }
        }
        assert_eq!(
            ok, 15,
            "5 per op across both instances, ops spread over the slots"
        );
        let key = a.key_name(&"alice");
        let s = spec("3/min", None, Algorithm::SlidingWindow);
        assert_eq!(admitted(&b, "keyed", Some(key), &s, 6).await, 3);
        let pol = limiter::config::BreakerPolicy {
            failure_rate: 0.5,
            min_calls: 2,
            window: 2,
            slow_call: None,
            recovery: Duration::from_secs(30),
            half_open_calls: 1,
            success_threshold: 1,
            consecutive_failures: None,
        };
        for _ in 0..2 {
            let t = a.breaker_admit("pay", &pol).await.unwrap().unwrap();
            a.breaker_record("pay", t, true, &pol).await.unwrap();
        }
        assert!(b.breaker_admit("pay", &pol).await.unwrap().is_err());
    }
}

mod fault_modes {
    use super::*;
    use limiter::{Backend, Degradation, LimitError, OpConfig, Registry};

    async fn run(reg: &Registry) -> Result<(), LimitError> {
        reg.op("api")
            .run(None, || async { Ok::<_, LimitError>(()) })
            .await
    }

    #[tokio::test]
    async fn each_mode_through_a_redis_stopped_mid_run_and_back() {
        let base = 18_500 + (std::process::id() % 400) as u16 * 3;
        for (i, mode) in [
            Degradation::FailOpen,
            Degradation::FailClosed,
            Degradation::Local,
        ]
        .into_iter()
        .enumerate()
        {
            let port = base + i as u16;
            let server = Server::start(port);
            let reg = Registry::new();
            reg.set_redis(RedisConfig {
                prefix: prefix("midrun"),
                timeout: Duration::from_millis(50),
                ..RedisConfig::new(server.url())
            })
            .unwrap();
            reg.configure(
                "api",
                OpConfig {
                    backend: Some(Backend::Redis),
                    degradation: Some(mode),
                    ..OpConfig::default()
                }
                .with_rate("1000/s")
                .unwrap(),
            )
            .unwrap();
            for _ in 0..3 {
                run(&reg).await.unwrap();
            }
            let url = server.url();
            server.stop();
            for _ in 0..5 {
                let t = Instant::now();
                let r = run(&reg).await;
                assert!(
                    t.elapsed() < Duration::from_millis(200),
                    "{mode}: {:?}",
                    t.elapsed()
                );
                match (mode, r) {
                    (Degradation::FailOpen | Degradation::Local, Ok(())) => {}
                    (Degradation::FailClosed, Err(LimitError::Overloaded { .. })) => {}
                    (_, other) => panic!("{mode}: {other:?}"),
                }
            }
            assert_eq!(
                reg.op("api").snapshot().counters.backend_fallbacks,
                5,
                "{mode}"
            );
            let _server = Server::start(port);
            assert_eq!(url, _server.url());
            let deadline = Instant::now() + Duration::from_secs(10);
            while reg.redis().unwrap().stats().recoveries == 0 {
                let _ = run(&reg).await;
                assert!(Instant::now() < deadline, "{mode}: redis not used again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let before = reg.op("api").snapshot().counters.backend_fallbacks;
            run(&reg).await.unwrap();
            assert_eq!(
                reg.op("api").snapshot().counters.backend_fallbacks,
                before,
                "{mode}: back on redis"
            );
        }
    }
}

/// The exact sliding window kept in Redis (contract change: it was kept
/// in process only, and asking Redis for it was a configuration error):
/// two instances together never admit more than the limit in any span of
/// the window, and a refusal says when the oldest calls leave it.
#[tokio::test]
async fn sliding_exact_in_redis_admits_at_most_the_limit_in_any_span() {
    let p = prefix("exact");
    let (a, b) = (backend(&p, redis_url()), backend(&p, redis_url()));
    let s = spec("6/2s", None, Algorithm::SlidingExact);
    let start = Instant::now();
    let mut times = Vec::new();
    let mut waits = Vec::new();
    // 2.6 s of calls every 50 ms, alternating instances: every 2 s span
    // must hold at most 6 admissions.
    while start.elapsed() < Duration::from_millis(2600) {
        let inst = if times.len() % 2 == 0 { &a } else { &b };
        let at = start.elapsed();
        match inst
            .check("api", Some(7), &s, Take::Tokens(1))
            .await
            .unwrap()
        {
            Check::Admitted { remaining } => {
                assert!(remaining < 6, "remaining {remaining}");
                times.push(at);
            }
            Check::Limited { wait, window } => {
                assert_eq!(window, 0);
                assert!(
                    wait > Duration::ZERO && wait <= Duration::from_millis(2200),
                    "{wait:?}"
                );
                waits.push(wait);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!waits.is_empty(), "the limit refused some calls");
    assert!(
        times.len() > 6,
        "calls are admitted again once the first left: {times:?}"
    );
    for (i, t) in times.iter().enumerate() {
        let in_span = times[i..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_secs(2))
            .count();
        assert!(
            in_span <= 6,
            "{in_span} admitted in the 2 s from {t:?}: {times:?}"
        );
    }
    let mut conn = raw(redis_url()).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{p}:api:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let fields: usize = redis::cmd("HLEN")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(fields <= 17, "at most one field per sub-window: {fields}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 2200, "expires with its window: {ttl}");
}

/// Serves `/x` behind `layer` over TCP; returns its base redis_url().
async fn serve_layer(layer: limiter::http::LimiterLayer) -> String {
    let app = axum::Router::new()
        .route("/x", axum::routing::get(|| async { "ok" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// Sends `n` requests of one client alternating between `bases`; returns
/// how many were admitted, checking that each refusal names `policy`.
async fn alternate(bases: &[String], n: usize, policy: &str) -> usize {
    let client = reqwest::Client::new();
    let mut admitted = 0;
    for i in 0..n {
        let r = client
            .get(format!("{}/x", bases[i % bases.len()]))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => admitted += 1,
            429 => assert_eq!(r.headers()["ratelimit-policy"], policy),
            other => panic!("status {other}"),
        }
    }
    admitted
}

/// Two instances of a service on one Redis, each with its own registry and
/// `LimiterLayer`: a rule kept in Redis admits one client, alternating
/// between them, what one instance admits alone.
#[tokio::test]
async fn two_instances_share_one_per_client_rule_budget() {
    use limiter::http::{LimiterLayer, Rule};
    use limiter::{Backend, Registry};

    let prefix = prefix("rules");
    let mut bases = Vec::new();
    for _ in 0..2 {
        let reg: &'static Registry = Box::leak(Box::new(Registry::new()));
        reg.set_redis(RedisConfig {
            prefix: prefix.clone(),
            timeout: Duration::from_secs(2),
            ..RedisConfig::new(redis_url())
        })
        .unwrap();
        let layer = LimiterLayer::builder()
            .registry(reg)
            .rule(
                Rule::new("*")
                    .name("shared")
                    .per_minute(10)
                    .backend(Backend::Redis),
            )
            .build()
            .unwrap();
        bases.push(serve_layer(layer).await);
    }
    let admitted = alternate(&bases, 30, r#""shared";q=10;w=60"#).await;
    assert_eq!(admitted, 10, "one budget for both instances");
}

/// A rule declared in process in code is moved into Redis by
/// configuration, like any op (`[ops.<rule>] backend = "redis"`): two
/// instances then share one budget per client, and the rule's op counts
/// what it admitted and refused.
#[tokio::test]
async fn a_rule_moved_to_redis_by_configuration_is_shared() {
    use limiter::config::settings_from_toml;
    use limiter::http::{LimiterLayer, Rule};
    use limiter::Registry;

    let prefix = prefix("rule-config");
    let toml = format!(
        "[redis]\nurl = \"{url}\"\nprefix = \"{prefix}\"\n[ops.visitors]\nbackend = \"redis\"\n",
        url = redis_url()
    );
    let settings = settings_from_toml(&toml, "limiter.toml", None).unwrap();
    let mut bases = Vec::new();
    let mut regs = Vec::new();
    for _ in 0..2 {
        let reg: &'static Registry = Box::leak(Box::new(Registry::new()));
        reg.apply(&settings).unwrap();
        let layer = LimiterLayer::builder()
            .registry(reg)
            .rule(Rule::new("*").name("visitors").per_minute(8))
            .build()
            .unwrap();
        assert_eq!(reg.op("visitors").config().backend, limiter::Backend::Redis);
        bases.push(serve_layer(layer).await);
        regs.push(reg);
    }
    let admitted = alternate(&bases, 24, r#""visitors";q=8;w=60"#).await;
    assert_eq!(admitted, 8, "one budget for both instances");
    let counted: u64 = regs
        .iter()
        .map(|r| r.op("visitors").snapshot().counters.rejected_rate_limited)
        .sum();
    assert_eq!(counted, 16, "the rule's ops count their refusals");
}

/// Costs and charges kept in Redis: every script takes `n`, a charge is
/// taken whatever is left, and the debt delays the key's next calls.
mod costs {
    use super::*;
    use limiter::{Backend, Degradation, LimitError, OpConfig, Registry};

    const ALGORITHMS: [(Algorithm, Option<u32>); 4] = [
        (Algorithm::TokenBucket, Some(100)),
        (Algorithm::FixedWindow, None),
        (Algorithm::SlidingWindow, None),
        (Algorithm::SlidingExact, None),
    ];

    async fn take(b: &RedisBackend, s: &RateSpec, take: Take) -> Check {
        b.check("batch", Some(7), s, take).await.unwrap()
    }

    #[tokio::test]
    async fn a_batch_of_20_under_100_a_minute_leaves_80_in_every_script() {
        for (algorithm, burst) in ALGORITHMS {
            let b = backend(&prefix("cost"), redis_url());
            let s = spec("100/min", burst, algorithm);
            match take(&b, &s, Take::Tokens(20)).await {
                Check::Admitted { remaining } => assert_eq!(remaining, 80, "{algorithm:?}"),
                other => panic!("{algorithm:?}: {other:?}"),
            }
            assert!(
                matches!(take(&b, &s, Take::Tokens(81)).await, Check::Limited { .. }),
                "{algorithm:?}: 81 of 80"
            );
            let mut ok = 0;
            for _ in 0..81 {
                ok += u32::from(matches!(
                    take(&b, &s, Take::Tokens(1)).await,
                    Check::Admitted { .. }
                ));
            }
            assert_eq!(ok, 80, "{algorithm:?}");
        }
    }

    #[tokio::test]
    async fn a_charge_goes_into_debt_and_the_wait_covers_it() {
        for (algorithm, burst) in ALGORITHMS {
            let b = backend(&prefix("charge"), redis_url());
            let s = spec("100/min", burst, algorithm);
            assert!(matches!(
                take(&b, &s, Take::Tokens(1)).await,
                Check::Admitted { .. }
            ));
            // Forced past the limit: admitted, nothing left.
            assert_eq!(
                take(&b, &s, Take::Charge(500)).await,
                Check::Admitted { remaining: 0 },
                "{algorithm:?}"
            );
            let Check::Limited { wait, .. } = take(&b, &s, Take::Tokens(1)).await else {
                panic!("{algorithm:?}: a key in debt admitted");
            };
            // 401 tokens past the minute's 100 are paid at 100 a minute:
            // at least 4 more minutes for every algorithm (the token bucket
            // and the windows pay the same rate).
            assert!(
                wait >= Duration::from_secs(230) && wait <= Duration::from_secs(361),
                "{algorithm:?}: {wait:?}"
            );
        }
    }

    fn shared(reg: &Registry, p: &str) -> limiter::Op {
        reg.set_redis(RedisConfig {
            prefix: p.to_owned(),
            ..RedisConfig::new(redis_url())
        })
        .unwrap();
        let cfg = OpConfig {
            backend: Some(Backend::Redis),
            degradation: Some(Degradation::FailClosed),
            ..OpConfig::default()
        }
        .with_rate_per_key("100/min")
        .unwrap();
        reg.configure("llm", cfg).unwrap();
        reg.op("llm")
    }

    async fn call(op: &limiter::Op, cost: u32) -> Result<(), LimitError> {
        op.call()
            .key(&"alice")
            .cost(cost)
            .run(|| async { Ok::<_, LimitError>(()) })
            .await
    }

    #[tokio::test]
    async fn ops_kept_in_redis_take_costs_and_charges_across_instances() {
        let p = prefix("op-cost");
        let (a, b) = (Registry::new(), Registry::new());
        let (op_a, op_b) = (shared(&a, &p), shared(&b, &p));
        // The default burst of "100/min" is 2: a batch of 20 needs the
        // whole bucket, and one no window holds is refused outright, even
        // from a full bucket.
        assert!(matches!(
            call(&op_a, 101).await,
            Err(LimitError::CostExceedsLimit { cost: 101, .. })
        ));
        call(&op_a, 20).await.unwrap();
        assert!(matches!(
            call(&op_b, 1).await,
            Err(LimitError::RateLimited { .. })
        ));
        assert!(matches!(
            call(&op_b, 101).await,
            Err(LimitError::CostExceedsLimit { cost: 101, .. })
        ));
        // A charge made on one instance delays the key on the other.
        let c = op_b
            .call()
            .key(&"bob")
            .charge(|tokens: &u32| *tokens)
            .run(|| async { Ok::<u32, LimitError>(500) })
            .await
            .unwrap();
        assert_eq!(c, 500);
        let deadline = Instant::now() + Duration::from_secs(2);
        let wait = loop {
            let r = op_a
                .call()
                .key(&"bob")
                .run(|| async { Ok::<_, LimitError>(()) })
                .await;
            match r {
                Err(LimitError::RateLimited { retry_after, .. }) => break retry_after,
                Ok(()) if Instant::now() < deadline => {
                    // The charge is sent off the caller's path: give it a
                    // moment, and take the admitted call back out of the
                    // reckoning below by allowing for it.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("the charge never reached Redis: {other:?}"),
            }
        };
        // 500 tokens of 0.6 s.
        assert!(
            wait >= Duration::from_secs(295) && wait <= Duration::from_secs(302),
            "{wait:?}"
        );
    }
}

/// `concurrency = "shared"`: `max_concurrent` counts calls in flight across
/// every instance, in Redis, with places leased and renewed by each
/// instance's heartbeat.
mod shared_bulkhead {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use limiter::{Backend, ConcurrencyScope, Degradation, LimitError, OpConfig, Registry};

    /// A registry on `url` with op `name` bounded to `max` calls across
    /// every instance.
    fn instance(url: &str, p: &str, lease: Duration, name: &str, max: u32) -> Registry {
        let reg = Registry::new();
        reg.set_redis(RedisConfig {
            prefix: p.into(),
            lease_ttl: lease,
            timeout: Duration::from_millis(200),
            ..RedisConfig::new(url)
        })
        .unwrap();
        reg.configure(name, shared(max, Degradation::FailClosed))
            .unwrap();
        reg
    }

    fn shared(max: u32, degradation: Degradation) -> OpConfig {
        OpConfig {
            backend: Some(Backend::Redis),
            concurrency: Some(ConcurrencyScope::Shared),
            degradation: Some(degradation),
            max_concurrent: Some(max),
            queue: Some(100),
            queue_timeout: Some(Duration::from_secs(10)),
            ..OpConfig::default()
        }
    }

    /// The members of the op's set in Redis.
    async fn holders(p: &str, name: &str) -> i64 {
        let mut con = raw(redis_url()).await;
        redis::cmd("ZCARD")
            .arg(format!("{{{p}:{name}}}:c"))
            .query_async(&mut con)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_instances_never_run_more_than_the_shared_bound() {
        let p = prefix("shared-bound");
        let regs: Vec<Registry> = (0..3)
            .map(|_| instance(redis_url(), &p, Duration::from_millis(600), "render", 5))
            .collect();
        let (alive, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let calls = (0..60).map(|i| {
            let op = regs[i % 3].op("render");
            let (alive, peak) = (Arc::clone(&alive), Arc::clone(&peak));
            tokio::spawn(async move {
                op.call()
                    .run_once(async move {
                        let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        alive.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, LimitError>(())
                    })
                    .await
            })
        });
        let started = Instant::now();
        let mut done = 0;
        for call in calls.collect::<Vec<_>>() {
            call.await.unwrap().unwrap();
            done += 1;
        }
        let peak = peak.load(Ordering::SeqCst);
        eprintln!(
            "60 calls across 3 instances, shared bound 5: peak {peak} alive, {:?}",
            started.elapsed()
        );
        assert_eq!(done, 60);
        assert!(peak <= 5, "{peak} bodies alive at once");
        assert!(peak >= 2, "the instances did share: peak {peak}");
        // Every place was given back (off the callers' paths), and every
        // instance saw the others (a heartbeat every 200 ms).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(holders(&p, "render").await, 0);
        for reg in &regs {
            assert_eq!(reg.redis().unwrap().instances(), 3);
        }
    }

    #[test]
    fn the_places_of_a_dead_instance_return_within_the_lease() {
        let p = prefix("shared-dead");
        let lease = Duration::from_millis(600);
        // The dying instance, on a runtime of its own: its places are
        // taken, never given back, and its heartbeat dies with the runtime
        // (a killed process).
        let dying = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        dying.block_on(async {
            let reg = instance(redis_url(), &p, lease, "upload", 5);
            for _ in 0..5 {
                let permit = reg.op("upload").acquire(None).await.unwrap();
                std::mem::forget(permit);
            }
            // Renewed at least once while alive.
            tokio::time::sleep(lease / 2).await;
            std::mem::forget(reg);
        });
        dying.shutdown_background();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(holders(&p, "upload").await, 5);
            let reg = instance(redis_url(), &p, lease, "upload", 5);
            let started = Instant::now();
            let permit = reg.op("upload").acquire(None).await.unwrap();
            let waited = started.elapsed();
            eprintln!("a dead instance's place came back after {waited:?} (lease {lease:?})");
            assert!(waited <= lease + Duration::from_millis(300), "{waited:?}");
            assert!(
                waited >= Duration::from_millis(100),
                "{waited:?}: not before the lease ran out"
            );
            drop(permit);
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_goes_away_gives_its_place_back_at_once() {
        let p = prefix("shared-cancel");
        let (a, b) = (
            instance(redis_url(), &p, Duration::from_secs(3), "job", 1),
            instance(redis_url(), &p, Duration::from_secs(3), "job", 1),
        );
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let op = a.op("job");
        let holder = tokio::spawn(async move {
            op.call()
                .run_once(async move {
                    let _ = started_tx.send(());
                    std::future::pending::<Result<(), LimitError>>().await
                })
                .await
        });
        started_rx.await.unwrap();
        assert_eq!(holders(&p, "job").await, 1);
        let op = b.op("job");
        let waiting = tokio::time::timeout(Duration::from_millis(100), op.acquire(None)).await;
        assert!(
            waiting.is_err(),
            "the one place is held by the other instance"
        );
        holder.abort();
        let _ = holder.await;
        let started = Instant::now();
        let permit = b.op("job").acquire(None).await.unwrap();
        let waited = started.elapsed();
        eprintln!("a cancelled caller's place came back after {waited:?} (lease 3 s)");
        assert!(waited < Duration::from_millis(500), "{waited:?}");
        drop(permit);
    }

    #[tokio::test]
    async fn redis_down_and_degradation_local_runs_this_instances_share() {
        let reg = Registry::new();
        // A port where nothing listens.
        reg.set_redis(RedisConfig {
            prefix: prefix("shared-down"),
            timeout: Duration::from_millis(30),
            ..RedisConfig::new("redis://127.0.0.1:9/")
        })
        .unwrap();
        reg.configure(
            "export",
            OpConfig {
                instances: Some(2),
                queue_timeout: Some(Duration::from_secs(5)),
                ..shared(6, Degradation::Local)
            },
        )
        .unwrap();
        let (alive, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let op = reg.op("export");
                let (alive, peak, gate) =
                    (Arc::clone(&alive), Arc::clone(&peak), Arc::clone(&gate));
                tokio::spawn(async move {
                    op.call()
                        .run_once(async move {
                            let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            gate.acquire().await.unwrap().forget();
                            alive.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, LimitError>(())
                        })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            alive.load(Ordering::SeqCst),
            3,
            "6 across 2 instances: 3 here"
        );
        gate.add_permits(6);
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert!(reg.op("export").snapshot().counters.backend_fallbacks >= 6);
    }

    #[tokio::test]
    async fn every_backend_counts_the_instances_of_its_prefix() {
        let p = prefix("instances");
        let lease = Duration::from_millis(300);
        let b = |p: &str| {
            RedisBackend::new(RedisConfig {
                prefix: p.into(),
                lease_ttl: lease,
                ..RedisConfig::new(redis_url())
            })
            .unwrap()
        };
        let (one, two) = (b(&p), b(&p));
        assert_eq!(one.instances(), 1, "before the first heartbeat");
        let s = spec("100/s", None, Algorithm::TokenBucket);
        one.check("op", None, &s, Take::Tokens(1)).await.unwrap();
        two.check("op", None, &s, Take::Tokens(1)).await.unwrap();
        tokio::time::sleep(lease / 2).await;
        assert_eq!((one.instances(), two.instances()), (2, 2));
        drop(two);
        tokio::time::sleep(lease / 2).await;
        assert_eq!(one.instances(), 1, "a dropped backend leaves the registry");
        assert_eq!(
            one.stats().checks,
            1,
            "heartbeats are not counted as checks"
        );
    }
}
