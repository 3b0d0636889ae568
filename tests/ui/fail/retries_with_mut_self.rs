use limiter::limit_blocking;

struct Counter(u32);

impl Counter {
    #[limit_blocking(op = "counter.bump", retries = 1)]
    async fn bump(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

fn main() {}
