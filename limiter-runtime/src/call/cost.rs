//! What a call costs: [`Call::cost`] takes `n` from the op's rate limits
//! at admission (a batch of 20 takes 20), [`Call::charge`] takes what the
//! body's result says after it ran (the tokens an LLM answer used).

use super::future::Classify;
use super::Call;
use crate::cost::IntoCost;

/// A call's classifier with a charge after the fact (see
/// [`Call::charge`]): failures are what `inner` says; a successful
/// output is charged what `charge` says.
#[derive(Clone, Copy)]
pub struct Charged<C, F> {
    inner: C,
    charge: F,
}

impl<C: std::fmt::Debug, F> std::fmt::Debug for Charged<C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charged")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<T, E, N, C, F> Classify<Result<T, E>> for Charged<C, F>
where
    C: Classify<Result<T, E>>,
    F: Fn(&T) -> N,
    N: IntoCost,
{
    #[inline]
    fn is_failure(&self, out: &Result<T, E>) -> bool {
        self.inner.is_failure(out)
    }

    #[inline]
    fn charge(&self, out: &Result<T, E>) -> u32 {
        let inner = self.inner.charge(out);
        match out {
            Ok(v) => inner.saturating_add((self.charge)(v).into_cost()),
            Err(_) => inner,
        }
    }
}

impl<'a, S, C> Call<'a, S, C> {
    /// Takes `n` from the op's rate limits (op-wide and the key's) instead
    /// of 1: a batch of 20 items under `"100/min"` leaves 80. The breaker
    /// and the bulkhead still count the call as one call. A cost no window
    /// can ever hold is refused with
    /// [`CostExceedsLimit`](crate::LimitError::CostExceedsLimit) (HTTP
    /// 413), not left waiting. A cost of 0 takes nothing (the call is still
    /// refused while its key is in debt, see [`charge`](Self::charge)).
    ///
    /// A token bucket (the default algorithm) holds its burst, by default
    /// the rate per second: under `"100/min"` that is 2. A call costing
    /// more than the burst (up to the window's count) is admitted from a
    /// full bucket and the next calls wait out the rest (Guava's rule);
    /// for a quota spent in batches set `burst` to the count, or pick a
    /// window algorithm.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use limiter_runtime::{OpConfig, Registry};
    /// let reg = Registry::new();
    /// // A quota of 100 per minute that may be spent at once.
    /// let cfg = OpConfig { burst: Some(100), ..OpConfig::default().with_rate_per_key("100/min")? };
    /// reg.configure("embed", cfg)?;
    /// let op = reg.op("embed");
    /// let batch = vec!["a"; 20];
    /// let n = op
    ///     .call()
    ///     .key(&"alice")
    ///     .cost(batch.len())
    ///     .run(|| async { Ok::<_, limiter_runtime::LimitError>(batch.len()) })
    ///     .await?;
    /// assert_eq!(n, 20);
    /// assert_eq!(op.available(Some(&"alice")), Some(80));
    /// # Ok(()) }
    /// ```
    pub fn cost(mut self, n: impl IntoCost) -> Self {
        self.cost = n.into_cost();
        self
    }

    /// After a successful call, charges the op's rate limits (op-wide and
    /// the key's) what `charge` says of its value: for work whose size is
    /// known only once it ran (the tokens an LLM answer used). The charge
    /// is taken whatever is left, so a key may go into debt: its next
    /// calls are refused until the debt is paid back at the limit's rate
    /// (a token bucket carries the whole debt; see
    /// [`Algorithm`](crate::Algorithm)s). Errors are charged
    /// nothing; for an op kept in Redis the charge is sent off the
    /// caller's path.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use limiter_runtime::{LimitError, OpConfig, Registry};
    /// struct Answer { tokens: u32 }
    /// let reg = Registry::new();
    /// reg.configure("llm", OpConfig::default().with_rate_per_key("1000/min")?)?;
    /// let op = reg.op("llm");
    /// let answer = op
    ///     .call()
    ///     .key(&"alice")
    ///     .charge(|a: &Answer| a.tokens)
    ///     .run(|| async { Ok::<_, LimitError>(Answer { tokens: 1500 }) })
    ///     .await?;
    /// assert_eq!(answer.tokens, 1500);
    /// // 1500 tokens charged at 1000/min: alice's next call waits about
    /// // 90 s (less the bucket's burst of 17).
    /// let err = op.call().key(&"alice").run(|| async { Ok::<_, LimitError>(()) }).await;
    /// let wait = err.unwrap_err().retry_after().unwrap();
    /// assert!(wait.as_secs() >= 88 && wait.as_secs() <= 90, "{wait:?}");
    /// # Ok(()) }
    /// ```
    pub fn charge<F>(self, charge: F) -> Call<'a, S, Charged<C, F>> {
        self.rebuild(|inner| Charged { inner, charge })
    }
}
