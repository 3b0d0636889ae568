//! Under `deny_blocking`, the methods of a sync database client are errors
//! at the method, not at the start of the chain: clients bound from a
//! blocking constructor, got from one (`pool.get()`, `transaction()`) or
//! declared as parameters. The crates are stubs named like the real ones:
//! the scan is syntactic.
use limiter::limit_blocking;

#[derive(Debug)]
pub struct DbError;

impl From<limiter::LimitError> for DbError {
    fn from(_: limiter::LimitError) -> Self {
        DbError
    }
}

mod postgres {
    use super::DbError;

    pub struct NoTls;
    pub struct Client;
    pub struct Transaction<'a>(&'a mut Client);
    pub struct Config;

    impl Client {
        pub fn connect(_: &str, _: NoTls) -> Result<Client, DbError> {
            Ok(Client)
        }
        pub fn query(&mut self, _: &str, _: &[&str]) -> Result<Vec<u64>, DbError> {
            Ok(Vec::new())
        }
        pub fn query_one(&mut self, _: &str, _: &[&str]) -> Result<u64, DbError> {
            Ok(1)
        }
        pub fn query_opt(&mut self, _: &str, _: &[&str]) -> Result<Option<u64>, DbError> {
            Ok(None)
        }
        pub fn execute(&mut self, _: &str, _: &[&str]) -> Result<u64, DbError> {
            Ok(0)
        }
        pub fn batch_execute(&mut self, _: &str) -> Result<(), DbError> {
            Ok(())
        }
        pub fn transaction(&mut self) -> Result<Transaction<'_>, DbError> {
            Ok(Transaction(self))
        }
    }

    impl Transaction<'_> {
        pub fn execute(&mut self, q: &str, p: &[&str]) -> Result<u64, DbError> {
            self.0.execute(q, p)
        }
        pub fn commit(self) -> Result<(), DbError> {
            Ok(())
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
        pub fn connect(&self, _: NoTls) -> Result<Client, DbError> {
            Ok(Client)
        }
    }
}

mod r2d2 {
    use super::{postgres::Client, DbError};

    pub struct Manager;
    pub struct Pool;
    pub struct Builder;
    pub struct PooledConnection(Client);

    impl Pool {
        pub fn builder() -> Builder {
            Builder
        }
        pub fn get(&self) -> Result<PooledConnection, DbError> {
            Ok(PooledConnection(Client))
        }
    }

    impl Builder {
        pub fn max_size(self, _: u32) -> Builder {
            self
        }
        pub fn build(self, _: Manager) -> Result<Pool, DbError> {
            Ok(Pool)
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

/// A client bound from `postgres::Client::connect`: its queries block.
#[limit_blocking(op = "db.client", deny_blocking)]
async fn client_methods(url: String) -> Result<u64, DbError> {
    let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
    let rows = client.query("SELECT 1", &[])?;
    let one = client.query_one("SELECT 1", &[])?;
    let n = client.execute("DELETE FROM t", &[])?;
    let mut tx = client.transaction()?;
    tx.execute("SELECT 1", &[])?;
    tx.commit()?;
    Ok(rows.len() as u64 + one + n)
}

/// `Config::new()…connect(NoTls)` blocks at `connect`.
#[limit_blocking(op = "db.config", deny_blocking)]
async fn config_chain() -> Result<(), DbError> {
    let mut client = postgres::Config::new().host("db").connect(postgres::NoTls)?;
    client.batch_execute("SELECT 1")?;
    Ok(())
}

/// An r2d2 pool: `build`, `get` (method and path forms) and the pooled
/// connection's queries block.
#[limit_blocking(op = "db.pool", deny_blocking)]
async fn pooled(manager: r2d2::Manager) -> Result<(), DbError> {
    let pool = r2d2::Pool::builder().max_size(3).build(manager)?;
    let mut conn = pool.get()?;
    conn.query("SELECT 1", &[])?;
    let mut other = r2d2::Pool::get(&pool)?;
    other.query_opt("SELECT 1", &[])?;
    Ok(())
}

/// Parameters declared with a client's type.
#[limit_blocking(op = "db.params", deny_blocking)]
async fn params(
    client: &mut postgres::Client,
    pool: &r2d2::Pool,
    mut conn: r2d2::PooledConnection,
) -> Result<(), DbError> {
    client.query_one("SELECT 1", &[])?;
    let mut fresh = pool.get()?;
    fresh.execute("SELECT 1", &[])?;
    conn.query("SELECT 1", &[])?;
    Ok(())
}

fn main() {}
