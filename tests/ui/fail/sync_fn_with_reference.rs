use limiter::limit_blocking;

#[limit_blocking(kind = file_io)]
fn read(path: &str) -> usize {
    path.len()
}

fn main() {}
