//! An axum service protected by `limiter`, with its monitoring dashboard.
//!
//! ```text
//! cargo run --release --example server                 # then open the dashboard URL it prints
//! cargo run --release -p limiter-load -- --duration 20s # in another terminal
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
//! With `--chaos` (or `EXAMPLE_CHAOS=1`) it also serves `GET /chaos`
//! and `GET /chaos/{key}`, whose handlers panic, hang past their timeout or
//! fail at random (see `app.rs`); `cargo run -p limiter-load -- --routes
//! chaos --disconnect 0.1` drives them, and `tools/load/tests/soak.rs` checks that no
//! permit, queue place or memory is lost.
//!
//! Flags and environment: `--addr 127.0.0.1:3000` (or
//! `EXAMPLE_ADDR`), `--chaos` (or `EXAMPLE_CHAOS=1`),
//! `EXAMPLE_ADMIN_TOKEN`, `EXAMPLE_INTERNAL_SECRET`,
//! `EXAMPLE_TRUSTED_PROXIES` (comma-separated), plus every `LIMITS_*` /
//! `LIMITER_*` variable of the README. The example's own settings are
//! under `EXAMPLE_*`: `limiter::config::load_env` refuses any `LIMITER_*`
//! name it does not know (a typo must not pass silently). Logs go to stderr
//! through `tracing-subscriber`, filtered by `RUST_LOG` (default `info`).
//! Ctrl-C and SIGTERM both stop taking connections, drain in-flight
//! requests and background tasks, then exit.

#[path = "app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::Duration;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Command line and environment: the address and whether chaos is on.
fn args() -> Result<(SocketAddr, bool), String> {
    let mut addr = env_or("EXAMPLE_ADDR", "127.0.0.1:3000");
    let mut chaos = match std::env::var("EXAMPLE_CHAOS").as_deref() {
        Err(_) | Ok("" | "0" | "false") => false,
        Ok("1" | "true") => true,
        Ok(other) => {
            return Err(format!(
                "EXAMPLE_CHAOS: `{other}` is not 1, true, 0 or false"
            ))
        }
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--addr" => {
                addr = it
                    .next()
                    .ok_or("--addr needs a value, e.g. 127.0.0.1:3000")?
            }
            "--chaos" => chaos = true,
            "--help" | "-h" => {
                println!("usage: server [--addr HOST:PORT] [--chaos]");
                std::process::exit(0);
            }
            other => {
                return Err(format!(
                    "unknown flag {other}; expected --addr HOST:PORT or --chaos"
                ))
            }
        }
    }
    let addr = addr
        .parse()
        .map_err(|_| format!("--addr / EXAMPLE_ADDR: `{addr}` is not HOST:PORT"))?;
    Ok((addr, chaos))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let (addr, chaos) = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Start-up errors are sentences (`Display`), not debug structs.
    match run(addr, chaos).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How long a client may take to send a request's headers, and how long an
/// idle keep-alive connection is kept: a client that sends half a request
/// and waits holds a connection no longer than this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until Ctrl-C or SIGTERM, then drains. Not
/// `axum::serve`, which sets no header read timeout: hyper's connection
/// builder with a timer closes connections whose headers do not arrive
/// within [`HEADER_READ_TIMEOUT`] (and idle keep-alive connections as well).
async fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // What `into_make_service_with_connect_info` would add: the
                // peer address for `LimiterLayer` and handlers.
                let app = router
                    .clone()
                    .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app))
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}");
        }
    }
}

/// Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: draining in-flight requests");
}

async fn run(addr: SocketAddr, chaos: bool) -> Result<(), Box<dyn std::error::Error>> {
    // LIMITS_*, RATE_LIMIT_*, LIMITER_OP_*, LIMITER_CONFIG: bad values stop
    // the start with the variable and value named.
    limiter::config::load_env()?;
    let opts = app::Options {
        admin_token: env_or("EXAMPLE_ADMIN_TOKEN", "demo-admin-token"),
        internal_secret: env_or("EXAMPLE_INTERNAL_SECRET", "demo-internal-secret"),
        trusted_proxies: std::env::var("EXAMPLE_TRUSTED_PROXIES")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        chaos,
        ..app::Options::default()
    };
    if chaos {
        app::quiet_chaos_panics();
    }
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
    if chaos {
        println!(
            "chaos:       http://{local}/chaos and /chaos/{{key}} panic, hang and fail at random"
        );
    }
    println!(
        "load it:     cargo run --release -p limiter-load -- --url http://{local} --duration 20s"
    );
    serve(listener, router).await;
    let report = limiter::shutdown(Duration::from_secs(5)).await;
    println!(
        "shut down: {} background tasks drained, {} cancelled",
        report.drained, report.cancelled
    );
    Ok(())
}
