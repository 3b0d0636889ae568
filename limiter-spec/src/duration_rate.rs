//! Durations (`"250ms"`, `"10s"`, `"2m"`, `"1h"`) and rates (`"100/s"`,
//! `"60/min, 1000/h"`, `"5/10s"`).

use std::fmt;
use std::time::Duration;

/// Why a duration or rate string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The string was empty or only white space.
    #[error("empty value")]
    Empty,
    /// The numeric part is missing or is not a number.
    #[error("`{0}` is not a number")]
    BadNumber(String),
    /// The unit is missing or unknown.
    #[error("unknown unit `{0}`; expected one of: us, ms, s, m, min, h, d")]
    UnknownUnit(String),
    /// A number without a unit.
    #[error("missing unit; write e.g. `{0}s` or `{0}ms`")]
    MissingUnit(String),
    /// The value is zero, which would disable the mechanism or divide by zero.
    #[error("must be greater than zero")]
    Zero,
    /// The value does not fit.
    #[error("value is too large")]
    TooLarge,
    /// A rate without the `/` between count and period.
    #[error("a rate is written `COUNT/PERIOD`, e.g. `100/s`, `60/min`, `5/10s`")]
    MissingSlash,
}

/// Parses a duration such as `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`.
///
/// Units: `us`, `ms`, `s`, `m`/`min`, `h`, `d`. Fractions are allowed
/// (`"0.5s"`). Zero is rejected: a zero timeout or window is always a mistake.
///
/// ```
/// use std::time::Duration;
/// use limiter_spec::parse_duration;
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert!(parse_duration("0s").is_err());
/// assert!(parse_duration("10").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, SpecError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SpecError::Empty);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    if number.is_empty() {
        return Err(SpecError::BadNumber(text.to_owned()));
    }
    // Checks the syntax (digits and at most one `.`); the value is read
    // exactly from the digits below.
    number
        .parse::<f64>()
        .map_err(|_| SpecError::BadNumber(number.to_owned()))?;
    let nanos_per_unit: u64 = match unit {
        "" => return Err(SpecError::MissingUnit(number.to_owned())),
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" | "sec" | "secs" => 1_000_000_000,
        "m" | "min" | "mins" => 60_000_000_000,
        "h" | "hr" | "hour" | "hours" => 3_600_000_000_000,
        "d" | "day" | "days" => 86_400_000_000_000,
        other => return Err(SpecError::UnknownUnit(other.to_owned())),
    };
    exact_duration(number, nanos_per_unit)
}

/// `number` (digits with at most one `.`) times `nanos_per_unit`, rounded
/// to the nanosecond, computed on integers: through `f64` a long duration
/// would be off by some nanoseconds, and [`DisplayDuration`] would not read
/// back as the same value. Below 1 ns is [`SpecError::Zero`].
fn exact_duration(number: &str, nanos_per_unit: u64) -> Result<Duration, SpecError> {
    let per_unit = u128::from(nanos_per_unit);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let mut units: u128 = 0;
    for digit in whole.bytes() {
        units = units * 10 + u128::from(digit - b'0');
        if units > u128::from(u64::MAX) {
            return Err(SpecError::TooLarge);
        }
    }
    let mut nanos = units * per_unit;
    // Digits past the 20th move the value by less than 1e-6 ns.
    let fraction = &fraction[..fraction.len().min(20)];
    let mut scaled: u128 = 0;
    for digit in fraction.bytes() {
        scaled = scaled * 10 + u128::from(digit - b'0');
    }
    let scaled = scaled * per_unit;
    let denominator = 10u128.pow(fraction.len() as u32);
    nanos += scaled / denominator;
    if nanos == 0 {
        return Err(SpecError::Zero);
    }
    if 2 * (scaled % denominator) >= denominator {
        nanos += 1;
    }
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| SpecError::TooLarge)
}

/// Parses a number of seconds, as used by the seeds' `*_SECONDS` variables
/// (`"5"`, `"30.0"`, `"0.25"`). Zero is rejected.
pub fn parse_seconds(text: &str) -> Result<Duration, SpecError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SpecError::Empty);
    }
    let value: f64 = text
        .parse()
        .map_err(|_| SpecError::BadNumber(text.to_owned()))?;
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // A plain decimal reads as `parse_duration` reads it with `s`.
        return exact_duration(text, 1_000_000_000);
    }
    duration_from_nanos_f64(value * 1e9)
}

fn duration_from_nanos_f64(nanos: f64) -> Result<Duration, SpecError> {
    if nanos.is_nan() || nanos < 1.0 {
        return Err(SpecError::Zero);
    }
    if nanos >= u64::MAX as f64 {
        return Err(SpecError::TooLarge);
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// One admission window: at most `count` calls per `period`.
///
/// Cannot be built with a zero count or a zero period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u32,
    period: Duration,
}

impl Rate {
    /// `count` calls per `period`; both must be non-zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_spec::Rate;
    /// let r = Rate::new(100, Duration::from_secs(1)).unwrap();
    /// assert_eq!(r.count(), 100);
    /// assert!(Rate::new(0, Duration::from_secs(1)).is_err());
    /// ```
    pub fn new(count: u32, period: Duration) -> Result<Self, SpecError> {
        if count == 0 || period.is_zero() {
            return Err(SpecError::Zero);
        }
        Ok(Self { count, period })
    }

    /// `count` calls per second.
    pub fn per_second(count: u32) -> Result<Self, SpecError> {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` calls per minute.
    pub fn per_minute(count: u32) -> Result<Self, SpecError> {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` calls per hour.
    pub fn per_hour(count: u32) -> Result<Self, SpecError> {
        Self::new(count, Duration::from_secs(3600))
    }

    /// Calls allowed per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Length of the window.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Time between two calls at the steady rate (the GCRA emission interval).
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }

    /// Calls per second, as a float.
    pub fn per_second_f64(&self) -> f64 {
        f64::from(self.count) / self.period.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, DisplayDuration(self.period))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Formats a duration in the unit syntax [`parse_duration`] reads back.
#[derive(Debug, Clone, Copy)]
pub struct DisplayDuration(pub Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        const UNITS: [(u128, &str); 6] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ];
        for (size, unit) in UNITS {
            if nanos >= size && nanos.is_multiple_of(size) {
                return write!(f, "{}{}", nanos / size, unit);
            }
        }
        // Not a whole number of microseconds: exact decimal milliseconds.
        let (ms, rest) = (nanos / 1_000_000, nanos % 1_000_000);
        if rest == 0 {
            return write!(f, "{ms}ms");
        }
        let decimals = format!("{rest:06}");
        write!(f, "{ms}.{}ms", decimals.trim_end_matches('0'))
    }
}

/// Parses one window: `"100/s"`, `"60/min"`, `"1000/h"`, `"5/10s"`.
pub fn parse_rate(text: &str) -> Result<Rate, SpecError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SpecError::Empty);
    }
    let (count, period) = text.split_once('/').ok_or(SpecError::MissingSlash)?;
    let count = count.trim();
    let count: u32 = count
        .parse()
        .map_err(|_| SpecError::BadNumber(count.to_owned()))?;
    let period = period.trim();
    // A bare unit means "one of it": `100/s` is `100/1s`.
    let starts_with_digit = period.starts_with(|c: char| c.is_ascii_digit());
    let period = if starts_with_digit {
        parse_duration(period)?
    } else {
        parse_duration(&format!("1{period}"))?
    };
    Rate::new(count, period)
}

/// Parses one or more comma-separated windows: `"60/min, 1000/h"`.
///
/// ```
/// use limiter_spec::parse_rates;
/// let windows = parse_rates("60/min, 1000/h").unwrap();
/// assert_eq!(windows.len(), 2);
/// assert!(parse_rates("0/s").is_err());
/// ```
pub fn parse_rates(text: &str) -> Result<Vec<Rate>, SpecError> {
    if text.trim().is_empty() {
        return Err(SpecError::Empty);
    }
    text.split(',').map(parse_rate).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration(" 2m ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("500us").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0s"), Err(SpecError::Zero));
        assert_eq!(parse_duration(""), Err(SpecError::Empty));
        assert_eq!(
            parse_duration("10x"),
            Err(SpecError::UnknownUnit("x".into()))
        );
        assert_eq!(
            parse_duration("10"),
            Err(SpecError::MissingUnit("10".into()))
        );
        assert!(matches!(parse_duration("s"), Err(SpecError::BadNumber(_))));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(SpecError::BadNumber(_))
        ));
    }

    /// Found by `fuzz/run.sh` (target `duration_rate`): through `f64`,
    /// `"2322222215.1s"` read as 2322222215.099999744 s, displayed as
    /// `2322222215100ms`, which read back 512 ns longer.
    #[test]
    fn long_durations_are_exact_and_display_reads_back() {
        let d = parse_duration("2322222215.1s").unwrap();
        assert_eq!(d, Duration::new(2_322_222_215, 100_000_000));
        assert_eq!(DisplayDuration(d).to_string(), "2322222215100ms");
        let r = parse_rate("1/2322222215.1s").unwrap();
        assert_eq!(parse_rate(&r.to_string()), Ok(r));
        let odd = Duration::from_nanos(659_637_449_722_841_443);
        let shown = DisplayDuration(odd).to_string();
        assert_eq!(shown, "659637449722.841443ms");
        assert_eq!(parse_duration(&shown), Ok(odd));
        assert_eq!(
            DisplayDuration(Duration::from_nanos(1)).to_string(),
            "0.000001ms"
        );
        assert_eq!(parse_duration("0.000001ms"), Ok(Duration::from_nanos(1)));
        // `ns` is no unit here; halves of a nanosecond round up; below
        // that is zero; past u64 nanoseconds is too large.
        assert!(parse_duration("1.5ns").is_err());
        assert_eq!(parse_duration("0.0015us"), Ok(Duration::from_nanos(2)));
        assert_eq!(parse_duration("0.0009us"), Err(SpecError::Zero));
        assert_eq!(
            parse_duration("18446744073.709551615s"),
            Ok(Duration::from_nanos(u64::MAX))
        );
        assert_eq!(
            parse_duration("18446744073.7095516155s"),
            Err(SpecError::TooLarge)
        );
        assert_eq!(
            parse_duration("99999999999999999999999d"),
            Err(SpecError::TooLarge)
        );
        assert_eq!(parse_seconds("2322222215.1"), Ok(d));
        assert_eq!(parse_seconds("1e3"), Ok(Duration::from_secs(1000)));
    }

    #[test]
    fn rates() {
        let r = parse_rate("100/s").unwrap();
        assert_eq!((r.count(), r.period()), (100, Duration::from_secs(1)));
        let r = parse_rate("60/min").unwrap();
        assert_eq!(r.period(), Duration::from_secs(60));
        assert_eq!(r.interval(), Duration::from_secs(1));
        let r = parse_rate("5/10s").unwrap();
        assert_eq!(r.period(), Duration::from_secs(10));
        assert_eq!(parse_rate("0/s"), Err(SpecError::Zero));
        assert_eq!(parse_rate("100"), Err(SpecError::MissingSlash));
        assert!(matches!(parse_rate("x/s"), Err(SpecError::BadNumber(_))));
        assert!(matches!(
            parse_rate("1/fortnight"),
            Err(SpecError::UnknownUnit(_))
        ));
        assert_eq!(parse_rates("60/min, 1000/h").unwrap().len(), 2);
        assert_eq!(r.to_string(), "5/10s");
        assert_eq!(parse_rate("60/min").unwrap().to_string(), "60/1m");
    }
}
