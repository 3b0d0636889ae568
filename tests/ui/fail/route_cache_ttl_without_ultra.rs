use limiter::optimize_route;

#[optimize_route(level = Advanced, cache_ttl = "5s")]
async fn handler() {}

fn main() {}
