mod deps {
    pub use ::limiter as lim;
}

use limiter::limit_blocking;

#[limit_blocking(op = "renamed", crate = "crate::deps::lim")]
async fn f() -> u8 {
    7
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(f()), Ok(7));
}
