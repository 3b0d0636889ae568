//! The Redis the tests run against: the one on 127.0.0.1:6379 when it
//! answers, else a private `redis-server` of this test process on a free
//! port, started once ([`redis_url`]) and stopped when the process exits.
//! `redis-server` is installed with apt-get (Debian's package) when missing,
//! as tests/dashboard.rs installs Chromium.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The URL of the Redis shared by this process's tests.
pub(crate) fn redis_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if answers(6379) {
            return "redis://127.0.0.1:6379/".to_owned();
        }
        let port = free_port();
        eprintln!("no Redis answers on 127.0.0.1:6379: starting a private one on port {port}");
        start_private(port);
        format!("redis://127.0.0.1:{port}/")
    })
}

/// Whether a Redis on 127.0.0.1:`port` answers `PING`.
pub(crate) fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = [0u8; 5];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG"
}

/// A port nobody listens on now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// The `redis-server` command, installed with apt-get when missing.
pub(crate) fn redis_server() -> &'static str {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let found = || {
            Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if found() {
            return;
        }
        eprintln!("redis-server is missing: installing Debian's package");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let installed = apt(&["install", "-y", "--no-install-recommends", "redis-server"])
            || (apt(&["update"])
                && apt(&["install", "-y", "--no-install-recommends", "redis-server"]));
        assert!(
            installed && found(),
            "the Redis tests need redis-server: `apt-get install redis-server` failed (run as root, or install it)"
        );
    });
    "redis-server"
}

/// Starts the private server on `port` under a shell that kills it when
/// its standard input closes, which happens when this process exits (the
/// write end lives in a static, never dropped): no server outlives the test
/// run, even one that panics or is killed.
fn start_private(port: u16) {
    static KEEPER: OnceLock<(Child, ChildStdin)> = OnceLock::new();
    let server = redis_server();
    let mut child = Command::new("sh")
        .args([
            "-c",
            r#""$0" "$@" </dev/null & pid=$!; read -r _ignored; kill "$pid""#,
            server,
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let stdin = child.stdin.take().expect("piped stdin");
    for _ in 0..250 {
        if answers(port) {
            let _ = KEEPER.set((child, stdin));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the private redis-server did not start on port {port}");
}
