//! Under `deny_blocking`, async database clients are silent although
//! their methods share the sync clients' names (`query`, `execute`,
//! `get`): their values are awaited. So are sync clients used inside
//! `spawn_blocking`, and values of unknown origin with a `query` method.
//! The crates are stubs named like the real ones: the scan is syntactic.
use limiter::limit_blocking;

#[derive(Debug)]
pub struct DbError;

impl From<limiter::LimitError> for DbError {
    fn from(_: limiter::LimitError) -> Self {
        DbError
    }
}

mod tokio_postgres {
    use super::DbError;

    pub struct NoTls;
    pub struct Client;
    pub struct Connection;
    pub struct Config;

    pub async fn connect(_: &str, _: NoTls) -> Result<(Client, Connection), DbError> {
        Ok((Client, Connection))
    }

    impl Client {
        pub async fn query(&self, _: &str, _: &[&str]) -> Result<Vec<u64>, DbError> {
            Ok(vec![1])
        }
        pub async fn query_one(&self, _: &str, _: &[&str]) -> Result<u64, DbError> {
            Ok(1)
        }
        pub async fn execute(&self, _: &str, _: &[&str]) -> Result<u64, DbError> {
            Ok(0)
        }
    }

    impl Config {
        #[allow(clippy::new_without_default)]
        pub fn new() -> Config {
            Config
        }
        pub fn host(&mut self, _: &str) -> &mut Config {
            self
        }
        pub async fn connect(&self, _: NoTls) -> Result<(Client, Connection), DbError> {
            Ok((Client, Connection))
        }
    }
}

mod sqlx {
    use super::DbError;

    pub struct PgPool;
    pub struct Query;

    pub fn query(_: &str) -> Query {
        Query
    }

    impl Query {
        pub async fn fetch_one(self, _: &PgPool) -> Result<u64, DbError> {
            Ok(1)
        }
        pub async fn execute(self, _: &PgPool) -> Result<u64, DbError> {
            Ok(0)
        }
    }
}

/// A pool whose `get` is async, giving a `tokio_postgres::Client`: the
/// shape of deadpool's and bb8's.
macro_rules! async_pool {
    ($name:ident, $conn:ident) => {
        mod $name {
            use super::{tokio_postgres::Client, DbError};

            pub struct Pool;
            pub struct $conn(Client);

            impl Pool {
                pub async fn get(&self) -> Result<$conn, DbError> {
                    Ok($conn(Client))
                }
            }

            impl std::ops::Deref for $conn {
                type Target = Client;
                fn deref(&self) -> &Client {
                    &self.0
                }
            }
        }
    };
}

async_pool!(deadpool, Object);
async_pool!(bb8, PooledConnection);

mod postgres {
    use super::DbError;

    pub struct NoTls;
    pub struct Client;

    impl Client {
        pub fn connect(_: &str, _: NoTls) -> Result<Client, DbError> {
            Ok(Client)
        }
        pub fn query(&mut self, _: &str, _: &[&str]) -> Result<Vec<u64>, DbError> {
            Ok(vec![1])
        }
    }
}

mod r2d2 {
    use super::{postgres::Client, DbError};

    pub struct Pool;
    pub struct PooledConnection(Client);

    impl Pool {
        pub fn get(&self) -> Result<PooledConnection, DbError> {
            Ok(PooledConnection(Client))
        }
    }

    impl std::ops::Deref for PooledConnection {
        type Target = Client;
        fn deref(&self) -> &Client {
            &self.0
        }
    }

    impl std::ops::DerefMut for PooledConnection {
        fn deref_mut(&mut self) -> &mut Client {
            &mut self.0
        }
    }
}

/// A value of unknown origin: its `query` may be anything.
pub struct Repository;

impl Repository {
    pub fn query(&self, _: &str) -> Result<u64, DbError> {
        Ok(1)
    }
}

#[limit_blocking(op = "silent.tokio_postgres", deny_blocking)]
async fn tokio_postgres_client(client: &tokio_postgres::Client) -> Result<u64, DbError> {
    let (own, _connection) = tokio_postgres::connect("db", tokio_postgres::NoTls).await?;
    let (configured, _connection) = tokio_postgres::Config::new()
        .host("db")
        .connect(tokio_postgres::NoTls)
        .await?;
    let rows = client.query("SELECT 1", &[]).await?;
    let one = own.query_one("SELECT 1", &[]).await?;
    let n = configured.execute("SELECT 1", &[]).await?;
    Ok(rows.len() as u64 + one + n)
}

#[limit_blocking(op = "silent.sqlx", deny_blocking)]
async fn sqlx_pool(pool: &sqlx::PgPool) -> Result<u64, DbError> {
    let one = sqlx::query("SELECT 1").fetch_one(pool).await?;
    let n = sqlx::query("DELETE FROM t").execute(pool).await?;
    Ok(one + n)
}

#[limit_blocking(op = "silent.pools", deny_blocking)]
async fn async_pools(dead: &deadpool::Pool, bb: &bb8::Pool) -> Result<u64, DbError> {
    let conn = dead.get().await?;
    let one = conn.query_one("SELECT 1", &[]).await?;
    let other = bb.get().await?;
    let n = other.execute("SELECT 1", &[]).await?;
    Ok(one + n)
}

#[limit_blocking(op = "silent.spawn_blocking", deny_blocking)]
async fn sync_clients_elsewhere(pool: std::sync::Arc<r2d2::Pool>) -> Result<usize, DbError> {
    let from_pool = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get()?;
        conn.query("SELECT 1", &[])
    })
    .await
    .map_err(|_| DbError)??;
    let connected = tokio::task::spawn_blocking(|| {
        let mut client = postgres::Client::connect("db", postgres::NoTls)?;
        client.query("SELECT 1", &[])
    })
    .await
    .map_err(|_| DbError)??;
    Ok(from_pool.len() + connected.len())
}

#[limit_blocking(op = "silent.unknown", deny_blocking)]
async fn unknown_origin(repo: &Repository) -> Result<u64, DbError> {
    repo.query("x")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(tokio_postgres_client(&tokio_postgres::Client).await.unwrap(), 2);
        assert_eq!(sqlx_pool(&sqlx::PgPool).await.unwrap(), 1);
        assert_eq!(async_pools(&deadpool::Pool, &bb8::Pool).await.unwrap(), 1);
        let pool = std::sync::Arc::new(r2d2::Pool);
        assert_eq!(sync_clients_elsewhere(pool).await.unwrap(), 2);
        assert_eq!(unknown_origin(&Repository).await.unwrap(), 1);
    });
}
