//! `limiter` under another name: the attributes reach the runtime through
//! `crate = "::lim"`, never through a `::limiter` path that does not exist
//! here.
#![deny(unused_qualifications)]

use lim::{background_task, limit_blocking, optimize_route, LimitError};

/// Limited under a renamed dependency.
#[limit_blocking(crate = "::lim", op = "renamed.limit", timeout = "1s", rate = "10/s")]
pub async fn limited(n: u32) -> u32 {
    n + 1
}

/// A route under a renamed dependency.
#[optimize_route(crate = "::lim", level = Ultra, name = "GET /renamed/{n}", key = n)]
pub async fn route(n: u32) -> Result<u32, LimitError> {
    Ok(n * 2)
}

/// A background task under a renamed dependency.
#[background_task(crate = "::lim", name = "renamed.task")]
pub async fn task() {}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn every_attribute_works_through_the_renamed_crate() {
        assert_eq!(super::limited(1).await, Ok(2));
        assert_eq!(super::route(2).await, Ok(4));
        let info = super::task().unwrap().wait().await;
        assert_eq!(info.state, lim::TaskState::Succeeded);
        assert!(lim::registry()
            .ops()
            .iter()
            .any(|o| o.name() == "renamed.limit"));
    }
}
