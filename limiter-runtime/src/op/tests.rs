//! Reconfiguration racing the adaptive concurrency limit.

use super::*;
use crate::Registry;

fn adaptive(max: u32) -> OpConfig {
    OpConfig {
        max_concurrent: Some(max),
        adaptive: Some(true),
        adaptive_min: Some(2),
        ..OpConfig::default()
    }
}

fn bound(op: &Op) -> u32 {
    op.core.bulkhead.snapshot().max_concurrent
}

/// An adaptive step computed before a reconfiguration must not reach
/// the bulkhead after it: the new bound and the adaptive limit agree.
#[test]
fn a_late_adaptive_step_cannot_undo_a_reconfiguration() {
    let reg = Registry::new();
    reg.configure("a", adaptive(12)).unwrap();
    let op = reg.op("a");
    let core = &*op.core;
    std::thread::scope(|s| {
        let mut reconfigure = None;
        let step = core.adaptive.observe(true, Duration::ZERO, |limit| {
            // The step is computed; a reconfiguration starts before it
            // is applied. It cannot finish until the step is applied.
            let r = s.spawn(|| reg.configure("a", adaptive(100)).unwrap());
            // Give it every chance to finish first: if it could (the
            // install not waiting for the step), the step would then
            // undo it and the bound below would be 10.
            for _ in 0..200 {
                if r.is_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            reconfigure = Some(r);
            core.bulkhead.set_max(limit);
        });
        assert_eq!(step, Some(10));
        reconfigure.unwrap().join().unwrap();
    });
    assert_eq!(bound(&op), 100, "the reconfiguration's bound is enforced");
    assert_eq!(op.snapshot().adaptive_limit, Some(100));
    // And the adaptive limit still moves the bulkhead.
    core.observe_adaptive(CallOutcome::Failure, 0);
    assert_eq!((bound(&op), core.adaptive.current()), (90, 90));
}

/// A call admitted while the op was adaptive, ending after adaptive was
/// switched off, leaves the configured bound alone. (The interleaving
/// where the step had read the adaptive policy before the change is
/// pinned by `adaptive::tests::observe_does_nothing_once_not_adaptive`:
/// the step now reads the policy installed with the AIMD state.)
#[test]
fn an_adaptive_step_after_adaptive_is_off_changes_nothing() {
    let reg = Registry::new();
    reg.configure("a", adaptive(50)).unwrap();
    let op = reg.op("a");
    let terms = op.core.policy().terms;
    assert!(terms.adaptive, "admitted under the adaptive policy");
    reg.configure(
        "a",
        OpConfig {
            max_concurrent: Some(50),
            ..OpConfig::default()
        },
    )
    .unwrap();
    op.core.observe_adaptive(CallOutcome::Failure, 0);
    assert_eq!(bound(&op), 50);
}
