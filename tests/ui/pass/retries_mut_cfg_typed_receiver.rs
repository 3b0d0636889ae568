use std::sync::Arc;

use limiter::{background_task, limit_blocking};

pub struct Svc;

impl Svc {
    #[limit_blocking(op = "svc.handle", retries = 1, priority = prio, max_concurrent = 1, queue = 4)]
    pub async fn handle(self: &Arc<Self>, mut items: Vec<u8>, prio: &u64, #[cfg(any())] _gone: String) -> usize {
        items.push(*prio as u8);
        items.len()
    }
}

#[limit_blocking(op = "push", retries = 2)]
async fn push(mut v: Vec<u8>) -> usize {
    v.push(1);
    v.len()
}

#[background_task(name = "mut_task", retries = 1)]
async fn mut_task(mut v: Vec<u8>) {
    v.clear();
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let svc = Arc::new(Svc);
        assert_eq!(svc.handle(vec![1], &u64::MAX).await, Ok(2));
        assert_eq!(push(vec![]).await, Ok(1));
        mut_task(vec![1]).unwrap().wait().await;
    });
}
