//! The closed vocabularies of the configuration: operation kinds, rate
//! algorithms, overload policies, backoffs and timeout strategies, each with
//! its one spelling in attributes, environment variables and files.

use std::fmt;
use std::str::FromStr;

macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
        what = $what:literal;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub enum $name { $( $(#[$vmeta])* #[cfg_attr(feature = "serde", serde(rename = $text))] $variant ),+ }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in attributes and files.
            pub fn as_str(&self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text.trim() {
                    $( $text => Ok($name::$variant), )+
                    other => Err(format!(
                        "unknown {} `{}`; expected one of: {}",
                        $what,
                        other,
                        Self::NAMES.join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// Category of a blocking or slow operation; selects preset defaults
    /// (see `OpConfig::preset` in the runtime) and, for offloaded work, the pool it runs on.
    pub enum OpKind {
        /// Database queries.
        Database => "database",
        /// File system reads and writes.
        FileIo => "file_io",
        /// Raw network I/O.
        NetworkIo => "network_io",
        /// CPU-heavy computation; offloaded work runs on the bounded CPU pool.
        CpuIntensive => "cpu_intensive",
        /// Large allocations and copies.
        Memory => "memory",
        /// Calls to third-party APIs.
        ExternalApi => "external_api",
        /// Deliberate waits.
        Sleep => "sleep",
        /// Child processes.
        Subprocess => "subprocess",
    }
    what = "kind";
}

named_enum! {
    /// Rate limiting algorithm.
    pub enum Algorithm {
        /// Token bucket implemented as GCRA: lock-free, smooth, with `burst`.
        TokenBucket => "token_bucket",
        /// Sliding-window counter: the previous window weighted by overlap
        /// plus the current one.
        SlidingWindow => "sliding_window",
        /// Fixed window counter, reset at each window boundary.
        FixedWindow => "fixed_window",
        /// Exact sliding window: never more than the limit in any span of
        /// the window (counts in sub-windows; the default of HTTP rules).
        SlidingExact => "sliding_exact",
    }
    what = "algorithm";
}

named_enum! {
    /// What happens to a new call when the wait queue is full.
    pub enum OverloadPolicy {
        /// Reject the new call with `QueueFull`.
        DropNewest => "drop_newest",
        /// Reject the oldest waiter with `QueueFull` and queue the new call.
        DropOldest => "drop_oldest",
        /// Wait for a queue place (bounded by `queue_timeout`).
        Block => "block",
    }
    what = "overload policy";
}

named_enum! {
    /// Delay growth between retries.
    pub enum Backoff {
        /// `base · 2^attempt`, capped at `backoff_max`, with jitter.
        Exponential => "exponential",
        /// `base` every time, with jitter.
        Constant => "constant",
    }
    what = "backoff";
}

named_enum! {
    /// What a call does when its timeout passes. The strategy is chosen where
    /// the call is made (`Call::background`,
    /// `Call::cache_fallback`) because it changes what the call's
    /// future must be (`'static` to keep running, `Clone` output to be cached).
    pub enum TimeoutStrategy {
        /// Drop the future and return `Timeout`.
        Cancel => "cancel",
        /// Keep the future running as a tracked background task and return
        /// `MovedToBackground { task_id }`.
        Background => "background",
        /// Return the last good value for the same key, else `Timeout`.
        CacheFallback => "cache_fallback",
        /// Return `Timeout`, and let the future finish holding its place
        /// (at most `drain_timeout`), its result discarded.
        Drain => "drain",
    }
    what = "strategy";
}

named_enum! {
    /// Where an op's rate-limit state lives.
    pub enum Backend {
        /// In this process.
        Local => "local",
        /// In Redis, shared by every instance (feature `redis`).
        Redis => "redis",
    }
    what = "backend";
}

named_enum! {
    /// What a Redis-backed limit does when Redis is slow or down.
    pub enum Degradation {
        /// Admit the call: availability over the limit.
        FailOpen => "fail_open",
        /// Refuse the call (`Overloaded`): the limit over availability.
        FailClosed => "fail_closed",
        /// Check the in-process limiter instead (a per-instance share).
        Local => "local",
    }
    what = "degradation";
}

named_enum! {
    /// How a Redis-backed rate limit is checked.
    pub enum SharedMode {
        /// One atomic check in Redis per call: exact, one round trip each.
        Exact => "exact",
        /// Batches of tokens leased from Redis ahead of need and served
        /// from this instance: a Redis call per lease, not per call, at
        /// the price of a bounded over-admission.
        Lease => "lease",
    }
    what = "mode";
}

named_enum! {
    /// Where `max_concurrent` counts calls in flight.
    pub enum ConcurrencyScope {
        /// In this instance.
        Local => "local",
        /// In Redis, across every instance sharing the op (feature `redis`).
        Shared => "shared",
    }
    what = "concurrency";
}

impl OpKind {
    /// Whether offloaded work of this kind runs on the CPU pool rather than
    /// tokio's blocking pool.
    pub fn is_cpu_bound(self) -> bool {
        matches!(self, OpKind::CpuIntensive | OpKind::Memory)
    }
}
