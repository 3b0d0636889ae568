//! An axum service protected by `limiter`, with its monitoring dashboard.
//!
//! ```text
//! cargo run --release --example server                 # then open the dashboard URL it prints
//! cargo run --release --example load -- --duration 20s # in another terminal
//! ```
//!
//! Handlers do realistic fake work under all three attributes: a database
//! (`#[limit_blocking]` with a bulkhead, queue, timeout and breaker behind an
//! `#[optimize_route(level = Advanced)]` route), a flaky external API
//! (retries, breaker, `cache_fallback`), a blocking file read (a plain `fn`
//! offloaded to the blocking pool), a CPU-heavy hash (CPU pool, one per
//! client), a report that moves to the background past 1 s, a search route
//! at `level = Ultra` (coalesced, cached) and a `#[background_task]`
//! cleanup job. `LimiterLayer` rules limit clients by class.
//!
//! Flags and environment: `--addr 127.0.0.1:3000` (or
//! `LIMITER_EXAMPLE_ADDR`), `LIMITER_ADMIN_TOKEN`, `LIMITER_INTERNAL_SECRET`,
//! `LIMITER_TRUSTED_PROXIES` (comma-separated), plus every `LIMITS_*` /
//! `LIMITER_OP_*` variable of the README.

#[path = "app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::Duration;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn addr() -> Result<SocketAddr, String> {
    let mut addr = env_or("LIMITER_EXAMPLE_ADDR", "127.0.0.1:3000");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--addr" => {
                addr = it
                    .next()
                    .ok_or("--addr needs a value, e.g. 127.0.0.1:3000")?
            }
            "--help" | "-h" => {
                println!("usage: server [--addr HOST:PORT]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other}; expected --addr HOST:PORT")),
        }
    }
    addr.parse()
        .map_err(|_| format!("--addr / LIMITER_EXAMPLE_ADDR: `{addr}` is not HOST:PORT"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = match addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::exit(2);
        }
    };
    // LIMITS_*, RATE_LIMIT_*, LIMITER_OP_*, LIMITER_CONFIG: bad values stop
    // the start with the variable and value named.
    limiter::config::load_env()?;
    let opts = app::Options {
        admin_token: env_or("LIMITER_ADMIN_TOKEN", "demo-admin-token"),
        internal_secret: env_or("LIMITER_INTERNAL_SECRET", "demo-internal-secret"),
        trusted_proxies: std::env::var("LIMITER_TRUSTED_PROXIES")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        ..app::Options::default()
    };
    let router = app::app(&opts)?;
    app::schedule_cleanup(Duration::from_secs(3));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!("limiter example server listening on http://{local}");
    println!(
        "dashboard:   http://{local}/monitoring/dashboard  (admin token: {})",
        opts.admin_token
    );
    println!("metrics:     http://{local}/metrics");
    println!("try:         curl -i http://{local}/api/users/7");
    println!(
        "load it:     cargo run --release --example load -- --url http://{local} --duration 20s"
    );
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    let report = limiter::shutdown(Duration::from_secs(5)).await;
    println!(
        "shut down: {} background tasks drained, {} cancelled",
        report.drained, report.cancelled
    );
    Ok(())
}
