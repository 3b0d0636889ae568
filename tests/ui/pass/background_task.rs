use limiter::{background_task, TaskState};

#[derive(Clone)]
pub struct Job {
    pub id: u64,
}

/// Builds a report in the background.
#[background_task(name = "report", max_concurrent = 2, queue = 10, retries = 1, timeout = "30s")]
pub async fn report(job: Job) -> Result<u64, std::io::Error> {
    Ok(job.id)
}

#[background_task]
async fn fire_and_forget() {}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let handle = report(Job { id: 7 }).unwrap();
        assert_eq!(handle.wait().await.state, TaskState::Succeeded);
        assert_eq!(fire_and_forget().unwrap().wait().await.state, TaskState::Succeeded);
    });
}
