use limiter::limit_blocking;

#[limit_blocking(priority = level)]
async fn f(lvl: u8) {
    let _ = lvl;
}

fn main() {}
