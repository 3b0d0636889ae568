use limiter::optimize_route;

#[optimize_route(name = "GET /")]
async fn handler() {}

fn main() {}
