use limiter::limit_blocking;

#[limit_blocking(backend = "memcached")]
async fn f() {}

fn main() {}
