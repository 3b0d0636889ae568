//! What the Redis benches share: the Redis they run against and its own
//! account of the scripts it ran.

/// `LIMITER_BENCH_REDIS`, or the Redis on 127.0.0.1:6379.
pub fn url() -> String {
    std::env::var("LIMITER_BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Redis's `INFO commandstats` for `EVALSHA` since the last reset (calls,
/// µs per call), then a reset.
pub fn evalsha_stats() -> (u64, f64) {
    let client = redis::Client::open(url()).expect("valid url");
    let mut con = client.get_connection().expect("redis answers");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .expect("INFO answers");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .expect("CONFIG RESETSTAT answers");
    let line = info
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .unwrap_or("");
    let field = |name: &str| {
        line.split([':', ','])
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse::<f64>().ok())
    };
    (
        field("calls=").unwrap_or(0.0) as u64,
        field("usec_per_call=").unwrap_or(f64::NAN),
    )
}
