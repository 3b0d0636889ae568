use limiter::{limit_blocking, LimitError};

pub struct Repo {
    hits: u32,
}

pub struct Wrapper<T>(T);

impl Repo {
    #[limit_blocking(op = "repo.get", timeout = "1s")]
    pub async fn get(&self, id: u32) -> u32 {
        id + self.hits
    }

    #[limit_blocking(op = "repo.bump")]
    pub async fn bump(&mut self) -> Result<u32, LimitError> {
        self.hits += 1;
        Ok(self.hits)
    }

    #[limit_blocking(op = "repo.into_hits")]
    pub async fn into_hits(self) -> u32 {
        self.hits
    }

    #[limit_blocking(op = "repo.retry", retries = 2)]
    pub async fn retried(&self, name: String) -> usize {
        name.len() + self.hits as usize
    }
}

impl<T: Clone + Send + Sync> Wrapper<T> {
    #[limit_blocking(op = "wrapper.get")]
    pub async fn get(&self) -> T {
        self.0.clone()
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut repo = Repo { hits: 0 };
        assert_eq!(repo.bump().await, Ok(1));
        assert_eq!(repo.get(1).await, Ok(2));
        assert_eq!(repo.retried("ab".into()).await, Ok(3));
        assert_eq!(repo.into_hits().await, Ok(1));
        assert_eq!(Wrapper(5u8).get().await, Ok(5));
    });
}
