use limiter::limit_blocking;

#[limit_blocking(kind = databse)]
async fn f() {}

fn main() {}
