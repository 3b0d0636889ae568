//! The attributes of [`limiter`](https://docs.rs/limiter). Use them through
//! the `limiter` crate, whose documentation describes them in full.
//!
//! Each attribute is a pipeline of stages (`entry`): the arguments parse
//! into typed models that keep their spans (`attr`) and the function into
//! one whose body may stay unparsed tokens (`item`); validation checks
//! everything and collects every error (`valid`) into checked models
//! (`spec`); expansion generates code from them and checks nothing
//! (`expand`). After errors the function is expanded with the default
//! settings, next to the errors.

#![forbid(unsafe_code)]

mod attr;
mod entry;
mod error;
mod expand;
mod item;
mod scan;
mod spec;
mod types;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Limits and watches a function: rate limit, circuit breaker, bulkhead
/// with queue, timeout with a strategy, retries, offloading, metrics — all
/// configured here and checked by the compiler.
///
/// ```
/// use limiter::{limit_blocking, LimitError};
///
/// #[derive(Debug)]
/// enum DbError { Limited(LimitError), Missing }
/// impl From<LimitError> for DbError {
///     fn from(e: LimitError) -> Self { DbError::Limited(e) }
/// }
///
/// #[limit_blocking(op = "db.user", kind = database, timeout = "2s", strategy = "drain",
///                  rate = "100/s", key = tenant, max_concurrent_per_key = 3)]
/// async fn load_user(tenant: String, id: u64) -> Result<String, DbError> {
///     if id == 0 { return Err(DbError::Missing); }
///     Ok(format!("{tenant}/{id}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(load_user("acme".into(), 7).await.unwrap(), "acme/7");
/// assert!(matches!(load_user("acme".into(), 0).await, Err(DbError::Missing)));
/// let snap = limiter::registry().op("db.user").snapshot();
/// assert_eq!(snap.counters.succeeded, 1);
/// # }
/// ```
///
/// # Return type
///
/// A function returning `Result<T, E>` keeps it; `E` must implement
/// `From<LimitError>` (the compiler says so at the return type). Any other
/// return type `T` becomes `Result<T, LimitError>`:
///
/// ```
/// use limiter::{limit_blocking, LimitError};
///
/// #[limit_blocking(timeout = "1s", strategy = "cache_fallback", key = city)]
/// async fn temperature(city: String) -> f32 {
///     21.5
/// }
///
/// /// A plain `fn` becomes `async` and runs on the blocking pool of its kind.
/// #[limit_blocking(kind = cpu_intensive)]
/// fn checksum(data: Vec<u8>) -> u32 {
///     data.iter().map(|b| u32::from(*b)).sum()
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let t: Result<f32, LimitError> = temperature("oslo".into()).await;
/// assert_eq!(t, Ok(21.5));
/// assert_eq!(checksum(vec![1, 2, 3]).await, Ok(6));
/// # }
/// ```
///
/// # Arguments
///
/// | argument | meaning |
/// | --- | --- |
/// | `op = "db"` | registry key (default: the function's path; required on methods, which two impls in one module would otherwise share) |
/// | `kind = database` | preset: `database`, `file_io`, `network_io`, `cpu_intensive`, `memory`, `external_api`, `sleep`, `subprocess` |
/// | `timeout = "10s"` | deadline of one attempt |
/// | `strategy = "cancel"` | on timeout: `cancel`, `background` (owned arguments only), `drain` (answer `Timeout`, let the body finish holding its place for at most the op's `drain_timeout`; owned arguments only), `cache_fallback` (the value must be `Clone`) |
/// | `rate = "100/s"`, `burst`, `algorithm` | rate limit (per key when `key` is given) |
/// | `on_timeout = path` | cleanup run when a call times out, while its bulkhead place is still held (released only once the body is gone and the cleanup has finished): an `async fn(T)` (or `fn(T) -> impl Future<Output = ()>`) called with what the body registered through `limiter::on_timeout::register(value)`, e.g. tokio-postgres's `CancelToken`, so a server-side cancel can only hit its own query |
/// | `cost = expr` | what one call takes from the rate limits: an unsigned integer expression over the parameters (`items.len()`), evaluated before the body runs (default 1); a cost no window holds is refused with `CostExceedsLimit` |
/// | `key = param` | a parameter (`Hash`) keying per-key limits |
/// | `max_concurrent`, `max_concurrent_per_key`, `queue`, `queue_timeout`, `overload` | bulkhead |
/// | `priority = param` | an integer parameter ordering waiters, higher first |
/// | `retries`, `backoff`, `backoff_base` | retries; by-value arguments must be `Clone` (cloned per attempt). Without `retries = N` the body runs once, whatever a `kind` preset or run-time configuration says (a warning is logged if they ask for retries) |
/// | `breaker`, `breaker(failure_rate, min_calls, window, slow_call, recovery, half_open_calls, success_threshold, consecutive_failures, failure = path)` | circuit breaker; `failure`: a `fn(&E) -> bool` naming the errors that count against it (default: every `Err`) |
/// | `backend = "local"` / `"redis"` | where the rate state lives; `redis` (feature `redis`) shares it with every instance through [`Registry::set_redis`](../limiter/struct.Registry.html) |
/// | `degradation = "local"` | with `backend = "redis"`, what the limit does while Redis cannot answer: `fail_open`, `fail_closed`, `local` |
/// | `deny_blocking` / `allow_blocking` | blocking calls in the body: error / silence (default: warning) |
/// | `registry = path` | a function returning the registry the op lives in (`&'static Registry`, `Arc<Registry>`, anything that derefs to one): tests run annotated functions against a registry of their own; default the global one |
/// | `crate = "path"` | where the `limiter` facade is, for renamed dependencies |
///
/// Run-time configuration of the same `op` (`registry().configure`,
/// `LIMITER_OP_*`, `limiter.toml`) overrides these values, which override
/// the `kind` preset.
///
/// # Databases
///
/// The timeout strategy is part of the call's type (draining needs a
/// `Send + 'static` body), so `kind = database` does not change the
/// default `cancel`: it asks. An `async fn` of kind `database` that names
/// neither `strategy` nor `on_timeout` gets a warning at `database`: a
/// query dropped on the client keeps running on the server and its
/// connection goes back to the pool busy. The warning says what to write:
/// `strategy = "drain"` when the arguments are owned, an `on_timeout`
/// server-side cancel when they are borrowed, or `strategy = "cancel"`
/// (which silences it) when the server stops the query itself (a
/// `statement_timeout` no longer than the op's timeout). A plain `fn` runs
/// on the blocking pool and keeps its place until it ends: no warning.
///
/// # Blocking calls
///
/// Calls in an `async fn` body that block the executor thread
/// (`std::thread::sleep`, `std::fs::*`, `TcpStream::connect`,
/// `Command::output`, `reqwest::blocking`, `ureq`, `rusqlite`, `postgres`,
/// `diesel`, `block_on`, `blocking_lock`, …) are reported as warnings at the
/// call (errors under `deny_blocking`); `.await`ed calls are not blocking.
/// A name that async libraries use too (`sleep`, `fs::read`, `File::open`,
/// …) is reported only where its value is thrown away (a statement, `let _
/// =`, `?`, `.unwrap()`, `.expect(..)`): bound, passed on or returned, it
/// may be a future awaited later.
///
/// Method calls block on a sync client, reported at the method (not at
/// the start of the chain) unless `.await`ed. A value is a sync client
/// when it is bound in the body by a `let` with a plain name (through
/// `?`, `.unwrap()`, `.expect(..)`) from `postgres::Client::connect`,
/// `postgres::Config::new()…connect(..)`, `r2d2::Pool::new`,
/// `r2d2::Pool::builder()…build(..)`, `rusqlite::Connection::open*`,
/// diesel's `PgConnection` / `SqliteConnection` / `MysqlConnection::establish`,
/// `redis::Client::open(..)` then `.get_connection()`,
/// `reqwest::blocking::Client::new()` / `::builder()…build()`,
/// `ureq::agent()`, or from a client by a method giving one (`pool.get()`
/// gives a pooled connection, `client.transaction()` a transaction,
/// `conn.prepare(..)` a rusqlite statement, `http.get(url)` a request);
/// or when it is a parameter declared with such a type
/// (`&mut postgres::Client`, `&r2d2::Pool<M>`, `PooledConnection<M>`,
/// `&mut rusqlite::Connection`, `&mut PgConnection`, `redis::Connection`,
/// `&reqwest::blocking::Client`, `ureq::Agent`, also inside `Arc`, `Rc`,
/// `Box`). Its blocking methods: postgres `query`, `query_one`,
/// `query_opt`, `query_raw`, `execute`, `batch_execute`, `prepare`,
/// `transaction`, `commit`, `rollback`, `copy_in`, `copy_out`, …; rusqlite
/// `execute`, `query_row`, `prepare`, the statement's `query_map`, …; r2d2
/// `get` (also `r2d2::Pool::get(&pool)`, and any `Type::method(&client,
/// ..)` path form); redis `get`, `set`, … and `cmd.query(&mut con)`;
/// reqwest `send`, `execute` and the response's `text`, `json`, `bytes`;
/// ureq `call`, `send_*`; diesel's `load`, `execute`, `get_result`,
/// `get_results`, `first` given a client as argument (`users.load(&mut
/// conn)`). A value of unknown origin is never a client, whatever its
/// methods are called, and async clients (tokio-postgres, sqlx, deadpool,
/// bb8) are awaited: they stay silent. Closures given to `spawn_blocking`,
/// `block_in_place` or `spawn` run elsewhere and are not scanned.
///
/// ```
/// use std::time::Duration;
/// use limiter::limit_blocking;
///
/// #[limit_blocking(deny_blocking)]
/// async fn wait_for(flag: tokio::sync::oneshot::Receiver<()>, wait: Duration) -> bool {
///     use tokio::time::sleep;
///     let timer = sleep(wait); // a future, kept: not a blocking call
///     tokio::pin!(timer);
///     tokio::select! {
///         _ = &mut timer => false,
///         _ = flag => true,
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn limit_blocking(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::limit_blocking(args.into(), item.into()).into()
}

/// Turns an `async fn` into a tracked background task: calling it spawns the
/// body on the runtime's background manager and returns
/// `Result<TaskHandle, LimitError>` at once (`QueueFull` when the name's
/// queue is full, `Overloaded` after shutdown began).
///
/// Arguments: `name` (default: the function's path), `max_concurrent`,
/// `queue`, `retries` (arguments must then be `Clone`), `timeout`,
/// `crate`. The body must return `()` or a `Result`, whose `Err` marks the
/// task failed.
///
/// ```
/// use limiter::{background_task, TaskState};
///
/// #[background_task(name = "report", max_concurrent = 2, queue = 100, timeout = "5m")]
/// async fn build_report(month: u32) -> Result<usize, String> {
///     Ok(month as usize * 100)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = build_report(11).unwrap();
/// let info = handle.wait().await;
/// assert_eq!(info.state, TaskState::Succeeded);
/// limiter::shutdown(std::time::Duration::from_secs(5)).await;
/// # }
/// ```
#[proc_macro_attribute]
pub fn background_task(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::background_task(args.into(), item.into()).into()
}

/// A preset of [`macro@limit_blocking`] for request handlers, with a
/// tracing span per call. `level` is `Basic` (metrics only), `Advanced`
/// (30 s timeout moving to the background, breaker, 1000/s cap, bulkhead)
/// or `Ultra` (Advanced + adaptive concurrency, coalescing of identical
/// concurrent calls and a response cache for `cache_ttl`, default 1 s,
/// keyed by `key`). `name` names the route; any `limit_blocking` argument
/// overrides the preset.
///
/// ```
/// use limiter::{optimize_route, LimitError};
///
/// #[optimize_route(level = Ultra, name = "GET /users/{id}", key = id, cache_ttl = "5s")]
/// async fn get_user(id: u64) -> Result<String, LimitError> {
///     Ok(format!("user {id}"))
/// }
///
/// #[optimize_route(level = Basic)]
/// async fn health() -> &'static str {
///     "ok"
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(get_user(7).await.unwrap(), "user 7");
/// assert_eq!(get_user(7).await.unwrap(), "user 7");
/// let snap = limiter::registry().op("GET /users/{id}").snapshot();
/// assert_eq!(snap.counters.cache_hits, 1, "the second answer came from the cache");
/// assert_eq!(health().await, Ok("ok"));
/// # }
/// ```
#[proc_macro_attribute]
pub fn optimize_route(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::optimize_route(args.into(), item.into()).into()
}
