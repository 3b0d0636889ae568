//! Decision counters of the HTTP limiter layer's rules.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Counters of one rule.
#[derive(Debug)]
#[non_exhaustive]
pub struct RuleStats {
    name: Arc<str>,
    shadow: bool,
    allowed: AtomicU64,
    rejected: AtomicU64,
    shadow_rejected: AtomicU64,
    bypassed: AtomicU64,
}

/// What a rule decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleDecision {
    /// Within the limit.
    Allowed,
    /// Over the limit and refused.
    Rejected,
    /// Over the limit, but the rule is in shadow mode: let through.
    ShadowRejected,
    /// An internal caller with the right secret: not limited.
    Bypassed,
}

impl RuleStats {
    /// Counts one decision.
    pub fn count(&self, d: RuleDecision) {
        let c = match d {
            RuleDecision::Allowed => &self.allowed,
            RuleDecision::Rejected => &self.rejected,
            RuleDecision::ShadowRejected => &self.shadow_rejected,
            RuleDecision::Bypassed => &self.bypassed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> RuleSnapshot {
        RuleSnapshot {
            name: self.name.clone(),
            shadow: self.shadow,
            allowed: self.allowed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            shadow_rejected: self.shadow_rejected.load(Ordering::Relaxed),
            bypassed: self.bypassed.load(Ordering::Relaxed),
        }
    }
}

/// Decisions of one rule so far.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleSnapshot {
    /// Rule name.
    pub name: Arc<str>,
    /// Whether the rule only counts (shadow mode).
    pub shadow: bool,
    /// Requests within the limit.
    pub allowed: u64,
    /// Requests refused.
    pub rejected: u64,
    /// Requests over the limit let through by shadow mode.
    pub shadow_rejected: u64,
    /// Internal requests that bypassed the limit.
    pub bypassed: u64,
}

/// The rules of every layer built on a registry.
#[derive(Debug, Default)]
pub(crate) struct RuleTable {
    rules: Mutex<Vec<Arc<RuleStats>>>,
}

impl RuleTable {
    /// The counters of rule `name`, shared by every layer that names it.
    pub(crate) fn get(&self, name: &str, shadow: bool) -> Arc<RuleStats> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = rules
            .iter()
            .find(|r| &*r.name == name && r.shadow == shadow)
        {
            return Arc::clone(r);
        }
        let r = Arc::new(RuleStats {
            name: name.into(),
            shadow,
            allowed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            shadow_rejected: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
        });
        rules.push(Arc::clone(&r));
        r
    }

    pub(crate) fn all(&self) -> Vec<RuleSnapshot> {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| r.snapshot())
            .collect()
    }
}
