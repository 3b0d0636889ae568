use limiter::limit_blocking;

fn not_async(_token: u32) {}

async fn two_arguments(_a: u32, _b: u32) {}

#[limit_blocking(timeout = "1s", on_timeout = not_async)]
async fn first(id: u32) -> u32 {
    id
}

#[limit_blocking(timeout = "1s", on_timeout = two_arguments)]
async fn second(id: u32) -> u32 {
    id
}

#[limit_blocking(timeout = "1s", on_timeout = "cancel")]
async fn third(id: u32) -> u32 {
    id
}

fn main() {}
