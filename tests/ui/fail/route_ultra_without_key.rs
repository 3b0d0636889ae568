use limiter::optimize_route;

#[optimize_route(level = Ultra)]
async fn handler(id: u64) -> u64 {
    id
}

fn main() {}
