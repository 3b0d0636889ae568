//! Soak and chaos, driven by the examples: the example server runs with
//! `--chaos` (handlers that panic, hang past their timeout and fail at
//! random) under the load tool for a bounded time, with one request in ten
//! given up by its client mid-call (`--disconnect 0.1`). Afterwards every
//! bulkhead in-flight, queue and orphan count and every route's in-flight
//! count is back at zero, no background task is left running, and the
//! server's resident memory after the run is about what it was after a
//! warm-up run.
//!
//! The test runs the *binaries*: this package's load tool (built for the
//! test by cargo) and the facade's example server
//! (`target/<profile>/examples/server`), which `cargo test --workspace`
//! builds before the tests. Alone: `cargo build --all-features --examples
//! -p limiter && cargo test -p limiter-load --test soak` (`-p limiter-load`
//! alone does not build the example, and would run a stale one).
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The warm-up run, after which the reference RSS is taken.
const WARM_UP: &str = "3s";
/// The soak itself.
const SOAK: &str = "20s";
/// Routes under load: chaos plus a database route (queue, breaker), search
/// (coalescing, cache) and reports (moved to the background past 1 s).
const ROUTES: &str = "chaos,users,search,reports";
/// How long the counts may take to settle once the load stops: a report
/// moved to the background runs up to 4 s, an orphan 300 ms.
const SETTLE: Duration = Duration::from_secs(15);

/// An example binary of the facade next to this test's executable
/// (`target/<profile>/deps/soak-…` → `target/<profile>/examples/<name>`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "the example binary {} is missing: build it first with \
         `cargo build --all-features --examples -p limiter` (or run `cargo test --workspace --all-features`)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn log_path(what: &str, port: u16) -> PathBuf {
    std::env::temp_dir().join(format!(
        "limiter-soak-{what}-{}-{port}.log",
        std::process::id()
    ))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The server process: killed when dropped, whatever happened; its output
/// is shown when the test failed.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts the server on a free port (again on another one, should the
    /// port be taken between our probe and its bind).
    fn start() -> Server {
        for _ in 0..3 {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let log = log_path("server", port);
            let out = File::create(&log).expect("server log file");
            let err = out.try_clone().expect("server log file");
            let child = Command::new(example("server"))
                .args(["--chaos", "--addr", &addr.to_string()])
                .env_remove("EXAMPLE_ADDR")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("the example server starts");
            let mut server = Server { child, addr, log };
            if server.wait_ready() {
                return server;
            }
            eprintln!(
                "the server exited at start on {addr}:\n{}",
                tail(&server.log, 10)
            );
        }
        panic!("the server did not start in three attempts");
    }

    /// Whether the server answers (false: it exited at start).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.child.try_wait().expect("server status").is_some() {
                return false;
            }
            if get(self.addr, "/").is_ok_and(|(status, _)| status == 200) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer on {} within 30 s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- server log ({}), last lines ---\n{}",
                self.log.display(),
                tail(&self.log, 40)
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A plain HTTP/1.0 GET: status and body.
/// Sends the start of a request and no more; returns how long the server
/// kept the connection open (it closes it, perhaps after a 408).
fn half_sent_request_is_closed(addr: SocketAddr) -> Duration {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let start = Instant::now();
    conn.write_all(b"GET /api/users/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("half a request");
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {} // a 408 before the close
        }
    }
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    get_with(addr, path, "")
}

/// [`get`] with extra header lines (each ending in `\r\n`).
fn get_with(addr: SocketAddr, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// Resident memory of `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
fn try_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn rss(pid: u32) -> u64 {
    try_rss(pid).unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What the load tool's summary says.
#[derive(Debug, Default)]
struct LoadReport {
    requests: u64,
    rps: f64,
    /// Requests with no response: the chaos route's panics drop the
    /// connection.
    errors: u64,
    /// 504 (timeout) + 408 (queue timeout).
    timeouts: u64,
    /// Requests the client gave up on (`--disconnect`).
    gone: u64,
    /// 503: breakers open, queues full.
    unavailable: u64,
}

/// Runs the load tool for `duration`, killing it if it overruns.
fn load(server: &Server, duration: &str) -> LoadReport {
    let log = log_path("load", server.addr.port());
    let out = File::create(&log).expect("load log file");
    let err = out.try_clone().expect("load log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_limiter-load"))
        .args(["--url", &format!("http://{}", server.addr)])
        .args(["--duration", duration, "--routes", ROUTES])
        .args([
            "--disconnect",
            "0.1",
            "--concurrency",
            "32",
            "--users",
            "50",
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("the load tool starts");
    // Its duration, 2 s of grace, and room for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("load status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the load tool overran its {duration}:\n{}", tail(&log, 40));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(status.success(), "the load tool failed ({status}):\n{text}");
    parse_report(&text).unwrap_or_else(|| panic!("cannot read the load tool's summary:\n{text}"))
}

/// Reads the `total` row of the table (by the header's column names) and
/// the `… req/s overall` line.
fn parse_report(text: &str) -> Option<LoadReport> {
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("route ") && l.contains("requests"))?
        .split_whitespace()
        .collect();
    let total: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("total "))?
        .split_whitespace()
        .collect();
    let col = |name: &str| -> Option<u64> {
        let i = header.iter().position(|h| *h == name)?;
        total.get(i)?.parse().ok()
    };
    let rps = lines
        .iter()
        .find(|l| l.ends_with("req/s overall") || l.contains("req/s overall ("))?
        .split(": ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(LoadReport {
        requests: col("requests")?,
        rps,
        errors: col("err")?,
        timeouts: col("504")? + col("408")?,
        gone: col("gone")?,
        unavailable: col("503")?,
    })
}

/// What is still held once the load stopped, as `(what, count)` pairs
/// that are not zero.
fn still_held(server: &Server) -> (Vec<(String, u64)>, Value) {
    let ops = server.json("/monitoring/ops");
    let summary = server.json("/monitoring/summary");
    let mut held = Vec::new();
    for op in ops["ops"].as_array().expect("an ops list") {
        let name = op["name"].as_str().unwrap_or("?");
        for (what, v) in [
            ("in_flight", &op["bulkhead"]["in_flight"]),
            ("queued", &op["bulkhead"]["queued"]),
            ("blocked", &op["bulkhead"]["blocked"]),
            ("orphans_running", &op["counters"]["orphans_running"]),
        ] {
            let n = v.as_u64().expect("a count");
            if n != 0 {
                held.push((format!("op {name}: {what}"), n));
            }
        }
    }
    for (what, v) in [
        ("routes in_flight", &summary["routes"]["in_flight"]),
        ("background running", &summary["background"]["running"]),
        ("background pending", &summary["background"]["pending"]),
    ] {
        let n = v.as_u64().expect("a count");
        if n != 0 {
            held.push((what.to_owned(), n));
        }
    }
    (held, serde_json::json!({ "ops": ops, "summary": summary }))
}

/// Polls until nothing is held (the background cleanup job of the example
/// runs every 3 s for under 1 s, so a moment with nothing running comes).
fn settle(server: &Server) -> Duration {
    let start = Instant::now();
    loop {
        let (held, state) = still_held(server);
        if held.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < SETTLE,
            "{SETTLE:?} after the load, still held: {held:?}\nstate: {state:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sum of a counter over the chaos ops.
fn chaos_counter(ops: &Value, counter: &str) -> u64 {
    ops["ops"]
        .as_array()
        .expect("an ops list")
        .iter()
        .filter(|op| matches!(op["name"].as_str(), Some("chaos" | "chaos_keyed")))
        .map(|op| op["counters"][counter].as_u64().expect("a counter"))
        .sum()
}

#[test]
fn chaos_under_load_leaves_nothing_held_and_memory_flat() {
    let wall = Instant::now();
    let server = Server::start();

    // Warm-up: pools, tables, arenas and caches reach their working size.
    let warm_up = load(&server, WARM_UP);
    settle(&server);
    let rss_warm = rss(server.pid());

    // The soak, with the server's RSS watched as it goes.
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(rss_warm);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Some(now) = try_rss(server.pid()) {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        // A client that sends half a request's headers and waits is cut
        // off by the server's header read timeout (10 s), during the soak.
        let half_sent = s.spawn(|| half_sent_request_is_closed(server.addr));
        let report = load(&server, SOAK);
        stop.store(true, Ordering::Relaxed);
        let closed_after = half_sent.join().expect("the half-sent request check");
        assert!(
            closed_after >= Duration::from_secs(9) && closed_after < Duration::from_secs(20),
            "a half-sent request was closed after {closed_after:?}"
        );
        report
    });
    let settled_in = settle(&server);
    let rss_end = rss(server.pid());
    let ops = server.json("/monitoring/ops");
    let summary = server.json("/monitoring/summary");
    let (in_flight, queued) = (
        summary["ops"]["in_flight"].as_u64().expect("a count"),
        summary["ops"]["queued"].as_u64().expect("a count"),
    );
    let panics = chaos_counter(&ops, "panics");
    let timeouts = chaos_counter(&ops, "timeouts");
    let cancelled = chaos_counter(&ops, "cancelled");
    let orphans = chaos_counter(&ops, "orphans");

    eprintln!(
        "soak: {} requests in {SOAK} ({:.0} req/s; warm-up {} requests), \
         panics {} (server {panics}), timeouts {} (server {timeouts}), \
         disconnects {} (server cancelled {cancelled}), 503 {}, orphans {orphans}; \
         after: in-flight {in_flight}, queued {queued} (settled in {:.1}s); \
         RSS warm {:.1} MB, end {:.1} MB, peak {:.1} MB; wall {:.1}s",
        report.requests,
        report.rps,
        warm_up.requests,
        report.errors,
        report.timeouts,
        report.gone,
        report.unavailable,
        settled_in.as_secs_f64(),
        mb(rss_warm),
        mb(rss_end),
        mb(peak.load(Ordering::Relaxed)),
        wall.elapsed().as_secs_f64(),
    );

    // Every fault happened, seen from both ends.
    assert!(report.requests > 0, "{report:?}");
    assert!(
        report.errors > 0,
        "no panic dropped a connection: {report:?}"
    );
    assert!(report.timeouts > 0, "no call timed out: {report:?}");
    assert!(report.gone > 0, "no client disconnected: {report:?}");
    assert!(panics > 0, "the server counted no panic");
    assert!(timeouts > 0, "the server counted no timeout");
    assert!(
        cancelled > 0,
        "the server saw no call cancelled by a client going away"
    );
    // Nothing held: `settle` waited for it; nothing came back since.
    assert_eq!((in_flight, queued), (0, 0), "{summary:#}");
    // Memory flat: what the warm-up reached, with room for what grows by
    // design and for allocator slack. By design: the monitor keeps 180
    // samples (6 min at 2 s) of each route's and op's cumulative latency
    // histogram, a few KB each, so the example's RSS climbs ~30 KB/s for
    // its first 6 minutes and then stays put (~27 MB, measured): ~0.7 MB
    // over this test (measured: +0.7 MB in every run). Slack: arenas of
    // threads that first allocate during the soak, pages not yet given
    // back. 4 MB in all: a leak of 200 B per request (20 000 requests or
    // more here) would not fit.
    let bound = rss_warm + 4 * 1024 * 1024;
    assert!(
        rss_end <= bound,
        "RSS grew: {:.1} MB after the warm-up, {:.1} MB at the end (bound {:.1} MB)",
        mb(rss_warm),
        mb(rss_end),
        mb(bound)
    );
}

/// Starts the example with `vars` (and its address through `EXAMPLE_ADDR`):
/// the running server, or its exit status and output when it stopped.
fn start_with(vars: &[(&str, &str)]) -> Result<Server, (std::process::ExitStatus, String)> {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = log_path("env", port);
    let out = File::create(&log).expect("server log file");
    let err = out.try_clone().expect("server log file");
    let mut cmd = Command::new(example("server"));
    cmd.env("EXAMPLE_ADDR", addr.to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("the example server starts");
    let mut server = Server { child, addr, log };
    if server.wait_ready() {
        return Ok(server);
    }
    let status = server.child.wait().expect("exit status");
    Err((status, tail(&server.log, 20)))
}

/// Every variable the example documents (`examples/server/main.rs`, the
/// README) is accepted and has its effect; a bad value stops it with a
/// message naming the variable, printed with `Display`.
#[test]
fn the_example_starts_with_each_documented_variable() {
    let admin = "Authorization: Bearer s3cret\r\n";
    let server = start_with(&[
        ("EXAMPLE_CHAOS", "1"),
        ("EXAMPLE_ADMIN_TOKEN", "s3cret"),
        ("EXAMPLE_INTERNAL_SECRET", "inside"),
        ("EXAMPLE_TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/8"),
        ("RUST_LOG", "limiter=debug"),
        ("LIMITER_OP_FILES_TIMEOUT", "2s"),
        ("LIMITS_MAX_QUEUE_SIZE_GLOBAL", "400"),
    ])
    .unwrap_or_else(|(status, out)| panic!("did not start ({status}):\n{out}"));
    // EXAMPLE_CHAOS: the chaos routes are served.
    let (status, _) = get(server.addr, "/chaos/7").expect("GET /chaos/7");
    assert_ne!(status, 404, "EXAMPLE_CHAOS=1 serves /chaos");
    // EXAMPLE_ADMIN_TOKEN: the new token opens per-client data, the demo
    // token no longer does.
    let path = "/monitoring/limits/customer-1";
    let (status, body) = get_with(server.addr, path, admin).expect(path);
    assert_ne!(status, 401, "{body}");
    let demo = "Authorization: Bearer demo-admin-token\r\n";
    assert_eq!(get_with(server.addr, path, demo).expect(path).0, 403);
    assert_eq!(get(server.addr, path).expect(path).0, 401);
    // LIMITER_OP_FILES_TIMEOUT reached the op.
    let files = server.json("/monitoring/ops/files").to_string();
    assert!(files.contains("\"2s\""), "files' timeout is 2 s: {files}");
    drop(server);

    for (var, value) in [
        ("EXAMPLE_CHAOS", "maybe"),
        ("EXAMPLE_ADDR", "nowhere"),
        ("LIMITER_OP_FILES_TIMEOUT", "soon"),
    ] {
        let Err((status, out)) = start_with(&[(var, value)]) else {
            panic!("{var}={value} started");
        };
        assert!(!status.success(), "{var}={value}: {status}");
        assert!(out.contains(var), "{var}={value} not named:\n{out}");
        assert!(!out.contains("Env {"), "printed with Debug:\n{out}");
    }
}
