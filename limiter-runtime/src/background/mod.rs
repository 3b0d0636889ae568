//! The background task manager: tracked tasks with ids, states and timings,
//! bounded concurrency and queue per task name, and graceful shutdown.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use limiter_runtime::{TaskManager, TaskSpec, TaskState};
//! let tasks = TaskManager::new();
//! let handle = tasks
//!     .spawn(TaskSpec::new("report"), || async { Ok::<_, std::io::Error>(()) })
//!     .unwrap();
//! let info = handle.wait().await;
//! assert_eq!(info.state, TaskState::Succeeded);
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

mod admission;

use admission::Admission;

use crate::error::{LimitError, QueueScope, Quota};
use crate::settings::{Backoff, RetryPolicy};
use crate::sync::{Mutex, MutexGuard};

/// Lifecycle of a background task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a free place of its group.
    Pending,
    /// Running.
    Running,
    /// Finished with success.
    Succeeded,
    /// Finished with an error or a panic (see `error`).
    Failed,
    /// Cancelled by hand or by shutdown.
    Cancelled,
    /// Ran out of time.
    TimedOut,
}

impl TaskState {
    /// Whether the task has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Running)
    }
}

/// What the manager knows about one task.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct TaskInfo {
    /// Task id, unique in the process.
    pub id: u64,
    /// Task name (its group).
    pub name: Arc<str>,
    /// The operation whose call timed out into this task, if any.
    pub op: Option<Arc<str>>,
    /// State.
    pub state: TaskState,
    /// Wall-clock creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Time spent pending, milliseconds.
    pub queued_ms: Option<f64>,
    /// Time spent running, milliseconds (so far, while running).
    pub run_ms: Option<f64>,
    /// Attempts made (retries + 1).
    pub attempts: u32,
    /// Error text of a failed, timed-out or cancelled task.
    pub error: Option<String>,
}

/// How a task's output tells success from failure.
#[diagnostic::on_unimplemented(
    message = "a background task must return `()` or a `Result`, not `{Self}`",
    label = "return `()` or a `Result<_, E>` whose `Err` marks the task failed"
)]
pub trait TaskOutput: Send + 'static {
    /// `Some(text)` when the output is a failure.
    fn failure(&self) -> Option<String>;
}

impl TaskOutput for () {
    fn failure(&self) -> Option<String> {
        None
    }
}

impl<T: Send + 'static, E: Debug + Send + 'static> TaskOutput for Result<T, E> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(|e| format!("{e:?}"))
    }
}

/// How to run a group of tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// Group name.
    pub name: Arc<str>,
    /// Tasks of this name running at once (the first spawn of a name sets it).
    pub max_concurrent: Option<u32>,
    /// Tasks of this name waiting beyond that (the first spawn sets it).
    pub queue: Option<u32>,
    /// Retries of a failed or timed-out attempt.
    pub retries: u32,
    /// Deadline of one attempt.
    pub timeout: Option<Duration>,
}

impl TaskSpec {
    /// A spec with the manager's default limits, no retry, no timeout.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            max_concurrent: None,
            queue: None,
            retries: 0,
            timeout: None,
        }
    }
}

/// Result of [`TaskManager::shutdown`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Tasks that were outstanding when shutdown began and finished within
    /// the grace period.
    pub drained: usize,
    /// Tasks cancelled when the grace period ran out.
    pub cancelled: usize,
}

/// Counts and recent tasks, for snapshots.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct BackgroundSnapshot {
    /// Pending tasks.
    pub pending: usize,
    /// Running tasks.
    pub running: usize,
    /// Tasks ever started.
    pub spawned: u64,
    /// Tasks refused because their queue was full.
    pub rejected: u64,
    /// Tracked tasks by state (terminal ones as far as retention keeps them).
    pub by_state: HashMap<TaskState, usize>,
    /// The most recent tasks, newest first (at most 100).
    pub recent: Vec<TaskInfo>,
}

struct Record {
    info: TaskInfo,
    created: Instant,
    started: Option<Instant>,
    abort: Option<AbortHandle>,
    cancel_requested: bool,
    state_tx: watch::Sender<TaskState>,
}

struct Group {
    slots: Arc<Semaphore>,
    /// Tasks of the group that run at once.
    max: u32,
    queue: usize,
    queued: AtomicUsize,
}

struct Inner {
    next_id: AtomicU64,
    records: Mutex<Records>,
    groups: Mutex<HashMap<Arc<str>, Arc<Group>>>,
    default_max_concurrent: u32,
    default_queue: u32,
    /// Outstanding tasks, and whether shutdown began.
    admission: Admission,
    idle: Notify,
    spawned: AtomicU64,
    rejected: AtomicU64,
}

struct Records {
    by_id: HashMap<u64, Record>,
    finished: VecDeque<u64>,
    retain: usize,
}

/// Tracks background tasks; cheap to clone.
#[derive(Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TaskManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snap = self.snapshot();
        f.debug_struct("TaskManager")
            .field("pending", &snap.pending)
            .field("running", &snap.running)
            .field("spawned", &snap.spawned)
            .finish_non_exhaustive()
    }
}

impl Default for TaskManager {
    fn default() -> Self {
        Self::new()
    }
}

/// A handle on one task.
#[derive(Clone)]
pub struct TaskHandle {
    id: u64,
    inner: Arc<Inner>,
    state: watch::Receiver<TaskState>,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl TaskManager {
    /// A manager with 16 tasks per name at once, 1 000 waiting, and the last
    /// 1 000 finished tasks kept for inspection.
    pub fn new() -> Self {
        Self::with_limits(16, 1000, 1000)
    }

    /// A manager with the given defaults per task name and retention.
    pub fn with_limits(max_concurrent: u32, queue: u32, retain: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                next_id: AtomicU64::new(1),
                records: Mutex::new(Records {
                    by_id: HashMap::new(),
                    finished: VecDeque::new(),
                    retain: retain.max(1),
                }),
                groups: Mutex::new(HashMap::new()),
                default_max_concurrent: max_concurrent.max(1),
                default_queue: queue,
                admission: Admission::new(),
                idle: Notify::new(),
                spawned: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        }
    }

    fn group(&self, spec: &TaskSpec) -> Arc<Group> {
        let mut groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups
            .entry(spec.name.clone())
            .or_insert_with(|| {
                let max = spec
                    .max_concurrent
                    .unwrap_or(self.inner.default_max_concurrent)
                    .max(1);
                Arc::new(Group {
                    slots: Arc::new(Semaphore::new(max as usize)),
                    max,
                    queue: spec.queue.unwrap_or(self.inner.default_queue) as usize,
                    queued: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Starts a task built by `make` (called again for each retry). Returns
    /// at once; refused with `QueueFull` when the name's queue is full and
    /// with `Overloaded` after shutdown began.
    pub fn spawn<M, F, R>(&self, spec: TaskSpec, mut make: M) -> Result<TaskHandle, LimitError>
    where
        M: FnMut() -> F + Send + 'static,
        F: Future<Output = R> + Send + 'static,
        R: TaskOutput,
    {
        self.start(spec, move || Some(make()))
    }

    /// Starts the task `fut`, which runs once (a future cannot be made
    /// again, so `spec.retries` is ignored). Refused like
    /// [`spawn`](Self::spawn).
    pub fn spawn_once<F, R>(&self, spec: TaskSpec, fut: F) -> Result<TaskHandle, LimitError>
    where
        F: Future<Output = R> + Send + 'static,
        R: TaskOutput,
    {
        let mut slot = Some(fut);
        self.start(TaskSpec { retries: 0, ..spec }, move || slot.take())
    }

    /// Starts a task whose attempts come from `next` (`None`: no more).
    fn start<M, F, R>(&self, spec: TaskSpec, next: M) -> Result<TaskHandle, LimitError>
    where
        M: FnMut() -> Option<F> + Send + 'static,
        F: Future<Output = R> + Send + 'static,
        R: TaskOutput,
    {
        let (group, permit) = self.admit(&spec)?;
        let Some((id, state)) = self.register(spec.name.clone(), None) else {
            // Shutdown began meanwhile: give the group place back.
            if permit.is_none() {
                group.queued.fetch_sub(1, Ordering::AcqRel);
            }
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(closed(&spec));
        };
        let inner = Arc::clone(&self.inner);
        let guard = FinishGuard {
            inner: Arc::clone(&inner),
            id,
            pending_in: permit.is_none().then(|| Arc::clone(&group)),
        };
        let task = run_task(inner, group, permit, guard, id, &spec, next);
        self.launch(id, task);
        Ok(TaskHandle {
            id,
            inner: Arc::clone(&self.inner),
            state,
        })
    }

    /// Admission of a new task of `spec`'s group: refused with
    /// `Overloaded` once shutdown began, and with `QueueFull` when no place
    /// is free and the group's queue is full. Returns the group and a
    /// running place when one was free at once (`None`: the task took a
    /// queue place and waits for one).
    fn admit(
        &self,
        spec: &TaskSpec,
    ) -> Result<(Arc<Group>, Option<OwnedSemaphorePermit>), LimitError> {
        if self.inner.admission.is_closed() {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(closed(spec));
        }
        let group = self.group(spec);
        let permit = match Arc::clone(&group.slots).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                if group.queued.fetch_add(1, Ordering::AcqRel) >= group.queue {
                    group.queued.fetch_sub(1, Ordering::AcqRel);
                    self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(LimitError::QueueFull {
                        op: spec.name.clone(),
                        scope: QueueScope::Global,
                        retry_after: Duration::from_secs(1),
                        quota: Quota::concurrency(u64::from(group.max), false),
                    });
                }
                None
            }
        };
        Ok((group, permit))
    }

    /// Tracks a future that is already under way (a call that timed out
    /// under `strategy = "background"`): it starts at once, outside any
    /// group's limits. Returns the task id, or `None` once shutdown began
    /// (the caller then cancels the future instead).
    pub(crate) fn adopt<F, R>(&self, name: Arc<str>, fut: F) -> Option<u64>
    where
        F: Future<Output = R> + Send + 'static,
        R: TaskOutput,
    {
        let (id, _) = self.register(name.clone(), Some(name))?;
        let inner = Arc::clone(&self.inner);
        let guard = FinishGuard {
            inner: Arc::clone(&inner),
            id,
            pending_in: None,
        };
        inner.set_running(id);
        inner.set_attempts(id, 1);
        self.launch(id, async move {
            let out = fut.await;
            match out.failure() {
                None => guard.finish(TaskState::Succeeded, None),
                Some(e) => guard.finish(TaskState::Failed, Some(e)),
            }
        });
        Some(id)
    }

    /// Counts a new task as outstanding and records it, in one step under
    /// the records lock, unless shutdown began (`None`). Shutdown cancels
    /// what it finds under that lock after closing admission, so a task is
    /// either refused or found there: none is counted but missed.
    fn register(
        &self,
        name: Arc<str>,
        op: Option<Arc<str>>,
    ) -> Option<(u64, watch::Receiver<TaskState>)> {
        let mut records = self.inner.lock();
        if !self.inner.enter() {
            return None;
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (state_tx, state_rx) = watch::channel(TaskState::Pending);
        self.inner.spawned.fetch_add(1, Ordering::Relaxed);
        records.by_id.insert(
            id,
            Record {
                info: TaskInfo {
                    id,
                    name,
                    op,
                    state: TaskState::Pending,
                    created_unix_ms: unix_ms(),
                    queued_ms: None,
                    run_ms: None,
                    attempts: 0,
                    error: None,
                },
                created: Instant::now(),
                started: None,
                abort: None,
                cancel_requested: false,
                state_tx,
            },
        );
        Some((id, state_rx))
    }

    fn launch(&self, id: u64, task: impl Future<Output = ()> + Send + 'static) {
        let abort = tokio::spawn(task).abort_handle();
        let mut records = self.inner.lock();
        if let Some(r) = records.by_id.get_mut(&id) {
            if r.cancel_requested {
                abort.abort();
            }
            if !r.info.state.is_terminal() {
                r.abort = Some(abort);
            }
        }
    }

    /// What is known about task `id` (finished tasks are kept up to the
    /// retention limit).
    pub fn get(&self, id: u64) -> Option<TaskInfo> {
        self.inner.lock().by_id.get(&id).map(Record::current)
    }

    /// Cancels task `id`; returns whether it was still pending or running.
    pub fn cancel(&self, id: u64) -> bool {
        let mut records = self.inner.lock();
        let Some(r) = records.by_id.get_mut(&id) else {
            return false;
        };
        if r.info.state.is_terminal() {
            return false;
        }
        r.cancel_requested = true;
        if let Some(a) = &r.abort {
            a.abort();
        }
        true
    }

    /// Pending and running tasks.
    pub fn outstanding(&self) -> usize {
        self.inner.admission.outstanding()
    }

    /// Stops taking new tasks, waits up to `grace` for outstanding ones, then
    /// cancels the rest. Every task ends recorded: none is lost silently.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let at_start = self.inner.admission.close();
        let deadline = Instant::now() + grace;
        loop {
            let notified = self.inner.idle.notified();
            if self.outstanding() == 0 {
                return ShutdownReport {
                    drained: at_start,
                    cancelled: 0,
                };
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let cancelled = self.cancel_outstanding(grace);
        tracing::warn!(cancelled, "background tasks cancelled at shutdown");
        ShutdownReport {
            drained: at_start.saturating_sub(cancelled),
            cancelled,
        }
    }

    /// Shutdown's last step, after admission closed: cancels every task
    /// still outstanding and records why. Returns how many.
    fn cancel_outstanding(&self, grace: Duration) -> usize {
        let mut cancelled = 0;
        let mut records = self.inner.lock();
        for r in records.by_id.values_mut() {
            if !r.info.state.is_terminal() {
                cancelled += 1;
                r.cancel_requested = true;
                r.set_state(
                    TaskState::Cancelled,
                    Some(format!("cancelled at shutdown after {grace:?} grace")),
                );
                if let Some(a) = &r.abort {
                    a.abort();
                }
            }
        }
        cancelled
    }

    /// Counts and the most recent tasks.
    pub fn snapshot(&self) -> BackgroundSnapshot {
        let records = self.inner.lock();
        let mut by_state = HashMap::new();
        for r in records.by_id.values() {
            *by_state.entry(r.info.state).or_insert(0) += 1;
        }
        let mut recent: Vec<TaskInfo> = records.by_id.values().map(Record::current).collect();
        recent.sort_by_key(|t| std::cmp::Reverse(t.id));
        recent.truncate(100);
        BackgroundSnapshot {
            pending: by_state.get(&TaskState::Pending).copied().unwrap_or(0),
            running: by_state.get(&TaskState::Running).copied().unwrap_or(0),
            spawned: self.inner.spawned.load(Ordering::Relaxed),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
            by_state,
            recent,
        }
    }
}

/// The refusal of a task of `spec` once shutdown began.
fn closed(spec: &TaskSpec) -> LimitError {
    LimitError::Overloaded {
        op: spec.name.clone(),
        retry_after: Duration::from_secs(1),
    }
}

/// The body of an admitted task: waits for a running place unless it holds
/// `permit` already, runs the attempts, and records how the task ended.
fn run_task<M, F, R>(
    inner: Arc<Inner>,
    group: Arc<Group>,
    permit: Option<OwnedSemaphorePermit>,
    mut guard: FinishGuard,
    id: u64,
    spec: &TaskSpec,
    mut next: M,
) -> impl Future<Output = ()> + Send + 'static
where
    M: FnMut() -> Option<F> + Send + 'static,
    F: Future<Output = R> + Send + 'static,
    R: TaskOutput,
{
    let timeout = spec.timeout;
    let retries = spec.retries;
    async move {
        let _slot: OwnedSemaphorePermit = match permit {
            Some(p) => p,
            None => {
                let p = Arc::clone(&group.slots)
                    .acquire_owned()
                    .await
                    .expect("group semaphores are never closed");
                guard.leave_queue();
                p
            }
        };
        inner.set_running(id);
        let (state, error) = run_attempts(&inner, id, timeout, retries, &mut next).await;
        guard.finish(state, error);
    }
}

/// Runs the attempts `next` yields, each within `timeout`, retrying a
/// failed or timed-out one up to `retries` times with exponential backoff.
/// Returns the task's final state and error text.
async fn run_attempts<M, F, R>(
    inner: &Inner,
    id: u64,
    timeout: Option<Duration>,
    retries: u32,
    next: &mut M,
) -> (TaskState, Option<String>)
where
    M: FnMut() -> Option<F>,
    F: Future<Output = R>,
    R: TaskOutput,
{
    let retry = RetryPolicy {
        retries,
        backoff: Backoff::Exponential,
        base: Duration::from_millis(100),
        max: Duration::from_secs(10),
    };
    let mut attempt = 0;
    let mut last = (
        TaskState::Failed,
        Some("the task could not be started".to_owned()),
    );
    loop {
        let Some(fut) = next() else {
            break last;
        };
        inner.set_attempts(id, attempt + 1);
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.ok(),
            None => Some(fut.await),
        };
        let (state, error) = match result {
            Some(out) => match out.failure() {
                None => break (TaskState::Succeeded, None),
                Some(e) => (TaskState::Failed, Some(e)),
            },
            None => (
                TaskState::TimedOut,
                timeout.map(|t| format!("timed out after {t:?}")),
            ),
        };
        if attempt >= retries {
            break (state, error);
        }
        last = (state, error);
        tokio::time::sleep(crate::retry::backoff_delay(&retry, attempt)).await;
        attempt += 1;
    }
}

impl Inner {
    /// Counts a new task as outstanding unless shutdown began: the task is
    /// either refused or counted by the shutdown (see [`admission`]).
    fn enter(&self) -> bool {
        self.admission.enter()
    }

    fn leave(&self) {
        if self.admission.leave() {
            self.idle.notify_waiters();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_running(&self, id: u64) {
        if let Some(r) = self.lock().by_id.get_mut(&id) {
            if r.info.state == TaskState::Pending {
                r.started = Some(Instant::now());
                r.info.queued_ms = Some(ms(r.created.elapsed()));
                r.set_state(TaskState::Running, None);
            }
        }
    }

    fn set_attempts(&self, id: u64, attempts: u32) {
        if let Some(r) = self.lock().by_id.get_mut(&id) {
            r.info.attempts = attempts;
        }
    }

    fn finish(&self, id: u64, state: TaskState, error: Option<String>) {
        let mut records = self.lock();
        if let Some(r) = records.by_id.get_mut(&id) {
            if !r.info.state.is_terminal() {
                r.info.run_ms = r.started.map(|s| ms(s.elapsed()));
                r.abort = None;
                r.set_state(state, error);
            } else {
                r.abort = None;
            }
        }
        records.finished.push_back(id);
        while records.finished.len() > records.retain {
            if let Some(old) = records.finished.pop_front() {
                records.by_id.remove(&old);
            }
        }
    }
}

impl Record {
    fn set_state(&mut self, state: TaskState, error: Option<String>) {
        self.info.state = state;
        if error.is_some() {
            self.info.error = error;
        }
        let _ = self.state_tx.send(state);
    }

    fn current(&self) -> TaskInfo {
        let mut info = self.info.clone();
        if info.state == TaskState::Running {
            info.run_ms = self.started.map(|s| ms(s.elapsed()));
        }
        info
    }
}

/// Ends a task's record however its future ends: finished, panicked, or
/// dropped by an abort.
struct FinishGuard {
    inner: Arc<Inner>,
    id: u64,
    /// The group whose queue the task still counts in.
    pending_in: Option<Arc<Group>>,
}

impl FinishGuard {
    fn leave_queue(&mut self) {
        if let Some(g) = self.pending_in.take() {
            g.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn finish(mut self, state: TaskState, error: Option<String>) {
        self.end(state, error);
    }

    fn end(&mut self, state: TaskState, error: Option<String>) {
        self.leave_queue();
        if self.id == 0 {
            return;
        }
        self.inner.finish(self.id, state, error);
        self.id = 0;
        self.inner.leave();
    }
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.end(TaskState::Failed, Some("panicked".into()));
        } else {
            self.end(TaskState::Cancelled, Some("cancelled".into()));
        }
    }
}

impl TaskHandle {
    /// Task id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Current state.
    pub fn state(&self) -> TaskState {
        *self.state.borrow()
    }

    /// What the manager knows about the task.
    pub fn info(&self) -> Option<TaskInfo> {
        self.inner.lock().by_id.get(&self.id).map(Record::current)
    }

    /// Cancels the task; returns whether it was still pending or running.
    pub fn cancel(&self) -> bool {
        TaskManager {
            inner: Arc::clone(&self.inner),
        }
        .cancel(self.id)
    }

    /// Waits until the task ends and returns its record.
    pub async fn wait(&self) -> TaskInfo {
        let mut rx = self.state.clone();
        let state = rx
            .wait_for(|s| s.is_terminal())
            .await
            .map(|s| *s)
            .unwrap_or(TaskState::Cancelled);
        self.info().unwrap_or_else(|| TaskInfo {
            id: self.id,
            name: "".into(),
            op: None,
            state,
            created_unix_ms: 0,
            queued_ms: None,
            run_ms: None,
            attempts: 0,
            error: Some("record evicted by retention".into()),
        })
    }
}

/// Model checks (`RUSTFLAGS="--cfg limiter_loom" cargo test --release -p
/// limiter-runtime loom`): the records lock with the admission word.
#[cfg(all(test, limiter_loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// A task registered while shutdown closes admission and sweeps: it is
    /// refused, or the sweep finds and cancels it. (Counting it before
    /// taking the records lock let it slip between the close and the
    /// sweep, and run on after shutdown.)
    #[test]
    fn loom_background_register_racing_shutdown_sweep() {
        loom::model(|| {
            let tasks = TaskManager::new();
            let spawner = {
                let tasks = tasks.clone();
                thread::spawn(move || tasks.register("t".into(), None).map(|(id, _)| id))
            };
            let at_close = tasks.inner.admission.close();
            let cancelled = tasks.cancel_outstanding(Duration::ZERO);
            let id = spawner.join().unwrap();
            assert_eq!(
                cancelled,
                usize::from(id.is_some()),
                "a task escaped shutdown"
            );
            assert_eq!(at_close, cancelled);
            if let Some(id) = id {
                assert_eq!(tasks.get(id).unwrap().state, TaskState::Cancelled);
            }
        });
    }
}
