//! The blocking scan: calls in an `async fn` body that block the executor
//! thread, reported as warnings (or errors under `deny_blocking`).
//!
//! A call is reported when it certainly blocks: a path from `std`,
//! `thread::sleep`, `block_on`, a blocking-only client library, a
//! `blocking_*` method. A name that an async library exports too
//! (`sleep`, `fs::read`, `File::open`, `TcpStream::connect`, …) may be
//! that library's future: it is reported only where its value is thrown
//! away (a statement, `let _ =`, or `?`, which a future does not take),
//! not where it is bound, passed on or returned to be awaited later
//! (`let d = sleep(x); tokio::pin!(d);`). A call whose result is
//! `.await`ed is never blocking (`tokio::time::sleep(d).await`).
//!
//! Method calls block on a value known to be a sync client (`clients`):
//! bound in the body from a blocking constructor, or a parameter declared
//! with a client type (`client.query(..)` after
//! `let mut client = postgres::Client::connect(..)?`, `pool.get()` on an
//! r2d2 pool); they are reported at the method.

mod clients;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Expr, ExprCall, ExprMethodCall, ExprPath, FnArg, Local, Pat, Stmt};

use clients::Clients;

/// One blocking call found in a body.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) span: Span,
    pub(crate) call: String,
    pub(crate) category: &'static str,
}

impl Finding {
    /// The finding as a compiler warning.
    pub(crate) fn warning(&self) -> crate::spec::Warning {
        crate::spec::Warning {
            what: "blocking_call",
            span: self.span,
            text: self.message(),
        }
    }

    /// What the warning (or error) says.
    pub(crate) fn message(&self) -> String {
        format!(
            "blocking call `{}` ({}) inside an async fn blocks the executor thread; move it to a plain `fn` under #[limit_blocking] (it then runs on the blocking pool), use its async equivalent, or add `allow_blocking`",
            self.call, self.category
        )
    }
}

/// How sure a match is that the call blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Certainty {
    /// Wherever it is.
    Certain,
    /// Only where its value is thrown away: an async library has a
    /// function of that name too.
    IfDiscarded,
}

/// Path suffixes of blocking calls and their categories. A call matches
/// when its path ends with the listed segments; it is certainly blocking
/// when its path starts at `std` or `core`, or when the entry says so
/// (no async library has a `thread::sleep`).
const PATHS: &[(&[&str], &str, Certainty)] = &[
    (&["thread", "sleep"], "sleep", Certainty::Certain),
    (&["fs", "read"], "file I/O", Certainty::IfDiscarded),
    (
        &["fs", "read_to_string"],
        "file I/O",
        Certainty::IfDiscarded,
    ),
    (&["fs", "write"], "file I/O", Certainty::IfDiscarded),
    (&["fs", "copy"], "file I/O", Certainty::IfDiscarded),
    (&["fs", "remove_file"], "file I/O", Certainty::IfDiscarded),
    (
        &["fs", "create_dir_all"],
        "file I/O",
        Certainty::IfDiscarded,
    ),
    (&["fs", "read_dir"], "file I/O", Certainty::IfDiscarded),
    (&["fs", "metadata"], "file I/O", Certainty::IfDiscarded),
    (&["File", "open"], "file I/O", Certainty::IfDiscarded),
    (&["File", "create"], "file I/O", Certainty::IfDiscarded),
    (
        &["TcpStream", "connect"],
        "network I/O",
        Certainty::IfDiscarded,
    ),
    (
        &["UdpSocket", "bind"],
        "network I/O",
        Certainty::IfDiscarded,
    ),
    (
        &["net", "lookup_host"],
        "network I/O",
        Certainty::IfDiscarded,
    ),
    (&["io", "stdin"], "terminal I/O", Certainty::IfDiscarded),
    (&["Connection", "open"], "database", Certainty::IfDiscarded),
    (&["Client", "connect"], "database", Certainty::IfDiscarded),
    (
        &["Connection", "open_in_memory"],
        "database",
        Certainty::IfDiscarded,
    ),
    (
        &["PgConnection", "establish"],
        "database",
        Certainty::IfDiscarded,
    ),
    (
        &["SqliteConnection", "establish"],
        "database",
        Certainty::IfDiscarded,
    ),
    (
        &["MysqlConnection", "establish"],
        "database",
        Certainty::IfDiscarded,
    ),
];

/// Path prefixes of blocking-only client libraries.
const PREFIXES: &[(&[&str], &str)] = &[
    (
        &["reqwest", "blocking"],
        "external API (blocking HTTP client)",
    ),
    (&["ureq"], "external API (blocking HTTP client)"),
    (&["rusqlite"], "database"),
    (&["postgres"], "database"),
    (&["r2d2"], "database"),
];

/// Roots of async libraries: their calls return futures, which block
/// nothing until awaited (`block_on` is matched first).
const ASYNC_ROOTS: &[&str] = &[
    "tokio",
    "async_std",
    "futures",
    "smol",
    "diesel_async",
    "tokio_postgres",
    "sqlx",
    "bb8",
    "deadpool",
    "deadpool_postgres",
    "deadpool_redis",
    "mobc",
];

/// Roots of the standard library: what matches there is the blocking API.
const STD_ROOTS: &[&str] = &["std", "core"];

/// Calls whose closure argument runs elsewhere: not scanned.
const RUNS_ELSEWHERE: &[&str] = &["spawn_blocking", "block_in_place", "spawn"];

/// Methods whose receiver is a `Result`, not a future: a call there is
/// not kept to be awaited.
const UNWRAPS: &[&str] = &["unwrap", "expect"];

/// Methods that block whatever they are called on.
const METHODS: &[(&str, &str)] = &[
    ("block_on", "blocking on a future"),
    ("blocking_lock", "lock"),
    ("blocking_recv", "lock"),
    ("blocking_send", "lock"),
    ("blocking_read", "lock"),
    ("blocking_write", "lock"),
];

/// The visitor: what it found, and the expressions whose position decides
/// about the calls they are.
struct Scan {
    /// Operands of `.await`.
    awaited: Vec<*const Expr>,
    /// Expressions whose value is thrown away: statements, `let _ =`
    /// initialisers, operands of `?`.
    discarded: Vec<*const Expr>,
    found: Vec<Finding>,
    /// The values known to be blocking clients.
    clients: Clients,
}

/// The segments of a path, as strings.
fn segments(p: &ExprPath) -> Vec<String> {
    p.path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect()
}

/// Whether `segs` ends with `suffix`.
fn ends_with(segs: &[String], suffix: &[&str]) -> bool {
    segs.len() >= suffix.len()
        && segs[segs.len() - suffix.len()..]
            .iter()
            .zip(suffix)
            .all(|(a, b)| a == b)
}

/// The category of a blocking call by its path, and how sure that is.
fn matches_path(segs: &[String]) -> Option<(&'static str, Certainty)> {
    if segs.len() == 1 && segs[0] == "sleep" {
        // `use std::thread::sleep;`, or `use tokio::time::sleep;`
        return Some(("sleep", Certainty::IfDiscarded));
    }
    if segs.last().is_some_and(|l| l == "block_on") {
        return Some(("blocking on a future", Certainty::Certain));
    }
    let root = segs.first().map_or("", String::as_str);
    if ASYNC_ROOTS.contains(&root) {
        return None;
    }
    let blocking_library = PREFIXES.iter().find(|(prefix, _)| {
        segs.len() >= prefix.len() && segs.iter().zip(prefix.iter()).all(|(a, b)| a == b)
    });
    if let Some((_, cat)) = blocking_library {
        // A builder (`postgres::Config::new()`) blocks at its last step.
        if clients::constructed(segs).is_some_and(clients::Kind::is_builder) {
            return None;
        }
        return Some((cat, Certainty::Certain));
    }
    let (_, cat, certainty) = PATHS.iter().find(|(suffix, ..)| ends_with(segs, suffix))?;
    if STD_ROOTS.contains(&root) {
        Some((cat, Certainty::Certain))
    } else {
        Some((cat, *certainty))
    }
}

/// Whether `e` is (a method chain starting with) `Command::new(..)`, and
/// how sure it is the standard library's (`tokio::process::Command` has
/// async `output` and `status`).
fn command(e: &Expr) -> Option<Certainty> {
    match e {
        Expr::Call(ExprCall { func, .. }) => match &**func {
            Expr::Path(p) => {
                let segs = segments(p);
                if !ends_with(&segs, &["Command", "new"]) {
                    None
                } else if STD_ROOTS.contains(&segs[0].as_str()) {
                    Some(Certainty::Certain)
                } else if ASYNC_ROOTS.contains(&segs[0].as_str()) {
                    None
                } else {
                    Some(Certainty::IfDiscarded)
                }
            }
            _ => None,
        },
        Expr::MethodCall(m) => command(&m.receiver),
        Expr::Reference(r) => command(&r.expr),
        Expr::Paren(p) => command(&p.expr),
        _ => None,
    }
}

impl Scan {
    /// Whether `e` is the operand of an `.await`.
    fn is_awaited(&self, e: &Expr) -> bool {
        self.awaited.contains(&(e as *const Expr))
    }

    /// Whether a call of `certainty` at `e` is reported.
    fn reports(&self, e: &Expr, certainty: Certainty) -> bool {
        certainty == Certainty::Certain || self.discarded.contains(&(e as *const Expr))
    }

    /// A call of a path.
    fn call(&mut self, e: &Expr, c: &ExprCall) {
        let Expr::Path(p) = &*c.func else { return };
        let segs = segments(p);
        let Some((category, certainty)) = matches_path(&segs) else {
            if let Some(hit) = self.clients.blocking_path_call(c) {
                self.push(hit);
            }
            return;
        };
        if self.reports(e, certainty) {
            let span = p
                .path
                .segments
                .last()
                .map_or_else(|| c.span(), |s| s.ident.span());
            self.found.push(Finding {
                span,
                call: segs.join("::"),
                category,
            });
        }
    }

    /// A method call.
    fn method(&mut self, e: &Expr, m: &ExprMethodCall) {
        let name = m.method.to_string();
        if let Some((_, category)) = METHODS.iter().find(|(n, _)| *n == name) {
            self.found.push(Finding {
                span: m.method.span(),
                call: format!(".{name}()"),
                category,
            });
        } else if (name == "output" || name == "status")
            && command(&m.receiver).is_some_and(|c| self.reports(e, c))
        {
            self.found.push(Finding {
                span: m.method.span(),
                call: format!("Command::{name}"),
                category: "subprocess",
            });
        } else if let Some(hit) = self.clients.blocking_method(m) {
            self.push(hit);
        }
    }

    /// A blocking call on a client.
    fn push(&mut self, hit: clients::Hit) {
        self.found.push(Finding {
            span: hit.span,
            call: hit.call,
            category: hit.category,
        });
    }
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_stmt(&mut self, s: &'ast Stmt) {
        if let Stmt::Expr(e, Some(_)) = s {
            self.discarded.push(e as *const Expr);
        }
        visit::visit_stmt(self, s);
    }

    fn visit_local(&mut self, l: &'ast Local) {
        if let (Pat::Wild(_), Some(init)) = (&l.pat, &l.init) {
            self.discarded.push(&*init.expr as *const Expr);
        }
        visit::visit_local(self, l);
        // Bound after its initialiser is scanned, which may use the name
        // it shadows.
        let init = l.init.as_ref().map(|i| &*i.expr);
        self.clients.bind(&l.pat, init);
    }

    fn visit_expr(&mut self, e: &'ast Expr) {
        match e {
            Expr::Await(a) => self.awaited.push(&*a.base as *const Expr),
            Expr::Try(t) => self.discarded.push(&*t.expr as *const Expr),
            Expr::MethodCall(m) if UNWRAPS.contains(&m.method.to_string().as_str()) => {
                self.discarded.push(&*m.receiver as *const Expr);
            }
            Expr::Call(c) if matches!(&*c.func, Expr::Path(p) if segments(p).last().is_some_and(|l| RUNS_ELSEWHERE.contains(&l.as_str()))) =>
            {
                return; // `spawn_blocking(|| ...)` and the like run their closure elsewhere
            }
            Expr::Call(c) if !self.is_awaited(e) => self.call(e, c),
            Expr::MethodCall(m) if !self.is_awaited(e) => self.method(e, m),
            _ => {}
        }
        visit::visit_expr(self, e);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // `println!("{}", std::fs::read_to_string(p)?)` and the like: scan
        // the comma-separated expressions of a macro call when they parse.
        let parser = syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated;
        if let Ok(exprs) = syn::parse::Parser::parse2(parser, m.tokens.clone()) {
            for e in &exprs {
                self.visit_expr(e);
            }
        }
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {
        // Nested items are not part of this body.
    }
}

/// Blocking calls in `block`, the body of a function taking `params`, in
/// source order.
pub(crate) fn scan<'a>(
    params: impl IntoIterator<Item = &'a FnArg>,
    block: &syn::Block,
) -> Vec<Finding> {
    let mut s = Scan {
        awaited: Vec::new(),
        discarded: Vec::new(),
        found: Vec::new(),
        clients: Clients::from_params(params),
    };
    s.visit_block(block);
    s.found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(body: &str) -> Vec<String> {
        let block: syn::Block = syn::parse_str(body).unwrap();
        scan([], &block)
            .into_iter()
            .map(|f| format!("{} ({})", f.call, f.category))
            .collect()
    }

    #[test]
    fn finds_each_category() {
        let found = calls(
            r#"{
                std::thread::sleep(d);
                let s = std::fs::read_to_string("x");
                let c = std::net::TcpStream::connect("a:1");
                let o = std::process::Command::new("ls").arg("-l").output();
                let r = reqwest::blocking::get("http://x");
                let db = rusqlite::Connection::open("db");
                let v = futures::executor::block_on(f);
                let g = m.blocking_lock();
                let v: Vec<_> = paths.iter().map(|p| std::fs::read(p)).collect();
                sleep(d);
                println!("{}", std::fs::read_to_string("x").unwrap());
            }"#,
        );
        assert_eq!(
            found,
            [
                "std::thread::sleep (sleep)",
                "std::fs::read_to_string (file I/O)",
                "std::net::TcpStream::connect (network I/O)",
                "Command::output (subprocess)",
                "reqwest::blocking::get (external API (blocking HTTP client))",
                "rusqlite::Connection::open (database)",
                "futures::executor::block_on (blocking on a future)",
                ".blocking_lock() (lock)",
                "std::fs::read (file I/O)",
                "sleep (sleep)",
                "std::fs::read_to_string (file I/O)",
            ]
        );
    }

    #[test]
    fn awaited_calls_and_closures_are_not_blocking() {
        assert!(calls(
            r#"{
                tokio::time::sleep(d).await;
                tokio::fs::read_to_string("x").await;
                tokio::process::Command::new("ls").output().await;
                let f = tokio::task::spawn_blocking(|| std::thread::sleep(d)).await;
                let t = tokio::time::timeout(d, tokio::fs::read_to_string("x")).await;
                let m = tokio::fs::metadata("/");
                m.await;
                diesel::insert_into(users).execute(&mut c).await;
            }"#
        )
        .is_empty());
    }

    #[test]
    fn futures_kept_for_later_are_not_blocking() {
        assert!(calls(
            r#"{
                let d = sleep(x);
                tokio::pin!(d);
                let t = timeout(x, sleep(x));
                let read = fs::read_to_string(path);
                let stream = TcpStream::connect(addr);
                let out = Command::new("ls").output();
                futures::join!(read, stream, out);
                let f = || sleep(x);
                select(sleep(x), other).await;
                sleep(x)
            }"#
        )
        .is_empty());
    }

    #[test]
    fn thrown_away_values_are_blocking() {
        assert_eq!(
            calls(
                r#"{
                    sleep(x);
                    let _ = fs::read_to_string(path);
                    let text = fs::read_to_string(path)?;
                    let unwrapped = fs::read_to_string(path).unwrap();
                    Command::new("ls").status();
                    let n = std::fs::read(path);
                    let f = || std::thread::sleep(x);
                    thread::sleep(x)
                }"#
            ),
            [
                "sleep (sleep)",
                "fs::read_to_string (file I/O)",
                "fs::read_to_string (file I/O)",
                "fs::read_to_string (file I/O)",
                "Command::status (subprocess)",
                "std::fs::read (file I/O)",
                "std::thread::sleep (sleep)",
                "thread::sleep (sleep)",
            ]
        );
    }

    /// The findings of a whole function, with their calls and the text at
    /// their spans (the method, not the start of the chain).
    fn client_calls(func: &str) -> Vec<String> {
        let f: syn::ItemFn = syn::parse_str(func).unwrap();
        scan(&f.sig.inputs, &f.block)
            .into_iter()
            .map(|f| format!("{} @{}", f.call, f.span.source_text().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn postgres_client_methods_are_blocking() {
        assert_eq!(
            client_calls(
                r#"async fn f() {
                    let mut client = postgres::Client::connect(url, NoTls)?;
                    let rows = client.query("SELECT 1", &[])?;
                    let row = client.query_one("SELECT 1", &[]).unwrap();
                    client.execute("DELETE FROM t", &[]).expect("delete");
                    let mut tx = client.transaction()?;
                    tx.batch_execute("SELECT 1")?;
                    tx.commit()?;
                    let o = postgres::Client::query_opt(&mut client, "SELECT 1", &[]);
                }"#
            ),
            [
                "postgres::Client::connect @connect",
                "client.query() @query",
                "client.query_one() @query_one",
                "client.execute() @execute",
                "client.transaction() @transaction",
                "tx.batch_execute() @batch_execute",
                "tx.commit() @commit",
                "postgres::Client::query_opt @query_opt",
            ]
        );
    }

    #[test]
    fn config_chain_is_blocking_at_connect() {
        assert_eq!(
            client_calls(
                r#"async fn f() {
                    let mut c = postgres::Config::new().host("h").user("u").connect(NoTls)?;
                    c.query("SELECT 1", &[])?;
                    let mut d = Config::new().host("h").connect(NoTls).unwrap();
                    d.execute("SELECT 1", &[]);
                }"#
            ),
            [
                "postgres::Config::new()….connect() @connect",
                "c.query() @query",
                "Config::new()….connect() @connect",
                "d.execute() @execute",
            ]
        );
    }

    #[test]
    fn r2d2_pools_and_pooled_connections_are_blocking() {
        assert_eq!(
            client_calls(
                r#"async fn f() {
                    let pool = r2d2::Pool::builder().max_size(3).build(manager)?;
                    let mut conn = pool.get()?;
                    conn.query("SELECT 1", &[])?;
                    let other = r2d2::Pool::get(&pool)?;
                    other.query_opt("SELECT 1", &[])?;
                    let third = Pool::get(&pool).unwrap();
                    pool.get().unwrap().execute("SELECT 1", &[]);
                    let p2 = r2d2::Pool::new(manager).unwrap();
                }"#
            ),
            [
                "r2d2::Pool::builder()….build() @build",
                "pool.get() @get",
                "conn.query() @query",
                "r2d2::Pool::get @get",
                "other.query_opt() @query_opt",
                "Pool::get @get",
                "pool….execute() @execute",
                "pool.get() @get",
                "r2d2::Pool::new @new",
            ]
        );
    }

    #[test]
    fn declared_parameters_are_clients() {
        assert_eq!(
            client_calls(
                r#"async fn f(
                    client: &mut postgres::Client,
                    pool: &r2d2::Pool<M>,
                    mut conn: PooledConnection<M>,
                    db: &mut rusqlite::Connection,
                    shared: std::sync::Arc<r2d2::Pool<M>>,
                ) {
                    client.query_raw("SELECT 1", p)?;
                    pool.get()?;
                    conn.copy_in("COPY t FROM STDIN")?;
                    db.query_row("SELECT 1", [], |r| r.get(0))?;
                    shared.get()?;
                }"#
            ),
            [
                "client.query_raw() @query_raw",
                "pool.get() @get",
                "conn.copy_in() @copy_in",
                "db.query_row() @query_row",
                "shared.get() @get",
            ]
        );
    }

    #[test]
    fn other_blocking_clients() {
        assert_eq!(
            client_calls(
                r#"async fn f() {
                    let db = Connection::open_in_memory()?;
                    let mut stmt = db.prepare("SELECT 1")?;
                    let names = stmt.query_map([], |r| r.get(0))?;
                    let mut conn = diesel::PgConnection::establish(url).expect("db");
                    let all = users.load::<User>(&mut conn)?;
                    let one = users.first::<User>(&mut conn);
                    let client = redis::Client::open(url)?;
                    let mut con = client.get_connection()?;
                    let v: String = con.get("k")?;
                    let w: String = redis::cmd("GET").arg("k").query(&mut con)?;
                    let http = reqwest::blocking::Client::new();
                    let resp = http.get(url).header("a", "b").send()?;
                    let text = resp.text()?;
                    let agent = ureq::agent();
                    let body = agent.get(url).call()?;
                }"#
            ),
            [
                "Connection::open_in_memory @open_in_memory",
                "db.prepare() @prepare",
                "stmt.query_map() @query_map",
                "diesel::PgConnection::establish @establish",
                ".load(conn) @load",
                ".first(conn) @first",
                "client.get_connection() @get_connection",
                "con.get() @get",
                ".query(con) @query",
                "reqwest::blocking::Client::new @new",
                "http….send() @send",
                "resp.text() @text",
                "ureq::agent @agent",
                "agent….call() @call",
            ]
        );
    }

    #[test]
    fn unknown_and_async_clients_are_not_blocking() {
        assert!(client_calls(
            r#"async fn f(
                db: &tokio_postgres::Client,
                pool: &deadpool_postgres::Pool,
                bb: &bb8::Pool<M>,
                sq: &sqlx::PgPool,
                conn: bb8::PooledConnection<'_, M>,
                other: &Repository,
            ) {
                db.query("SELECT 1", &[]).await?;
                let c = pool.get().await?;
                c.query_one("SELECT 1", &[]).await?;
                let b = bb.get().await?;
                b.execute("SELECT 1", &[]).await?;
                conn.query("SELECT 1", &[]).await?;
                sqlx::query("SELECT 1").fetch_one(sq).await?;
                sqlx::query("SELECT 1").execute(sq).await?;
                other.query("x")?;
                other.get()?;
                let mut unknown = make_client();
                unknown.query("SELECT 1", &[])?;
                let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
                client.query("SELECT 1", &[]).await?;
                let cfg = tokio_postgres::Config::new().host("h").connect(NoTls).await?;
                let awaited = Client::connect(url).await?;
                awaited.query("x")?;
                let p = Pool::builder(manager).build()?;
                p.get()?;
                let bp = Pool::builder().build(manager).await?;
                bp.get().await?;
            }"#
        )
        .is_empty());
    }

    #[test]
    fn clients_in_spawn_blocking_and_awaited_methods_are_not_blocking() {
        assert!(client_calls(
            r#"async fn f(pool: r2d2::Pool<M>) {
                let p = pool.clone();
                tokio::task::spawn_blocking(move || {
                    let mut conn = p.get()?;
                    conn.query("SELECT 1", &[])
                })
                .await??;
                let fut = pool.get().await;
                let pool = make_pool();
                pool.get()?;
            }"#
        )
        .is_empty());
    }

    #[test]
    fn shadowed_names_stop_being_clients() {
        assert_eq!(
            client_calls(
                r#"async fn f(client: &mut postgres::Client) {
                    let rows = client.query("SELECT 1", &[])?;
                    let client = unknown_client();
                    client.query("SELECT 1", &[])?;
                    let client: postgres::Client = make();
                    client.execute("SELECT 1", &[])?;
                }"#
            ),
            ["client.query() @query", "client.execute() @execute"]
        );
    }
}
