use limiter::background_task;

#[background_task]
async fn report(name: &str) {
    let _ = name;
}

fn main() {}
