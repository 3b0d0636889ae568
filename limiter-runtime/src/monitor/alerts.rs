//! Alerts: raised by threshold checks, kept with an id, a level and a
//! lifecycle (active → acknowledged → resolved).

use std::collections::HashMap;

use serde::Serialize;

/// How bad a condition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    /// Worth a look.
    Warning,
    /// Users are affected.
    Error,
    /// Users are badly affected.
    Critical,
}

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Raised and not yet seen by anyone.
    Active,
    /// Someone is on it. Becomes active again if the level rises.
    Acknowledged,
    /// Over: resolved by hand, or the condition cleared.
    Resolved,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// p95 latency above a response-time threshold.
    ResponseTime,
    /// Share of failed calls above an error-rate threshold.
    ErrorRate,
    /// Slow polls (the executor thread was blocked) above a threshold.
    SlowPolls,
    /// Recent p95 well above the baseline p95.
    Regression,
    /// A circuit breaker is open.
    CircuitOpen,
}

/// One alert.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// Unique in the process, increasing.
    pub id: u64,
    /// Current level (the highest seen while open).
    pub level: AlertLevel,
    /// Lifecycle state.
    pub state: AlertState,
    /// What it is about.
    pub kind: AlertKind,
    /// The route (`route GET /x/{id}`) or op (`op db`).
    pub subject: String,
    /// A sentence with the figures.
    pub message: String,
    /// The measured value: seconds (response time), a ratio (error rate,
    /// regression), a count (slow polls, times a breaker opened).
    pub value: f64,
    /// The threshold it crossed (for a breaker: its failure rate).
    pub threshold: f64,
    /// When first raised, unix milliseconds.
    pub first_seen_ms: u64,
    /// When last seen to hold, unix milliseconds.
    pub last_seen_ms: u64,
    /// Evaluations that found the condition.
    pub occurrences: u64,
    /// When acknowledged.
    pub acknowledged_ms: Option<u64>,
    /// When resolved.
    pub resolved_ms: Option<u64>,
    /// `manual` or `cleared` once resolved.
    pub resolution: Option<&'static str>,
}

impl Alert {
    fn is_open(&self) -> bool {
        self.state != AlertState::Resolved
    }
}

/// A condition found by one evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) kind: AlertKind,
    pub(crate) subject: String,
    pub(crate) level: AlertLevel,
    pub(crate) message: String,
    pub(crate) value: f64,
    pub(crate) threshold: f64,
}

/// How long a condition must hold before it is raised, and before it is
/// called critical (from [`Thresholds`](super::Thresholds)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Holds {
    /// A condition found for less than this raises nothing yet.
    pub(crate) sustain_ms: u64,
    /// A critical condition is reported as an error until it has been
    /// critical for this long.
    pub(crate) critical_ms: u64,
}

/// A condition found at every evaluation since `since_ms`, raised or not.
#[derive(Debug, Clone, Copy)]
struct Condition {
    since_ms: u64,
    /// Since when it has been found at the critical level, without a break.
    critical_since_ms: Option<u64>,
}

impl Condition {
    /// The level to report for a finding at `found`: critical only once it
    /// has been critical for `holds.critical_ms`.
    fn level(&self, found: AlertLevel, holds: Holds, now_ms: u64) -> AlertLevel {
        match self.critical_since_ms {
            Some(t)
                if found == AlertLevel::Critical
                    && now_ms.saturating_sub(t) < holds.critical_ms =>
            {
                AlertLevel::Error
            }
            _ => found,
        }
    }

    /// Whether it has held long enough to be raised.
    fn sustained(&self, holds: Holds, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.since_ms) >= holds.sustain_ms
    }
}

/// Why an alert could not change state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// No alert has that id (or it was dropped from the retained history).
    #[error("no alert with id {0}")]
    NotFound(u64),
    /// The alert is resolved already.
    #[error("alert {0} is already resolved")]
    Resolved(u64),
}

/// All alerts, open and recently resolved.
#[derive(Debug, Default)]
pub(crate) struct AlertBook {
    next_id: u64,
    alerts: Vec<Alert>,
    /// Conditions found at the last evaluation of their subject, by kind
    /// and subject: how long each has held.
    conditions: HashMap<(AlertKind, String), Condition>,
}

/// Resolved alerts kept for display.
const RETAIN_RESOLVED: usize = 500;

impl AlertBook {
    /// Applies the findings of one evaluation of `checked` subjects: a
    /// finding updates the open alert of its kind and subject, or raises a
    /// new one once its condition has held for `holds.sustain_ms`; an open
    /// alert of a checked subject with no finding has cleared and is
    /// resolved. A critical finding is reported as an error until it has
    /// been critical for `holds.critical_ms`.
    pub(crate) fn apply(
        &mut self,
        findings: Vec<Finding>,
        checked: &dyn Fn(&str) -> bool,
        now_ms: u64,
        holds: Holds,
    ) {
        self.track(&findings, checked, now_ms);
        for a in self.alerts.iter_mut().filter(|a| a.is_open()) {
            let still = findings
                .iter()
                .any(|f| f.kind == a.kind && f.subject == a.subject);
            if !still && checked(&a.subject) {
                a.state = AlertState::Resolved;
                a.resolved_ms = Some(now_ms);
                a.resolution = Some("cleared");
            }
        }
        for mut f in findings {
            let cond = self.conditions[&(f.kind, f.subject.clone())];
            f.level = cond.level(f.level, holds, now_ms);
            let open = self
                .alerts
                .iter_mut()
                .find(|a| a.is_open() && a.kind == f.kind && a.subject == f.subject);
            match open {
                Some(a) => {
                    if f.level > a.level {
                        a.level = f.level;
                        a.state = AlertState::Active;
                        a.acknowledged_ms = None;
                    }
                    a.message = f.message;
                    a.value = f.value;
                    a.threshold = f.threshold;
                    a.last_seen_ms = now_ms;
                    a.occurrences += 1;
                }
                None if !cond.sustained(holds, now_ms) => {}
                None => {
                    self.next_id += 1;
                    tracing::warn!(
                        id = self.next_id,
                        level = ?f.level,
                        kind = ?f.kind,
                        subject = %f.subject,
                        "{}",
                        f.message
                    );
                    self.alerts.push(Alert {
                        id: self.next_id,
                        level: f.level,
                        state: AlertState::Active,
                        kind: f.kind,
                        subject: f.subject,
                        message: f.message,
                        value: f.value,
                        threshold: f.threshold,
                        first_seen_ms: now_ms,
                        last_seen_ms: now_ms,
                        occurrences: 1,
                        acknowledged_ms: None,
                        resolved_ms: None,
                        resolution: None,
                    });
                }
            }
        }
        let resolved = self.alerts.iter().filter(|a| !a.is_open()).count();
        if resolved > RETAIN_RESOLVED {
            let mut drop = resolved - RETAIN_RESOLVED;
            self.alerts.retain(|a| {
                if drop > 0 && !a.is_open() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Updates how long each condition has held: a finding starts or
    /// continues its condition; a condition of a checked subject that was
    /// not found again is over.
    fn track(&mut self, findings: &[Finding], checked: &dyn Fn(&str) -> bool, now_ms: u64) {
        self.conditions.retain(|(kind, subject), _| {
            !checked(subject)
                || findings
                    .iter()
                    .any(|f| f.kind == *kind && f.subject == *subject)
        });
        for f in findings {
            let cond = self
                .conditions
                .entry((f.kind, f.subject.clone()))
                .or_insert(Condition {
                    since_ms: now_ms,
                    critical_since_ms: None,
                });
            cond.critical_since_ms = if f.level == AlertLevel::Critical {
                cond.critical_since_ms.or(Some(now_ms))
            } else {
                None
            };
        }
    }

    pub(crate) fn all(&self) -> &[Alert] {
        &self.alerts
    }

    pub(crate) fn acknowledge(&mut self, id: u64, now_ms: u64) -> Result<Alert, AlertError> {
        let a = self.find(id)?;
        if a.state == AlertState::Active {
            a.state = AlertState::Acknowledged;
            a.acknowledged_ms = Some(now_ms);
        }
        Ok(a.clone())
    }

    pub(crate) fn resolve(&mut self, id: u64, now_ms: u64) -> Result<Alert, AlertError> {
        let a = self.find(id)?;
        a.state = AlertState::Resolved;
        a.resolved_ms = Some(now_ms);
        a.resolution = Some("manual");
        Ok(a.clone())
    }

    fn find(&mut self, id: u64) -> Result<&mut Alert, AlertError> {
        let a = self
            .alerts
            .iter_mut()
            .find(|a| a.id == id)
            .ok_or(AlertError::NotFound(id))?;
        if a.state == AlertState::Resolved {
            return Err(AlertError::Resolved(id));
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(level: AlertLevel) -> Finding {
        Finding {
            kind: AlertKind::ResponseTime,
            subject: "route GET /x".into(),
            level,
            message: "slow".into(),
            value: 2.0,
            threshold: 1.0,
        }
    }

    #[test]
    fn lifecycle() {
        let mut book = AlertBook::default();
        let all = |_: &str| true;
        let now = Holds::default();
        book.apply(vec![finding(AlertLevel::Warning)], &all, 1, now);
        book.apply(vec![finding(AlertLevel::Warning)], &all, 2, now);
        assert_eq!(book.all().len(), 1, "the same condition updates one alert");
        let a = &book.all()[0];
        assert_eq!(
            (a.id, a.occurrences, a.first_seen_ms, a.last_seen_ms),
            (1, 2, 1, 2)
        );

        let acked = book.acknowledge(1, 3).unwrap();
        assert_eq!(acked.state, AlertState::Acknowledged);
        book.apply(vec![finding(AlertLevel::Error)], &all, 4, now);
        assert_eq!(
            book.all()[0].state,
            AlertState::Active,
            "escalation reactivates"
        );
        assert_eq!(book.all()[0].level, AlertLevel::Error);

        assert_eq!(book.resolve(1, 5).unwrap().resolution, Some("manual"));
        assert_eq!(book.resolve(1, 6), Err(AlertError::Resolved(1)));
        assert_eq!(book.acknowledge(9, 6), Err(AlertError::NotFound(9)));

        book.apply(vec![finding(AlertLevel::Warning)], &all, 7, now);
        assert_eq!(
            book.all().len(),
            2,
            "a condition that persists is raised anew"
        );
        book.apply(Vec::new(), &|_| false, 8, now);
        assert_eq!(
            book.all()[1].state,
            AlertState::Active,
            "unchecked subjects stay"
        );
        book.apply(Vec::new(), &all, 9, now);
        assert_eq!(book.all()[1].resolution, Some("cleared"));
    }

    const HOLDS: Holds = Holds {
        sustain_ms: 10_000,
        critical_ms: 30_000,
    };

    /// A condition is raised only once it has held for `sustain`; one that
    /// goes away before starts over.
    #[test]
    fn conditions_are_raised_once_sustained() {
        let mut book = AlertBook::default();
        let all = |_: &str| true;
        let warn = || vec![finding(AlertLevel::Warning)];
        book.apply(warn(), &all, 0, HOLDS);
        book.apply(warn(), &all, 5_000, HOLDS);
        book.apply(Vec::new(), &all, 6_000, HOLDS);
        book.apply(warn(), &all, 8_000, HOLDS);
        book.apply(warn(), &all, 16_000, HOLDS);
        assert!(book.all().is_empty(), "broken off at 6 s, held 8 s since");
        book.apply(warn(), &all, 18_000, HOLDS);
        let a = &book.all()[0];
        assert_eq!(
            (a.level, a.first_seen_ms, a.occurrences),
            (AlertLevel::Warning, 18_000, 1)
        );
        // An unchecked subject keeps its condition's clock running.
        book.apply(Vec::new(), &|_| false, 19_000, HOLDS);
        book.apply(warn(), &all, 20_000, HOLDS);
        assert_eq!(book.all()[0].occurrences, 2);
        assert_eq!(book.all()[0].state, AlertState::Active);
    }

    /// Critical is for a condition that stays critical: until then the
    /// alert says error, and a dip below critical restarts the clock.
    #[test]
    fn critical_only_when_sustained() {
        let mut book = AlertBook::default();
        let all = |_: &str| true;
        let at = |level| vec![finding(level)];
        book.apply(at(AlertLevel::Critical), &all, 0, HOLDS);
        book.apply(at(AlertLevel::Critical), &all, 10_000, HOLDS);
        assert_eq!(
            book.all()[0].level,
            AlertLevel::Error,
            "critical for 10 s only"
        );
        book.apply(at(AlertLevel::Error), &all, 20_000, HOLDS);
        book.apply(at(AlertLevel::Critical), &all, 30_000, HOLDS);
        book.apply(at(AlertLevel::Critical), &all, 50_000, HOLDS);
        assert_eq!(
            book.all()[0].level,
            AlertLevel::Error,
            "critical again for 20 s"
        );
        book.acknowledge(1, 55_000).unwrap();
        book.apply(at(AlertLevel::Critical), &all, 60_000, HOLDS);
        let a = &book.all()[0];
        assert_eq!(
            (a.level, a.state),
            (AlertLevel::Critical, AlertState::Active)
        );
        assert_eq!(book.all().len(), 1, "one alert, escalated");
    }
}
