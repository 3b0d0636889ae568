//! The values of `#[limit_blocking]`'s arguments, checked one by one and
//! then against each other, into typed [`Settings`].

use std::str::FromStr;
use std::time::Duration;

use darling::util::SpannedValue;
use limiter_spec::{
    parse_duration, parse_rates, Algorithm, Backend, Backoff, Degradation, OpKind, OverloadPolicy,
};

use crate::attr::{BreakerArg, LimitArgs};
use crate::error::Errors;
use crate::spec::{Settings, Window};

/// The declared configuration, or errors at each bad value.
pub(super) fn settings(args: &LimitArgs, errors: &mut Errors) -> Settings {
    let mut s = Settings::once();
    s.timeout = duration(&args.timeout, errors);
    s.queue_timeout = duration(&args.queue_timeout, errors);
    s.retry.base = duration(&args.backoff_base, errors);
    s.algorithm = named::<Algorithm>(&args.algorithm, errors);
    s.overload = named::<OverloadPolicy>(&args.overload, errors);
    s.retry.backoff = named::<Backoff>(&args.backoff, errors);
    s.kind = args.kind.as_ref().and_then(|kind| {
        let parsed = kind.0.to_string().parse::<OpKind>();
        errors.handle(parsed.map_err(|e| syn::Error::new(kind.0.span(), e)))
    });
    s.burst = count(&args.burst, 1, errors);
    s.max_concurrent = count(&args.max_concurrent, 1, errors);
    s.max_concurrent_per_key = count(&args.max_concurrent_per_key, 1, errors);
    if let Some(retries) = count(&args.retries, 0, errors) {
        s.retry.retries = Some(retries);
    }
    // One `queue` bounds the op-wide queue and, with `key`, each key's.
    s.queue = count(&args.queue, 0, errors);
    s.queue_per_key = s.queue.filter(|_| args.key.is_some());
    if let Some(breaker) = &args.breaker {
        self::breaker(breaker, &mut s, errors);
    }
    rate(args, &mut s, errors);
    backend(args, &mut s, errors);
    s
}

/// `breaker(...)`: its durations, counts and failure rate.
fn breaker(arg: &BreakerArg, s: &mut Settings, errors: &mut Errors) {
    let (f, b) = (&arg.fields, &mut s.breaker);
    b.enabled = Some(arg.enabled);
    b.slow_call = duration(&f.slow_call, errors);
    b.recovery = duration(&f.recovery, errors);
    b.min_calls = count(&f.min_calls, 1, errors);
    b.window = count(&f.window, 1, errors);
    b.half_open_calls = count(&f.half_open_calls, 1, errors);
    b.success_threshold = count(&f.success_threshold, 1, errors);
    b.consecutive_failures = count(&f.consecutive_failures, 1, errors);
    if let Some(rate) = &f.failure_rate {
        if **rate > 0.0 && **rate <= 1.0 {
            b.failure_rate = Some(**rate);
        } else {
            errors.at(rate.span(), "failure_rate must be in (0, 1]");
        }
    }
}

/// `rate` (op-wide, or per key with `key`), and `burst`, which needs a
/// token bucket.
fn rate(args: &LimitArgs, s: &mut Settings, errors: &mut Errors) {
    match (&args.rate, &args.burst) {
        (Some(rate), _) => match parse_rates(rate) {
            Ok(windows) => {
                let windows = windows
                    .iter()
                    .map(|w| Window {
                        count: w.count(),
                        period: w.period(),
                    })
                    .collect();
                match args.key {
                    Some(_) => s.rate_per_key = Some(windows),
                    None => s.rate = Some(windows),
                }
            }
            Err(e) => errors.at(rate.span(), format!("invalid rate `{}`: {e}", **rate)),
        },
        (None, Some(burst)) => errors.at(
            burst.span(),
            "`burst` needs `rate`: add e.g. `rate = \"100/s\"`",
        ),
        (None, None) => {}
    }
    if let (Some(_), Some(algorithm)) = (&args.burst, &args.algorithm) {
        if algorithm.as_str() != Algorithm::TokenBucket.as_str() {
            errors.at(
                algorithm.span(),
                "`burst` applies only to `algorithm = \"token_bucket\"`",
            );
        }
    }
}

/// `backend` (Redis keeps the `rate`) and `degradation` (only for Redis).
fn backend(args: &LimitArgs, s: &mut Settings, errors: &mut Errors) {
    if let (Some(backend), Some(arg)) = (named::<Backend>(&args.backend, errors), &args.backend) {
        s.backend = Some((backend, arg.span()));
        if backend == Backend::Redis && args.rate.is_none() {
            errors.at(
                arg.span(),
                "`backend = \"redis\"` keeps the op's `rate` in Redis: add e.g. `rate = \"100/s\"`",
            );
        }
    }
    if let (Some(d), Some(arg)) = (
        named::<Degradation>(&args.degradation, errors),
        &args.degradation,
    ) {
        s.degradation = Some(d);
        let redis = args
            .backend
            .as_ref()
            .and_then(|b| b.parse::<Backend>().ok());
        if redis != Some(Backend::Redis) {
            errors.at(
                arg.span(),
                "`degradation` says what a Redis-backed limit does when Redis is down: it needs `backend = \"redis\"`",
            );
        }
    }
}

/// A duration (`"10s"`), non-zero.
pub(super) fn duration(
    value: &Option<SpannedValue<String>>,
    errors: &mut Errors,
) -> Option<Duration> {
    let v = value.as_ref()?;
    let parsed = parse_duration(v)
        .map_err(|e| syn::Error::new(v.span(), format!("invalid duration `{}`: {e}", **v)));
    errors.handle(parsed)
}

/// A count of at least `min`.
pub(super) fn count(
    value: &Option<SpannedValue<u32>>,
    min: u32,
    errors: &mut Errors,
) -> Option<u32> {
    let v = value.as_ref()?;
    if **v < min {
        errors.at(v.span(), format!("must be at least {min}"));
        return None;
    }
    Some(**v)
}

/// One of a closed set of names (`strategy = "cancel"`).
pub(super) fn named<T: FromStr<Err = String>>(
    value: &Option<SpannedValue<String>>,
    errors: &mut Errors,
) -> Option<T> {
    let v = value.as_ref()?;
    errors.handle(v.parse::<T>().map_err(|e| syn::Error::new(v.span(), e)))
}
