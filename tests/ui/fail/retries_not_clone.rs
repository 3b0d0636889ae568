use limiter::limit_blocking;

struct Conn;

#[limit_blocking(retries = 2)]
async fn f(conn: Conn) {
    let _ = conn;
}

fn main() {}
