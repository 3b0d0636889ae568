use limiter::limit_blocking;

#[limit_blocking(timeout = "soon", rate = "fast", max_concurrent = 0, key = who)]
async fn f(user: String) {
    let _ = user;
}

fn main() {}
