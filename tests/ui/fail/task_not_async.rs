use limiter::background_task;

#[background_task(name = "report")]
fn report() {}

fn main() {}
