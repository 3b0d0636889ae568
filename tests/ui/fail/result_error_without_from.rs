use limiter::limit_blocking;

#[derive(Debug)]
struct MyError;

#[limit_blocking(timeout = "1s")]
async fn f() -> Result<u8, MyError> {
    Ok(1)
}

fn main() {}
