use limiter::limit_blocking;

pub struct Catalog;

impl Catalog {
    async fn cached(&self, id: u64, _region: &str) -> String {
        format!("cached-{id}")
    }

    #[limit_blocking(op = "catalog.item", timeout = "1s", fallback = Self::cached)]
    pub async fn item(&self, id: u64, region: &str) -> String {
        format!("{region}-{id}")
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(Catalog.item(1, "eu")), "eu-1");
}
