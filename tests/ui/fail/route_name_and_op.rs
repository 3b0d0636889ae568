use limiter::optimize_route;

#[optimize_route(level = Basic, name = "GET /", op = "root")]
async fn handler() {}

fn main() {}
