//! The dashboard in a real browser: the example server runs in-process, a
//! load goes through its routes, and headless Chromium loads
//! `/monitoring/dashboard`, lets its refresh run, and dumps the DOM, which
//! must hold the latency chart and the tables filled with live data.
//!
//! Chromium is Debian's `chromium` package; when it is missing the test
//! installs it with apt-get (as `.ci/run` does beforehand).

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

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
}
