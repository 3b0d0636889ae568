//! Under `deny_blocking`, the other sync clients' methods are errors at
//! the method: rusqlite, diesel (a query given the connection), redis,
//! reqwest's blocking client and ureq. The crates are stubs named like the
//! real ones: the scan is syntactic.
use limiter::limit_blocking;

#[derive(Debug)]
pub struct Error;

impl From<limiter::LimitError> for Error {
    fn from(_: limiter::LimitError) -> Self {
        Error
    }
}

mod rusqlite {
    use super::Error;

    pub struct Connection;
    pub struct Statement;

    impl Connection {
        pub fn open(_: &str) -> Result<Connection, Error> {
            Ok(Connection)
        }
        pub fn execute(&self, _: &str, _: ()) -> Result<usize, Error> {
            Ok(0)
        }
        pub fn prepare(&self, _: &str) -> Result<Statement, Error> {
            Ok(Statement)
        }
    }

    impl Statement {
        pub fn query_map(&mut self, _: (), f: fn(u8) -> u8) -> Result<Vec<u8>, Error> {
            Ok(vec![f(1)])
        }
    }
}

mod diesel {
    use super::Error;

    pub struct PgConnection;
    pub struct Users;

    impl PgConnection {
        pub fn establish(_: &str) -> Result<PgConnection, Error> {
            Ok(PgConnection)
        }
    }

    impl Users {
        pub fn load(&self, _: &mut PgConnection) -> Result<Vec<u8>, Error> {
            Ok(Vec::new())
        }
    }
}

mod redis {
    use super::Error;

    pub struct Client;
    pub struct Connection;

    impl Client {
        pub fn open(_: &str) -> Result<Client, Error> {
            Ok(Client)
        }
        pub fn get_connection(&self) -> Result<Connection, Error> {
            Ok(Connection)
        }
    }

    impl Connection {
        pub fn set(&mut self, _: &str, _: u8) -> Result<(), Error> {
            Ok(())
        }
    }
}

mod reqwest {
    pub mod blocking {
        use crate::Error;

        pub struct Client;
        pub struct RequestBuilder;
        pub struct Response;

        impl Client {
            #[allow(clippy::new_without_default)]
            pub fn new() -> Client {
                Client
            }
            pub fn get(&self, _: &str) -> RequestBuilder {
                RequestBuilder
            }
        }

        impl RequestBuilder {
            pub fn header(self, _: &str, _: &str) -> RequestBuilder {
                self
            }
            pub fn send(self) -> Result<Response, Error> {
                Ok(Response)
            }
        }

        impl Response {
            pub fn text(self) -> Result<String, Error> {
                Ok(String::new())
            }
        }
    }
}

mod ureq {
    use super::Error;

    pub struct Agent;
    pub struct Request;

    pub fn agent() -> Agent {
        Agent
    }

    impl Agent {
        pub fn get(&self, _: &str) -> Request {
            Request
        }
    }

    impl Request {
        pub fn call(self) -> Result<u16, Error> {
            Ok(200)
        }
    }
}

#[limit_blocking(op = "other.sqlite", deny_blocking)]
async fn sqlite() -> Result<usize, Error> {
    let conn = rusqlite::Connection::open("db")?;
    let n = conn.execute("DELETE FROM t", ())?;
    let mut stmt = conn.prepare("SELECT 1")?;
    let rows = stmt.query_map((), |r| r)?;
    Ok(n + rows.len())
}

#[limit_blocking(op = "other.diesel", deny_blocking)]
async fn diesel_load(users: diesel::Users) -> Result<usize, Error> {
    let mut conn = diesel::PgConnection::establish("db")?;
    Ok(users.load(&mut conn)?.len())
}

#[limit_blocking(op = "other.redis", deny_blocking)]
async fn redis_set() -> Result<(), Error> {
    let client = redis::Client::open("redis://db")?;
    let mut con = client.get_connection()?;
    con.set("k", 1)?;
    Ok(())
}

#[limit_blocking(op = "other.http", deny_blocking)]
async fn http() -> Result<u16, Error> {
    let http = reqwest::blocking::Client::new();
    let resp = http.get("http://x").header("a", "b").send()?;
    let text = resp.text()?;
    let agent = ureq::agent();
    let status = agent.get("http://x").call()?;
    Ok(status + text.len() as u16)
}

fn main() {}
