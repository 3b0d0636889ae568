use limiter::limit_blocking;

#[limit_blocking(op = "generic")]
async fn largest<T>(items: Vec<T>) -> Option<T>
where
    T: Ord + Send,
{
    items.into_iter().max()
}

#[limit_blocking(op = "lifetime")]
async fn first_word<'a>(text: &'a str) -> &'a str {
    text.split_whitespace().next().unwrap_or("")
}

#[limit_blocking(op = "impl_trait")]
async fn total(values: impl IntoIterator<Item = u32> + Send) -> u32 {
    values.into_iter().sum()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(largest(vec![3, 9, 2]).await, Ok(Some(9)));
        assert_eq!(first_word("hello world").await, Ok("hello"));
        assert_eq!(total(vec![1, 2, 3]).await, Ok(6));
    });
}
