//! The optional `tracing` span of one call (feature `tracing-spans`), at
//! DEBUG: `limiter.call`, with the op, the key's fingerprint, the queue
//! wait and the outcome; the body is polled inside it, so its own events
//! nest under the call.
//!
//! Behind a feature because even with DEBUG off it is not free: checking
//! `tracing`'s maximum level at each call and carrying the span's slot
//! through the call future cost 58 instructions a call
//! (`benches/instructions.rs`, `limiter_stack`, no subscriber: 859 → 917),
//! against a budget of about 5. Without the feature, [`Trace`] is empty
//! and every method does nothing (858 → 859). With it, a call whose DEBUG
//! is off checks the level once and carries a null pointer; only an
//! enabled span is built and boxed, off the hot path.

#[cfg(feature = "tracing-spans")]
use crate::op::Op;

/// A call's span: empty without the feature, `None` while DEBUG is off.
#[derive(Default)]
pub(crate) struct Trace {
    #[cfg(feature = "tracing-spans")]
    call: Option<Box<CallTrace>>,
}

/// The span of a traced call and when it began.
#[cfg(feature = "tracing-spans")]
struct CallTrace {
    span: tracing::Span,
    /// The op's clock reading when the call began, in nanoseconds.
    began_ns: u64,
}

/// What [`Trace::enter`] returns: the span entered, until dropped.
#[cfg(feature = "tracing-spans")]
pub(crate) type Entered<'a> = Option<tracing::span::Entered<'a>>;
/// What [`Trace::enter`] returns: nothing to leave.
#[cfg(not(feature = "tracing-spans"))]
pub(crate) struct Entered<'a>(std::marker::PhantomData<&'a ()>);

#[cfg(not(feature = "tracing-spans"))]
impl Trace {
    /// No span without the feature.
    #[inline(always)]
    pub(crate) fn begin(_op: &crate::op::Op, _key: Option<u64>) -> Self {
        Trace {}
    }

    #[inline(always)]
    pub(crate) fn admitted(&self, _op: &crate::op::Op) {}

    #[inline(always)]
    pub(crate) fn ended(&self, _outcome: &'static str) {}

    #[inline(always)]
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered(std::marker::PhantomData)
    }
}

#[cfg(feature = "tracing-spans")]
impl Trace {
    /// The span of a call of `op` with `key` (its fingerprint), when DEBUG
    /// events can be recorded (else empty, after one relaxed load).
    #[inline(always)]
    pub(crate) fn begin(op: &Op, key: Option<u64>) -> Self {
        Trace {
            call: if tracing::level_enabled!(tracing::Level::DEBUG) {
                CallTrace::build(op, key)
            } else {
                None
            },
        }
    }

    /// The call was admitted: its wait (0 when admitted at once).
    #[inline(always)]
    pub(crate) fn admitted(&self, op: &Op) {
        if let Some(call) = &self.call {
            call.admitted(op);
        }
    }

    /// The call (or its last attempt so far) ended with `outcome`.
    #[inline(always)]
    pub(crate) fn ended(&self, outcome: &'static str) {
        if let Some(call) = &self.call {
            call.span.record("outcome", outcome);
        }
    }

    /// Enters the span, if any, until the guard is dropped: around each
    /// poll of the body.
    #[inline(always)]
    pub(crate) fn enter(&self) -> Entered<'_> {
        self.call.as_ref().map(|c| c.span.enter())
    }
}

#[cfg(feature = "tracing-spans")]
impl CallTrace {
    #[cold]
    #[inline(never)]
    fn build(op: &Op, key: Option<u64>) -> Option<Box<Self>> {
        use tracing::field::{display, Empty};
        let span = tracing::debug_span!(
            "limiter.call",
            op = op.name(),
            key = Empty,
            queue_wait_ms = Empty,
            outcome = Empty,
        );
        if span.is_disabled() {
            return None;
        }
        if let Some(key) = key {
            span.record("key", display(format_args!("{key:016x}")));
        }
        Some(Box::new(CallTrace {
            span,
            began_ns: op.core.clock.now_ns(),
        }))
    }

    #[cold]
    fn admitted(&self, op: &Op) {
        let waited = op.core.clock.now_ns().saturating_sub(self.began_ns);
        self.span.record("queue_wait_ms", waited as f64 / 1e6);
    }
}
