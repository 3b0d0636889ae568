//! The registry's metrics through the `metrics` facade, to the
//! `metrics-exporter-prometheus` recorder: the same series as
//! `GET /metrics`, for a service whose metrics all go through `metrics`
//! (the README shows the same with OpenTelemetry).
//!
//! `cargo run --example metrics_export --features metrics`

use std::time::Duration;

use limiter::metrics_export::Publisher;
use limiter::{registry, LimitError, OpConfig};
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The service's recorder first, then the publisher.
    let prometheus = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 1.0])?
        .install_recorder()?;
    let mut publisher = Publisher::new();

    registry().configure(
        "db",
        OpConfig {
            timeout: Some(Duration::from_millis(50)),
            ..OpConfig::default()
        },
    )?;
    for _ in 0..3 {
        registry()
            .op("db")
            .run(None, || async { Ok::<_, LimitError>(()) })
            .await?;
    }

    // In a service: `limiter::metrics_export::spawn_publisher(registry(),
    // Duration::from_secs(10))`, here once before rendering.
    publisher.publish(registry());
    let text = prometheus.render();
    let calls = text
        .lines()
        .find(|l| l.starts_with("limiter_op_calls_total{op=\"db\"}"))
        .ok_or("no limiter_op_calls_total")?;
    println!("{calls}");
    assert!(calls.ends_with(" 3"), "{calls}");
    Ok(())
}
