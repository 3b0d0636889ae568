use limiter::background_task;

#[background_task]
async fn report() -> u32 {
    1
}

fn main() {}
