use limiter::limit_blocking;

#[limit_blocking(rate = "1/s", key = user_id)]
async fn f(user: String) {
    let _ = user;
}

fn main() {}
