use std::fmt::Debug;

use limiter::limit_blocking;

pub struct Cache<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Cache<K, V>
where
    K: PartialEq + Sync,
    V: Clone + Send + Sync,
{
    #[limit_blocking(op = "cache.get", timeout = "1s")]
    pub async fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: PartialEq<K> + Debug + Sync + ?Sized,
    {
        self.entries.iter().find(|(k, _)| key == k).map(|(_, v)| v.clone())
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cache = Cache { entries: vec![(1u32, "one")] };
    assert_eq!(rt.block_on(cache.get(&1u32)), Ok(Some("one")));
}
