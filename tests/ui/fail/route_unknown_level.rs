use limiter::optimize_route;

#[optimize_route(level = Extreme)]
async fn handler() {}

fn main() {}
