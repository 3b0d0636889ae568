use limiter::limit_blocking;

trait Repo {
    #[limit_blocking(timeout = "1s")]
    fn get(&self) -> u8;
}

fn main() {}
