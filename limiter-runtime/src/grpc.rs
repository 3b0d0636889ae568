//! gRPC (feature `tonic`): a refusal as a `tonic::Status`, and
//! [`OpLayer::grpc`] for tonic servers and clients.
//!
//! | refusal | gRPC code |
//! | --- | --- |
//! | `RateLimited`, per-key `QueueFull` | `RESOURCE_EXHAUSTED` |
//! | global `QueueFull`, `Overloaded`, `CircuitOpen` | `UNAVAILABLE` |
//! | `QueueTimeout`, `Timeout` | `DEADLINE_EXCEEDED` |
//! | `MovedToBackground` | `ABORTED` (the work goes on as a task) |
//!
//! A refusal with a retry hint carries it as metadata: `retry-after` in
//! whole seconds (rounded up, at least 1) and `grpc-retry-pushback-ms` (the
//! hint gRPC clients' retry policies read).

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::error::{LimitError, QueueScope};
use crate::op::Op;
use crate::op_layer::{AsResponse, NoKey, OpLayer};

impl From<LimitError> for Status {
    fn from(e: LimitError) -> Self {
        let code = match &e {
            // As gRPC itself answers a message over its size limit.
            LimitError::RateLimited { .. }
            | LimitError::CostExceedsLimit { .. }
            | LimitError::QueueFull {
                scope: QueueScope::Key,
                ..
            } => Code::ResourceExhausted,
            LimitError::QueueFull { .. }
            | LimitError::Overloaded { .. }
            | LimitError::CircuitOpen { .. } => Code::Unavailable,
            LimitError::QueueTimeout { .. } | LimitError::Timeout { .. } => Code::DeadlineExceeded,
            LimitError::MovedToBackground { .. } => Code::Aborted,
        };
        let mut status = Status::new(code, e.to_string());
        if let Some(wait) = e.retry_after() {
            let secs = wait.as_nanos().div_ceil(1_000_000_000).max(1);
            let ms = wait.as_millis().max(1);
            let md = status.metadata_mut();
            md.insert("retry-after", MetadataValue::from(secs as u64));
            md.insert("grpc-retry-pushback-ms", MetadataValue::from(ms as u64));
        }
        status
    }
}

/// A refusal as the response of a gRPC call: its status, trailers-only.
fn refusal_response<B: Default>(e: LimitError) -> http::Response<B> {
    Status::from(e).into_http()
}

impl OpLayer {
    /// A layer applying `op`'s policy to a tonic server (`Server::builder()
    /// .layer(...)`) or client (around a `Channel`): a refused call is
    /// answered with its gRPC status (see the module's table) instead of
    /// reaching the service.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use limiter_runtime::{registry, OpLayer};
    /// let (_, health) = tonic_health::server::health_reporter();
    /// tonic::transport::Server::builder()
    ///     .layer(OpLayer::grpc(registry().op("grpc")))
    ///     .add_service(health)
    ///     .serve("127.0.0.1:50051".parse()?)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn grpc<B: Default>(
        op: Op,
    ) -> OpLayer<NoKey, AsResponse<fn(LimitError) -> http::Response<B>>> {
        OpLayer::new(op)
            .refusal_response(refusal_response::<B> as fn(LimitError) -> http::Response<B>)
    }
}
