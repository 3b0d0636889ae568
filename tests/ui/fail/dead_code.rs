#![deny(dead_code)]
// An unused annotated function is still reported as unused.
use limiter::{background_task, limit_blocking, optimize_route};

#[limit_blocking(op = "unused")]
async fn unused_async() {}

#[limit_blocking(op = "unused.plain")]
fn unused_plain() {}

#[optimize_route(level = Basic, name = "GET /unused")]
async fn unused_route() {}

#[background_task(name = "unused.task")]
async fn unused_task() {}

fn main() {}
