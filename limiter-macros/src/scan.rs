//! The blocking scan: calls in an `async fn` body that block the executor
//! thread, reported as warnings (or errors under `deny_blocking`).
//!
//! A call whose result is `.await`ed is not blocking
//! (`tokio::time::sleep(d).await`).

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Expr, ExprCall, ExprMethodCall, ExprPath};

/// One blocking call found in a body.
pub(crate) struct Finding {
    pub(crate) span: Span,
    pub(crate) call: String,
    pub(crate) category: &'static str,
}

/// Path suffixes of blocking calls and their categories. A call matches
/// when its path ends with the listed segments.
const PATHS: &[(&[&str], &str)] = &[
    (&["thread", "sleep"], "sleep"),
    (&["fs", "read"], "file I/O"),
    (&["fs", "read_to_string"], "file I/O"),
    (&["fs", "write"], "file I/O"),
    (&["fs", "copy"], "file I/O"),
    (&["fs", "remove_file"], "file I/O"),
    (&["fs", "create_dir_all"], "file I/O"),
    (&["fs", "read_dir"], "file I/O"),
    (&["fs", "metadata"], "file I/O"),
    (&["File", "open"], "file I/O"),
    (&["File", "create"], "file I/O"),
    (&["TcpStream", "connect"], "network I/O"),
    (&["UdpSocket", "bind"], "network I/O"),
    (&["net", "lookup_host"], "network I/O"),
    (&["io", "stdin"], "terminal I/O"),
    (&["block_on"], "blocking on a future"),
    (&["Connection", "open"], "database"),
    (&["Client", "connect"], "database"),
];

/// Path prefixes of blocking client libraries.
const PREFIXES: &[(&[&str], &str)] = &[
    (
        &["reqwest", "blocking"],
        "external API (blocking HTTP client)",
    ),
    (&["ureq"], "external API (blocking HTTP client)"),
    (&["rusqlite"], "database"),
    (&["postgres"], "database"),
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
];

/// Calls whose closure argument runs elsewhere: not scanned.
const RUNS_ELSEWHERE: &[&str] = &["spawn_blocking", "block_in_place", "spawn"];

/// Methods that block whatever they are called on.
const METHODS: &[(&str, &str)] = &[
    ("block_on", "blocking on a future"),
    ("blocking_lock", "lock"),
    ("blocking_recv", "lock"),
    ("blocking_send", "lock"),
    ("blocking_read", "lock"),
    ("blocking_write", "lock"),
];

struct Scan {
    awaited: Vec<*const Expr>,
    found: Vec<Finding>,
}

fn segments(p: &ExprPath) -> Vec<String> {
    p.path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect()
}

fn matches_path(segs: &[String]) -> Option<&'static str> {
    if segs.len() == 1 && segs[0] == "sleep" {
        return Some("sleep"); // `use std::thread::sleep;` (an awaited async `sleep` is exempt)
    }
    if segs.last().is_some_and(|l| l == "block_on") {
        return Some("blocking on a future");
    }
    if segs
        .first()
        .is_some_and(|root| ASYNC_ROOTS.contains(&root.as_str()))
    {
        return None;
    }
    for (suffix, cat) in PATHS {
        if segs.len() >= suffix.len()
            && segs[segs.len() - suffix.len()..]
                .iter()
                .zip(suffix.iter())
                .all(|(a, b)| a == b)
        {
            return Some(cat);
        }
    }
    for (prefix, cat) in PREFIXES {
        if segs.len() >= prefix.len() && segs.iter().zip(prefix.iter()).all(|(a, b)| a == b) {
            return Some(cat);
        }
    }
    None
}

/// Whether `e` is (a method chain starting with) `Command::new(..)`.
fn is_command(e: &Expr) -> bool {
    match e {
        Expr::Call(ExprCall { func, .. }) => {
            matches!(&**func, Expr::Path(p) if segments(p).ends_with(&["Command".into(), "new".into()]))
        }
        Expr::MethodCall(m) => is_command(&m.receiver),
        Expr::Reference(r) => is_command(&r.expr),
        Expr::Paren(p) => is_command(&p.expr),
        _ => false,
    }
}

impl Scan {
    fn is_awaited(&self, e: &Expr) -> bool {
        self.awaited.contains(&(e as *const Expr))
    }
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_expr(&mut self, e: &'ast Expr) {
        match e {
            Expr::Await(a) => self.awaited.push(&*a.base as *const Expr),
            Expr::Call(c) if matches!(&*c.func, Expr::Path(p) if segments(p).last().is_some_and(|l| RUNS_ELSEWHERE.contains(&l.as_str()))) =>
            {
                return; // `spawn_blocking(|| ...)` and the like run their closure elsewhere
            }
            Expr::Call(c) if !self.is_awaited(e) => {
                if let Expr::Path(p) = &*c.func {
                    let segs = segments(p);
                    if let Some(category) = matches_path(&segs) {
                        let last = p
                            .path
                            .segments
                            .last()
                            .map_or_else(|| c.span(), |s| s.ident.span());
                        self.found.push(Finding {
                            span: last,
                            call: segs.join("::"),
                            category,
                        });
                    }
                }
            }
            Expr::MethodCall(m) if !self.is_awaited(e) => self.method(m),
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

impl Scan {
    fn method(&mut self, m: &ExprMethodCall) {
        let name = m.method.to_string();
        if let Some((_, category)) = METHODS.iter().find(|(n, _)| *n == name) {
            self.found.push(Finding {
                span: m.method.span(),
                call: format!(".{name}()"),
                category,
            });
        } else if (name == "output" || name == "status") && is_command(&m.receiver) {
            self.found.push(Finding {
                span: m.method.span(),
                call: format!("Command::{name}"),
                category: "subprocess",
            });
        }
    }
}

/// Blocking calls in `block`, in source order.
pub(crate) fn scan(block: &syn::Block) -> Vec<Finding> {
    let mut s = Scan {
        awaited: Vec::new(),
        found: Vec::new(),
    };
    s.visit_block(block);
    s.found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(body: &str) -> Vec<String> {
        let block: syn::Block = syn::parse_str(body).unwrap();
        scan(&block)
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
}
