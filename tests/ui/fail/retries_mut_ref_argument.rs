use limiter::limit_blocking;

#[limit_blocking(retries = 2)]
async fn fill(buf: &mut Vec<u8>) -> usize {
    buf.push(1);
    buf.len()
}

fn main() {}
