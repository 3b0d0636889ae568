use limiter::limit_blocking;

#[limit_blocking(deny_blocking)]
async fn f() {
    std::thread::sleep(std::time::Duration::from_millis(1));
}

fn main() {}
