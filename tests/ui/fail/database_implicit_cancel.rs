#![deny(deprecated)]
//! `kind = database` on an async fn that names no `strategy` and no
//! `on_timeout` is told, at `database`, what the implicit `cancel` does to
//! a connection pool: drain when the arguments are owned, a server-side
//! cancel when they are borrowed. Naming any strategy (`cancel` included)
//! or a cleanup silences it, and plain `fn`s (offloaded, never dropped
//! mid-query) are not concerned.
use limiter::{limit_blocking, LimitError};

pub struct Pool;

#[limit_blocking(op = "owned", kind = database, timeout = "50ms")]
async fn owned(id: u64) -> Result<u64, LimitError> {
    Ok(id)
}

#[limit_blocking(op = "borrowed", kind = database)]
async fn borrowed(_pool: &Pool, id: u64) -> Result<u64, LimitError> {
    Ok(id)
}

#[limit_blocking(op = "drained", kind = database, strategy = "drain")]
async fn drained(id: u64) -> Result<u64, LimitError> {
    Ok(id)
}

#[limit_blocking(op = "cancelled", kind = database, strategy = "cancel")]
async fn cancelled(_pool: &Pool, id: u64) -> Result<u64, LimitError> {
    Ok(id)
}

async fn cancel_query(_token: u64) {}

#[limit_blocking(op = "cleaned", kind = database, on_timeout = cancel_query)]
async fn cleaned(_pool: &Pool, id: u64) -> Result<u64, LimitError> {
    Ok(id)
}

#[limit_blocking(op = "sync", kind = database)]
fn sync(id: u64) -> Result<u64, LimitError> {
    Ok(id)
}

#[limit_blocking(op = "files", kind = file_io)]
async fn files(id: u64) -> Result<u64, LimitError> {
    Ok(id)
}

fn main() {
    let _ = (owned, borrowed, drained, cancelled, cleaned, sync, files);
}
