use limiter::limit_blocking;

#[limit_blocking(op = "search", backend = "redis")]
async fn search() {}

#[limit_blocking(op = "db", degradation = "fail_open", rate = "10/s")]
async fn db() {}

#[limit_blocking(op = "api", backend = "redis", rate = "10/s", degradation = "fail_later")]
async fn api() {}

fn main() {}
