use limiter::limit_blocking;

// A body that does not parse is expanded around its tokens as written: the
// one error is the syntax error, where it is, and callers still see the
// rewritten signature (the plain `fn` became an `async fn`).
#[limit_blocking(timeout = "1s")]
fn half(x: u32) -> u32 {
    let y = x / ;
    y
}

async fn caller() -> Result<u32, limiter::LimitError> {
    let half = half(4).await?;
    Ok(half + 1)
}

fn main() {
    let _ = caller();
}
