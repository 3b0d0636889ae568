use limiter::limit_blocking;

#[limit_blocking(timeout = "1s")]
const fn answer() -> u8 {
    42
}

fn main() {}
