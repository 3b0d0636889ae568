use limiter::limit_blocking;

#[limit_blocking(
    op = "db",
    kind = database,
    timeout = "10s",
    strategy = "cancel",
    rate = "100/s, 5000/h",
    burst = 10,
    algorithm = "token_bucket",
    key = user,
    max_concurrent = 20,
    max_concurrent_per_key = 3,
    queue = 10,
    queue_timeout = "30s",
    overload = "drop_oldest",
    priority = level,
    retries = 3,
    backoff = "exponential",
    backoff_base = "100ms",
    breaker(failure_rate = 0.5, min_calls = 10, window = 20, slow_call = "2s", recovery = "60s", half_open_calls = 1, success_threshold = 1, consecutive_failures = 5),
    backend = "local",
    allow_blocking,
    crate = "::limiter"
)]
async fn query(user: String, level: i32) -> usize {
    user.len() + level as usize
}

#[limit_blocking(breaker = true, algorithm = "sliding_window", rate = "5/10s")]
async fn windowed() {}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(query("ann".into(), 1).await, Ok(4));
        assert_eq!(windowed().await, Ok(()));
    });
}
