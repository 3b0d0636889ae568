#![deny(deprecated)]
use limiter::limit_blocking;

#[limit_blocking]
async fn f() {
    std::thread::sleep(std::time::Duration::from_millis(1));
    let _ = std::fs::read_to_string("Cargo.toml");
}

fn main() {}
