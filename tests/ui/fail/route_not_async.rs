use limiter::optimize_route;

#[optimize_route(level = Basic)]
fn handler() {}

fn main() {}
