//! Blocking clients: values of a body known to be a sync database or HTTP
//! client (a pool, a connection, a request builder), whose well-known
//! methods block the executor thread.
//!
//! A value is a client when it is bound in the body (`let client = …`,
//! through `?`, `.unwrap()`, `.expect(..)`) from a known blocking
//! constructor (`postgres::Client::connect`, `r2d2::Pool::builder()…
//! .build(..)`, `rusqlite::Connection::open`, …) or from a client by a
//! method that gives one (`pool.get()?`, `client.transaction()?`), or when
//! it is a parameter whose declared type names a client type
//! (`client: &mut postgres::Client`). A value of unknown origin is never
//! a client, whatever its methods are called: async clients share their
//! names (`query`, `execute`, `get`).

use std::collections::HashMap;

use proc_macro2::Span;
use syn::{
    Expr, ExprCall, ExprMethodCall, ExprPath, FnArg, GenericArgument, Pat, PathArguments, Type,
};

/// What a client value is: which methods block on it and what they give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `postgres::Client` or `postgres::Transaction`.
    Postgres,
    /// `postgres::Config`: a builder whose `connect` blocks.
    PostgresConfig,
    /// `rusqlite::Connection` or `rusqlite::Transaction`.
    Sqlite,
    /// A prepared `rusqlite::Statement`.
    SqliteStatement,
    /// A diesel connection (`PgConnection`, `SqliteConnection`,
    /// `MysqlConnection`): diesel's queries take it as argument.
    Diesel,
    /// `r2d2::Pool`: its `get` blocks until a connection is free.
    Pool,
    /// `r2d2::Pool::builder()`: its `build` blocks on the first connections.
    PoolBuilder,
    /// An r2d2 `PooledConnection`, of any sync client.
    Pooled,
    /// `redis::Client`: its `get_connection` blocks.
    RedisClient,
    /// A sync `redis::Connection`.
    RedisConnection,
    /// `reqwest::blocking::Client`.
    Http,
    /// `reqwest::blocking::Client::builder()`.
    HttpBuilder,
    /// A `reqwest::blocking::RequestBuilder`.
    HttpRequest,
    /// A `reqwest::blocking::Response`: reading its body blocks.
    HttpResponse,
    /// A `ureq::Agent`.
    Ureq,
    /// A ureq request.
    UreqRequest,
}

const DATABASE: &str = "database";
const HTTP: &str = "external API (blocking HTTP client)";

/// Blocking methods of a postgres client or transaction.
const POSTGRES: &[&str] = &[
    "query",
    "query_one",
    "query_opt",
    "query_raw",
    "query_typed",
    "execute",
    "execute_raw",
    "batch_execute",
    "simple_query",
    "prepare",
    "prepare_typed",
    "transaction",
    "savepoint",
    "commit",
    "rollback",
    "copy_in",
    "copy_out",
];

/// Blocking methods of a rusqlite connection or transaction.
const SQLITE: &[&str] = &[
    "execute",
    "execute_batch",
    "query_row",
    "query_one",
    "prepare",
    "prepare_cached",
    "transaction",
    "savepoint",
    "commit",
    "rollback",
];

/// Blocking methods of a rusqlite statement.
const SQLITE_STATEMENT: &[&str] = &[
    "execute",
    "query",
    "query_map",
    "query_and_then",
    "query_row",
    "exists",
    "insert",
];

/// Blocking methods of a diesel connection called on it.
const DIESEL: &[&str] = &["batch_execute", "transaction"];

/// Blocking methods of a sync redis connection.
const REDIS: &[&str] = &[
    "get",
    "set",
    "set_ex",
    "del",
    "exists",
    "expire",
    "incr",
    "decr",
    "hget",
    "hset",
    "hdel",
    "lpush",
    "rpush",
    "lpop",
    "rpop",
    "sadd",
    "srem",
    "publish",
    "req_command",
];

/// Methods that take a connection as argument and block on it: diesel's
/// `users.load(&mut conn)`, redis's `cmd.query(&mut con)`.
const WITH_CONNECTION: &[&str] = &[
    "load",
    "execute",
    "get_result",
    "get_results",
    "first",
    "query",
];

/// Methods of a `reqwest::blocking::Client` that start a request.
const HTTP_VERBS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "request"];

/// Methods of a blocking HTTP response that read its body.
const HTTP_BODY: &[&str] = &["text", "json", "bytes", "copy_to", "text_with_charset"];

/// Methods of a ureq request that send it.
const UREQ_SEND: &[&str] = &[
    "call",
    "send",
    "send_string",
    "send_json",
    "send_form",
    "send_bytes",
    "send_empty",
];

/// Methods whose value is the same client as their receiver's: `Result`
/// adapters, clones and borrows.
const PASS_ON: &[&str] = &[
    "unwrap",
    "expect",
    "map_err",
    "context",
    "with_context",
    "wrap_err",
    "clone",
    "as_ref",
    "as_mut",
    "borrow",
    "borrow_mut",
];

/// What a method does on a value of a kind.
struct Step {
    /// Whether it blocks.
    blocks: bool,
    /// The kind of the value it gives, when that is a client too.
    gives: Option<Kind>,
}

impl Step {
    const fn blocking(gives: Option<Kind>) -> Self {
        Self {
            blocks: true,
            gives,
        }
    }

    const fn building(gives: Kind) -> Self {
        Self {
            blocks: false,
            gives: Some(gives),
        }
    }
}

impl Kind {
    /// The category of its blocking calls.
    fn category(self) -> &'static str {
        match self {
            Kind::Http | Kind::HttpBuilder | Kind::HttpRequest | Kind::HttpResponse => HTTP,
            Kind::Ureq | Kind::UreqRequest => HTTP,
            _ => DATABASE,
        }
    }

    /// Whether it is a builder, which blocks only at its last step
    /// (`connect`, `build`), not where it is made.
    pub(crate) fn is_builder(self) -> bool {
        matches!(
            self,
            Kind::PostgresConfig | Kind::PoolBuilder | Kind::HttpBuilder
        )
    }

    /// Whether diesel's or redis's query methods block when given it.
    fn is_connection(self) -> bool {
        matches!(
            self,
            Kind::Diesel | Kind::Pooled | Kind::RedisConnection | Kind::Sqlite | Kind::Postgres
        )
    }

    /// What `method` does on a value of this kind, if anything known.
    fn step(self, method: &str) -> Option<Step> {
        let is = |list: &[&str]| list.contains(&method);
        let step = match self {
            Kind::Postgres if matches!(method, "transaction" | "savepoint") => {
                Step::blocking(Some(Kind::Postgres))
            }
            Kind::Postgres if is(POSTGRES) => Step::blocking(None),
            Kind::PostgresConfig if method == "connect" => Step::blocking(Some(Kind::Postgres)),
            Kind::PostgresConfig => Step::building(Kind::PostgresConfig),
            Kind::Sqlite if matches!(method, "transaction" | "savepoint") => {
                Step::blocking(Some(Kind::Sqlite))
            }
            Kind::Sqlite if matches!(method, "prepare" | "prepare_cached") => {
                Step::blocking(Some(Kind::SqliteStatement))
            }
            Kind::Sqlite if is(SQLITE) => Step::blocking(None),
            Kind::SqliteStatement if is(SQLITE_STATEMENT) => Step::blocking(None),
            Kind::Diesel if is(DIESEL) => Step::blocking(None),
            Kind::Pool if method == "get" => Step::blocking(Some(Kind::Pooled)),
            Kind::PoolBuilder if method == "build" => Step::blocking(Some(Kind::Pool)),
            Kind::PoolBuilder => Step::building(Kind::PoolBuilder),
            // A pooled connection of any sync client: their methods.
            Kind::Pooled if matches!(method, "transaction" | "savepoint") => {
                Step::blocking(Some(Kind::Pooled))
            }
            Kind::Pooled if matches!(method, "prepare" | "prepare_cached") => {
                Step::blocking(Some(Kind::SqliteStatement))
            }
            Kind::Pooled if is(POSTGRES) || is(SQLITE) || is(DIESEL) || is(REDIS) => {
                Step::blocking(None)
            }
            Kind::RedisClient
                if matches!(method, "get_connection" | "get_connection_with_timeout") =>
            {
                Step::blocking(Some(Kind::RedisConnection))
            }
            Kind::RedisConnection if is(REDIS) => Step::blocking(None),
            Kind::Http if is(HTTP_VERBS) => Step::building(Kind::HttpRequest),
            Kind::Http if method == "execute" => Step::blocking(Some(Kind::HttpResponse)),
            Kind::HttpBuilder if method == "build" => Step::blocking(Some(Kind::Http)),
            Kind::HttpBuilder => Step::building(Kind::HttpBuilder),
            Kind::HttpRequest if method == "send" => Step::blocking(Some(Kind::HttpResponse)),
            Kind::HttpRequest => Step::building(Kind::HttpRequest),
            Kind::HttpResponse if is(HTTP_BODY) => Step::blocking(None),
            Kind::Ureq if is(HTTP_VERBS) => Step::building(Kind::UreqRequest),
            Kind::UreqRequest if is(UREQ_SEND) => Step::blocking(None),
            Kind::UreqRequest => Step::building(Kind::UreqRequest),
            _ => return None,
        };
        Some(step)
    }
}

/// A constructor: the path of a call that gives a client.
struct Constructor {
    /// The crate (and modules) the type lives in.
    prefix: &'static [&'static str],
    /// The type and function: matched at the end of the call's path.
    tail: &'static [&'static str],
    /// Whether the tail alone (the type imported by `use`) is enough.
    bare: bool,
    kind: Kind,
}

const fn ctor(
    prefix: &'static [&'static str],
    tail: &'static [&'static str],
    bare: bool,
    kind: Kind,
) -> Constructor {
    Constructor {
        prefix,
        tail,
        bare,
        kind,
    }
}

/// Calls that give a blocking client (or a builder of one).
const CONSTRUCTORS: &[Constructor] = &[
    ctor(&["postgres"], &["Client", "connect"], true, Kind::Postgres),
    ctor(
        &["postgres"],
        &["Config", "new"],
        true,
        Kind::PostgresConfig,
    ),
    ctor(
        &["postgres"],
        &["Client", "configure"],
        false,
        Kind::PostgresConfig,
    ),
    ctor(&["r2d2"], &["Pool", "new"], false, Kind::Pool),
    ctor(&["r2d2"], &["Pool", "builder"], true, Kind::PoolBuilder),
    ctor(&["rusqlite"], &["Connection", "open"], true, Kind::Sqlite),
    ctor(
        &["rusqlite"],
        &["Connection", "open_in_memory"],
        true,
        Kind::Sqlite,
    ),
    ctor(
        &["rusqlite"],
        &["Connection", "open_with_flags"],
        true,
        Kind::Sqlite,
    ),
    ctor(
        &["diesel"],
        &["PgConnection", "establish"],
        true,
        Kind::Diesel,
    ),
    ctor(
        &["diesel"],
        &["SqliteConnection", "establish"],
        true,
        Kind::Diesel,
    ),
    ctor(
        &["diesel"],
        &["MysqlConnection", "establish"],
        true,
        Kind::Diesel,
    ),
    ctor(&["redis"], &["Client", "open"], false, Kind::RedisClient),
    ctor(
        &["reqwest", "blocking"],
        &["Client", "new"],
        false,
        Kind::Http,
    ),
    ctor(
        &["reqwest", "blocking"],
        &["Client", "builder"],
        false,
        Kind::HttpBuilder,
    ),
    ctor(&["ureq"], &["agent"], false, Kind::Ureq),
    ctor(
        &["ureq"],
        &["Agent", "new_with_defaults"],
        false,
        Kind::Ureq,
    ),
];

/// Declared types of a blocking client: (prefix, type, bare, kind), as for
/// constructors.
const TYPES: &[(&[&str], &str, bool, Kind)] = &[
    (&["postgres"], "Client", false, Kind::Postgres),
    (&["postgres"], "Transaction", false, Kind::Postgres),
    (&["r2d2"], "Pool", false, Kind::Pool),
    (&["r2d2"], "PooledConnection", true, Kind::Pooled),
    (&["rusqlite"], "Connection", false, Kind::Sqlite),
    (&["rusqlite"], "Transaction", false, Kind::Sqlite),
    (&["diesel"], "PgConnection", true, Kind::Diesel),
    (&["diesel"], "SqliteConnection", true, Kind::Diesel),
    (&["diesel"], "MysqlConnection", true, Kind::Diesel),
    (&["redis"], "Client", false, Kind::RedisClient),
    (&["redis"], "Connection", false, Kind::RedisConnection),
    (&["reqwest", "blocking"], "Client", false, Kind::Http),
    (&["ureq"], "Agent", false, Kind::Ureq),
];

/// Whether `segs` is `tail` behind a non-empty end of `prefix` (or alone,
/// when `bare`): `postgres::Client::connect`, `Client::connect`.
fn names(segs: &[String], prefix: &[&str], tail: &[&str], bare: bool) -> bool {
    if segs.len() < tail.len() || !super::ends_with(segs, tail) {
        return false;
    }
    let head = &segs[..segs.len() - tail.len()];
    if head.is_empty() {
        return bare;
    }
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    head.len() <= prefix.len() && prefix.ends_with(&head)
}

/// The client kind a call of `segs` constructs.
pub(crate) fn constructed(segs: &[String]) -> Option<Kind> {
    CONSTRUCTORS
        .iter()
        .find(|c| names(segs, c.prefix, c.tail, c.bare))
        .map(|c| c.kind)
}

/// The client kind a declared type names: through references, `Arc`,
/// `Rc`, `Box`.
fn declared(ty: &Type) -> Option<Kind> {
    match ty {
        Type::Reference(r) => declared(&r.elem),
        Type::Paren(p) => declared(&p.elem),
        Type::Path(p) => {
            let last = p.path.segments.last()?;
            if matches!(last.ident.to_string().as_str(), "Arc" | "Rc" | "Box") {
                let PathArguments::AngleBracketed(args) = &last.arguments else {
                    return None;
                };
                return args.args.iter().find_map(|a| match a {
                    GenericArgument::Type(t) => declared(t),
                    _ => None,
                });
            }
            let segs: Vec<String> = p
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            TYPES
                .iter()
                .find(|(prefix, ty, bare, _)| names(&segs, prefix, &[*ty], *bare))
                .map(|(.., kind)| *kind)
        }
        _ => None,
    }
}

/// A blocking call found on a client.
pub(crate) struct Hit {
    pub(crate) span: Span,
    pub(crate) call: String,
    pub(crate) category: &'static str,
}

/// The clients of one body, by name.
#[derive(Default)]
pub(crate) struct Clients {
    names: HashMap<String, Kind>,
}

/// The name `pat` binds, when it is a plain identifier (possibly `mut`),
/// and its declared type.
fn binding(pat: &Pat) -> Option<(String, Option<&Type>)> {
    match pat {
        Pat::Ident(i) if i.subpat.is_none() => Some((i.ident.to_string(), None)),
        Pat::Type(t) => {
            let (name, _) = binding(&t.pat)?;
            Some((name, Some(&*t.ty)))
        }
        _ => None,
    }
}

/// How a chain is written in a message: `client`, `Config::new()`.
fn root_name(e: &Expr) -> String {
    match e {
        Expr::Path(p) => super::segments(p).join("::"),
        Expr::Call(c) => match &*c.func {
            Expr::Path(p) => format!("{}()", super::segments(p).join("::")),
            _ => "…".into(),
        },
        Expr::MethodCall(m) => root_name(&m.receiver),
        Expr::Reference(r) => root_name(&r.expr),
        Expr::Paren(p) => root_name(&p.expr),
        Expr::Unary(u) => root_name(&u.expr),
        Expr::Try(t) => root_name(&t.expr),
        _ => "…".into(),
    }
}

/// Whether `e` is a name, behind `&`, `&mut`, `*` or parentheses.
fn is_direct(e: &Expr) -> bool {
    match e {
        Expr::Path(_) => true,
        Expr::Reference(r) => is_direct(&r.expr),
        Expr::Unary(u) => is_direct(&u.expr),
        Expr::Paren(p) => is_direct(&p.expr),
        _ => false,
    }
}

impl Clients {
    /// The parameters of the function whose declared type is a client's.
    pub(crate) fn from_params<'a>(params: impl IntoIterator<Item = &'a FnArg>) -> Self {
        let mut clients = Self::default();
        for param in params {
            if let FnArg::Typed(t) = param {
                if let (Some((name, _)), Some(kind)) = (binding(&t.pat), declared(&t.ty)) {
                    clients.names.insert(name, kind);
                }
            }
        }
        clients
    }

    /// `let pat = init;`: a simple name becomes a client when its type or
    /// initialiser says so, and stops being one otherwise (shadowing).
    pub(crate) fn bind(&mut self, pat: &Pat, init: Option<&Expr>) {
        let Some((name, ty)) = binding(pat) else {
            return;
        };
        match ty
            .and_then(declared)
            .or_else(|| init.and_then(|e| self.kind(e)))
        {
            Some(kind) => self.names.insert(name, kind),
            None => self.names.remove(&name),
        };
    }

    /// The client kind of the value of `e`, if known. An awaited value is
    /// never one: it came from an async client.
    pub(crate) fn kind(&self, e: &Expr) -> Option<Kind> {
        match e {
            Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => self
                .names
                .get(&p.path.segments[0].ident.to_string())
                .copied(),
            Expr::Reference(r) => self.kind(&r.expr),
            Expr::Paren(p) => self.kind(&p.expr),
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => self.kind(&u.expr),
            Expr::Try(t) => self.kind(&t.expr),
            Expr::Call(c) => match &*c.func {
                Expr::Path(p) => self
                    .constructed_by(c, &super::segments(p))
                    .or_else(|| self.path_call_gives(c, p)),
                _ => None,
            },
            Expr::MethodCall(m) => self.method_gives(m),
            _ => None,
        }
    }

    /// The kind a constructor call gives: `Pool::builder()` only without
    /// arguments (deadpool's takes a manager).
    fn constructed_by(&self, c: &ExprCall, segs: &[String]) -> Option<Kind> {
        match constructed(segs)? {
            Kind::PoolBuilder if !c.args.is_empty() => None,
            kind => Some(kind),
        }
    }

    /// The kind a method called by its path gives, its receiver first:
    /// `r2d2::Pool::get(&pool)` gives a pooled connection.
    fn path_call_gives(&self, c: &ExprCall, p: &ExprPath) -> Option<Kind> {
        let method = p.path.segments.last()?.ident.to_string();
        self.kind(c.args.first()?)?.step(&method)?.gives
    }

    /// The kind of a method's value: `Result` adapters pass the kind on,
    /// a client's method may give another client.
    fn method_gives(&self, m: &ExprMethodCall) -> Option<Kind> {
        let name = m.method.to_string();
        if PASS_ON.contains(&name.as_str()) {
            return self.kind(&m.receiver);
        }
        self.kind(&m.receiver)?.step(&name)?.gives
    }

    /// A method call that blocks on a client: called on it (`client.query(..)`,
    /// `pool.get()`, `Config::new()….connect(NoTls)`) or given it
    /// (`users.load(&mut conn)`). Reported at the method.
    pub(crate) fn blocking_method(&self, m: &ExprMethodCall) -> Option<Hit> {
        let name = m.method.to_string();
        if let Some(kind) = self.kind(&m.receiver) {
            if kind.step(&name).is_some_and(|s| s.blocks) {
                let dots = if is_direct(&m.receiver) { "" } else { "…" };
                return Some(Hit {
                    span: m.method.span(),
                    call: format!("{}{dots}.{name}()", root_name(&m.receiver)),
                    category: kind.category(),
                });
            }
        }
        if !WITH_CONNECTION.contains(&name.as_str()) {
            return None;
        }
        let (arg, kind) = m
            .args
            .iter()
            .find_map(|a| Some((a, self.kind(a).filter(|k| k.is_connection())?)))?;
        Some(Hit {
            span: m.method.span(),
            call: format!(".{name}({})", root_name(arg)),
            category: kind.category(),
        })
    }

    /// A method called by its path with a client as first argument:
    /// `Pool::get(&pool)`, `Client::query(&mut client, ..)`. Reported at
    /// the method's segment.
    pub(crate) fn blocking_path_call(&self, c: &ExprCall) -> Option<Hit> {
        let Expr::Path(p) = &*c.func else { return None };
        let method = p.path.segments.last()?;
        let kind = self.kind(c.args.first()?)?;
        let name = method.ident.to_string();
        kind.step(&name).filter(|s| s.blocks)?;
        Some(Hit {
            span: method.ident.span(),
            call: super::segments(p).join("::"),
            category: kind.category(),
        })
    }
}
