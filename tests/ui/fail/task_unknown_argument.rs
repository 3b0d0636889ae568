use limiter::background_task;

#[background_task(max_concurent = 2)]
async fn report() {}

fn main() {}
