//! The dashboard in a real browser: the example server runs in-process, a
//! load goes through its routes, and headless Chromium loads
//! `/monitoring/dashboard`, lets its refresh run, and dumps the DOM, which
//! must hold the latency chart and the tables filled with live data. Then
//! the page is driven over the DevTools protocol as a user would: the
//! chart's log axis has its tick labels, and a click on a legend entry hides
//! its line (through refreshes) until a second click shows it again.
//!
//! Chromium is Debian's `chromium` package; when it is missing the test
//! installs it with apt-get (as `.ci/run` does beforehand).

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

fn chromium() -> PathBuf {
    let found = || {
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|name| {
                let out = Command::new("which").arg(name).output().ok()?;
                out.status
                    .success()
                    .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
            })
    };
    if let Some(p) = found() {
        return p;
    }
    eprintln!("chromium is missing: installing Debian's package");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let installed = apt(&["install", "-y", "--no-install-recommends", "chromium"])
        || (apt(&["update"]) && apt(&["install", "-y", "--no-install-recommends", "chromium"]));
    assert!(
        installed,
        "the dashboard test needs Chromium: `apt-get install chromium` failed (run as root, or install it)"
    );
    found().expect("chromium installed but not on PATH")
}

fn dump_dom(browser: &PathBuf, url: &str, extra: &[String]) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--virtual-time-budget=6000",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Headless Chromium with one page, driven over the DevTools protocol.
struct DevTools {
    child: Child,
    profile: PathBuf,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Events read while waiting for a reply, oldest first.
    events: Vec<Value>,
}

impl DevTools {
    /// Starts `browser` and opens `url` in a page of its own profile.
    fn open(browser: &PathBuf, url: &str) -> DevTools {
        let profile =
            std::env::temp_dir().join(format!("limiter-dashboard-{}", std::process::id()));
        let mut child = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("chromium starts");
        // Chromium names its DevTools endpoint on stderr; the rest of its
        // output is drained so it never blocks on a full pipe.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let endpoint = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split_once("DevTools listening on ")
                    .map(|(_, u)| u.trim().to_owned())
            })
            .expect("chromium names its DevTools endpoint");
        std::thread::spawn(move || lines.for_each(drop));
        let (ws, _) = tungstenite::connect(endpoint.as_str()).expect("DevTools connects");
        let mut dt = DevTools {
            child,
            profile,
            ws,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
        };
        let target = dt.send("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = dt.send(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        dt.session = attached["sessionId"].as_str().unwrap().to_owned();
        // Scripts run in the page once it has loaded, not in the blank one
        // it replaces.
        dt.send("Page.enable", json!({}));
        dt.send("Page.navigate", json!({ "url": url }));
        dt.wait_for("Page.loadEventFired");
        dt
    }

    /// The next message from Chromium, a reply or an event.
    fn read(&mut self) -> Value {
        loop {
            if let Message::Text(text) = self.ws.read().expect("DevTools read") {
                return serde_json::from_str(text.as_str()).expect("DevTools JSON");
            }
        }
    }

    /// Waits for the event `method` (or takes it from those read already).
    fn wait_for(&mut self, method: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(i);
        }
        loop {
            let msg = self.read();
            if msg["method"] == method {
                return msg;
            }
        }
    }

    /// Sends one command (to the page once attached) and returns its
    /// result, skipping the events in between.
    fn send(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("DevTools send");
        loop {
            let reply = self.read();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
            if reply["method"].is_string() {
                self.events.push(reply);
            }
        }
    }

    /// Runs `script` (an expression, awaited if it is a promise) in the
    /// page and returns its value.
    fn eval(&mut self, script: &str) -> Value {
        let r = self.send(
            "Runtime.evaluate",
            json!({ "expression": script, "awaitPromise": true, "returnByValue": true }),
        );
        assert!(r["exceptionDetails"].is_null(), "script failed: {r}");
        r["result"]["value"].clone()
    }
}

impl Drop for DevTools {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// In the page: waits for the chart, reads its axis, then clicks the
/// legend entry of `GET /api/users/{id}` twice, noting what the chart and
/// the legend show after each click and after a refresh in between.
const LEGEND_SCRIPT: &str = r#"(async () => {
  const route = 'GET /api/users/{id}';
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const until = async (what, f) => {
    for (let i = 0; i < 200; i++) { if (f()) return; await sleep(50); }
    throw new Error('timed out waiting for ' + what);
  };
  const line = () => document.querySelector(`#latency-chart polyline[data-route="${route}"]`);
  const entry = () => document.querySelector(`#latency-legend li[data-legend-route="${route}"]`);
  const refreshes = () => +document.body.dataset.refreshes;
  const seen = () => ({ line: !!line(), pressed: entry().querySelector('button').getAttribute('aria-pressed'),
                        off: entry().classList.contains('off') });
  await until('the chart', () => document.body.dataset.ready === '1' && line());
  const chart = document.getElementById('latency-chart');
  const axis = { scale: chart.dataset.scale, ticks: [...chart.querySelectorAll('text.tick')].map(t => t.textContent) };
  entry().querySelector('button').click();
  const hidden = seen();
  const r = refreshes();
  await until('a refresh', () => refreshes() > r);
  const afterRefresh = seen();
  entry().querySelector('button').click();
  const shown = seen();
  return { axis, hidden, afterRefresh, shown };
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_live_data_in_a_real_browser() {
    let browser = chromium();
    let opts = app::Options {
        sample_interval: Duration::from_millis(200),
        ..app::Options::default()
    };
    let router = app::app(&opts).expect("the example app builds");
    app::schedule_cleanup(Duration::from_millis(100));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let base = format!("http://{addr}");

    // Live traffic over a few sampling intervals.
    let c = reqwest::Client::new();
    for round in 0..6u64 {
        for i in 0..5u64 {
            let key = format!("key-{i}");
            for path in [
                format!("/api/users/{}", round * 10 + i + 1),
                format!("/api/weather/city{i}"),
                format!("/api/search?q=term{}", i % 2),
                "/api/files/readme.txt".to_string(),
                "/api/speech/20".to_string(),
            ] {
                let r = c
                    .get(format!("{base}{path}"))
                    .header("x-api-key", &key)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().as_u16() < 600);
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let summary: serde_json::Value = c
        .get(format!("{base}/monitoring/summary"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        summary["routes"]["requests"].as_u64().unwrap() >= 100,
        "{summary}"
    );

    let url = format!("{base}/monitoring/dashboard?refresh=500");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&browser, &url, &["--dump-dom".into()]))
        .await
        .unwrap();

    assert!(
        dom.contains(r#"data-ready="1""#),
        "the page never rendered:\n{dom}"
    );
    let refreshes: u32 = dom
        .split(r#"data-refreshes=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse().ok())
        .expect("a refresh counter");
    assert!(refreshes >= 2, "the page refreshed {refreshes} times");

    // The chart: one polyline per route, with points from the history.
    let line = dom
        .split("<polyline")
        .skip(1)
        .find(|p| p.contains(r#"data-route="GET /api/users/{id}""#))
        .expect("a latency line for GET /api/users/{id}");
    let points = line
        .split(r#"points=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("");
    assert!(
        points.split_whitespace().count() >= 2,
        "the line has points: {points:?}"
    );
    for route in [
        "GET /api/weather/{city}",
        "GET /api/search",
        "GET /api/files/{name}",
    ] {
        assert!(
            dom.contains(&format!(r#"<tr data-route="{route}""#)),
            "routes table row {route}"
        );
    }
    // Ops with their breakers and queue depths, tasks, all from live data.
    for op in ["db", "weather", "files"] {
        assert!(
            dom.contains(&format!(r#"<tr data-op="{op}""#)),
            "ops row {op}"
        );
    }
    // The Timeout column shows the configured timeout (the API writes it
    // as the config does: "300ms").
    let db_row = dom
        .split(r#"<tr data-op="db""#)
        .nth(1)
        .and_then(|s| s.split("</tr>").next())
        .unwrap_or("");
    assert!(db_row.contains(">300 ms<"), "db's timeout column: {db_row}");
    assert!(
        dom.contains(r#"id="breakers-table""#) && dom.contains(r#"data-state="closed""#),
        "breaker states"
    );
    assert!(dom.contains("<tr data-task-id="), "background tasks rows");
    assert!(
        dom.contains(r#"<tr data-stream="tts.audio""#),
        "streams table row"
    );
    assert!(
        !dom.contains(r#"id="error-banner" role="alert" class="#)
            || !dom.contains("Connection error")
    );

    // The latency chart as a user handles it.
    let browser = chromium();
    let url = format!("{base}/monitoring/dashboard?refresh=300");
    let seen =
        tokio::task::spawn_blocking(move || DevTools::open(&browser, &url).eval(LEGEND_SCRIPT))
            .await
            .unwrap();
    assert_eq!(seen["axis"]["scale"], "log", "{seen}");
    let ticks: Vec<&str> = seen["axis"]["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let decades = ["10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s", "10 s"];
    assert!(
        ticks.iter().filter(|t| decades.contains(t)).count() >= 2,
        "decade tick labels on the log axis: {ticks:?}"
    );
    let hidden = json!({ "line": false, "pressed": "false", "off": true });
    assert_eq!(seen["hidden"], hidden, "a click hides the line: {seen}");
    assert_eq!(seen["afterRefresh"], hidden, "and it stays hidden: {seen}");
    assert_eq!(
        seen["shown"],
        json!({ "line": true, "pressed": "true", "off": false }),
        "a second click shows it: {seen}"
    );
}
