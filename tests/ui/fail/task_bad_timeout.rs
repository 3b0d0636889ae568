use limiter::background_task;

#[background_task(timeout = "forever")]
async fn report() {}

fn main() {}
