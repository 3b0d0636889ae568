//! The per-call DEBUG span `limiter.call`: op, key fingerprint, queue
//! wait and outcome, with the body's own events inside it.

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::format::FmtSpan;

use super::*;

/// What the subscriber wrote.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_call_runs_in_a_debug_span_that_tells_its_outcome() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let (_reg, op) = op_with("traced", OpConfig::default().with_rate("1/s").unwrap());
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            op.run(Some(&7u64), || async {
                tracing::debug!("inside the body");
                Ok::<_, LimitError>(())
            })
            .await
            .unwrap();
            let refused = op.run(None, || async { Ok::<_, LimitError>(()) }).await;
            assert!(matches!(refused, Err(LimitError::RateLimited { .. })));
        });
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let inside = lines
        .iter()
        .find(|l| l.contains("inside the body"))
        .unwrap_or_else(|| panic!("no body event: {out}"));
    assert!(inside.contains("limiter.call{"), "{inside}");
    assert!(inside.contains("op=\"traced\""), "{inside}");
    assert!(inside.contains("key="), "the key's fingerprint: {inside}");
    let closed: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("limiter.call{") && l.contains("close"))
        .collect();
    assert_eq!(closed.len(), 2, "{out}");
    assert!(closed[0].contains("queue_wait_ms="), "{}", closed[0]);
    assert!(closed[0].contains("outcome=\"succeeded\""), "{}", closed[0]);
    assert!(
        closed[1].contains("outcome=\"rate_limited\""),
        "{}",
        closed[1]
    );
}
