use limiter::limit_blocking;

#[limit_blocking(op = "jobs", max_concurrent = 2, queue = 10, key = tenant, max_concurrent_per_key = 1, priority = urgency)]
async fn run_job(tenant: String, urgency: u8, payload: Vec<u8>) -> usize {
    tenant.len() + usize::from(urgency) + payload.len()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(run_job("acme".into(), 2, vec![1])), Ok(7));
}
