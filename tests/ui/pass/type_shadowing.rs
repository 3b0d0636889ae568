//! The user's imports cannot shadow the types of the signature: the body's
//! statements are in their own block, after the generated code that names
//! the return type (tracing-attributes' `type_shadowing` case).

use limiter::{background_task, limit_blocking, optimize_route, LimitError};

#[derive(Debug, PartialEq)]
pub struct Error;

impl From<LimitError> for Error {
    fn from(_: LimitError) -> Self {
        Error
    }
}

/// Its variant `Error` shadows the type `Error` under `use Kind::*`.
#[allow(dead_code)]
pub enum Kind {
    Error,
    Other,
}

type Foo = ();

/// Its variant `Foo` shadows the type `Foo` under `use Bar::*`.
#[allow(dead_code)]
pub enum Bar {
    Foo,
}

#[limit_blocking(op = "shadow.result")]
async fn result_shadowed() -> Result<u8, Error> {
    use Kind::*;
    let _ = Other;
    Ok(1)
}

#[limit_blocking(op = "shadow.unit")]
async fn alias_shadowed() -> Foo {
    use Bar::*;
    let _ = Foo;
}

#[limit_blocking(op = "shadow.impl_trait")]
async fn impl_trait_shadowed(n: u8) -> Result<impl Iterator<Item = u8> + Send, Error> {
    use Kind::*;
    let _ = Other;
    Ok(0..n)
}

#[limit_blocking(op = "shadow.plain", kind = cpu_intensive, retries = 1)]
fn plain_shadowed(n: u8) -> Result<u8, Error> {
    use Kind::*;
    let _ = Other;
    Ok(n)
}

#[optimize_route(level = Advanced, name = "GET /shadow")]
async fn route_shadowed() -> Result<u8, Error> {
    use Kind::*;
    let _ = Other;
    Ok(2)
}

#[background_task(name = "shadow.task")]
async fn task_shadowed() -> Result<u8, Error> {
    use Kind::*;
    let _ = Other;
    Ok(3)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(result_shadowed().await, Ok(1));
        assert_eq!(alias_shadowed().await, Ok(()));
        assert_eq!(impl_trait_shadowed(3).await.map(Iterator::count), Ok(3));
        assert_eq!(plain_shadowed(4).await, Ok(4));
        assert_eq!(route_shadowed().await, Ok(2));
        let info = task_shadowed().unwrap().wait().await;
        assert_eq!(info.state, limiter::TaskState::Succeeded);
    });
}
