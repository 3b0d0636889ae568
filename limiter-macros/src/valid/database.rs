//! What `kind = database` asks of the timeout strategy.
//!
//! The strategy is part of a call's type (the body must be `Send +
//! 'static` to be drained or moved to the background), so no preset can
//! change it behind the author's back without breaking valid functions
//! that borrow their arguments or hold a `!Send` value across an
//! `.await`; the default stays `cancel` for every kind (DESIGN.md). What
//! the database preset does instead is make the choice explicit: an
//! `async fn` of kind `database` that names neither a `strategy` nor an
//! `on_timeout` cleanup gets a warning at `database` saying what `cancel`
//! does to a connection pool and what to write instead. Writing any
//! strategy, `cancel` included, silences it.

use syn::Ident;

use crate::attr::LimitArgs;
use crate::item::Func;
use crate::spec::Warning;
use crate::types;

/// The warning for an `async fn` of kind `database` left on the implicit
/// `cancel` with no cleanup, if that is what `args` say.
pub(super) fn implicit_cancel(args: &LimitArgs, func: &Func) -> Option<Warning> {
    let kind = &args.kind.as_ref()?.0;
    if kind != "database"
        || func.sig.asyncness.is_none()
        || args.strategy.is_some()
        || args.on_timeout.is_some()
    {
        return None;
    }
    Some(Warning {
        what: "database_strategy",
        span: kind.span(),
        text: advice(kind, types::borrows_any(&func.sig)),
    })
}

/// What to write instead, for a function that can drain or one that
/// borrows (and so cannot outlive its caller).
fn advice(kind: &Ident, borrows: bool) -> String {
    let problem = format!(
        "`kind = {kind}` on an async fn with the implicit `strategy = \"cancel\"`: a timed-out query is dropped on the client but keeps running on the server, and its connection goes back to the pool still busy, so the next calls time out behind it (3-11 % of calls succeeded in limiter's PostgreSQL test, ~50 % with `drain`)"
    );
    let fix = if borrows {
        "this function borrows its arguments, so it cannot drain: add `on_timeout = path::to::cancel` that cancels the query server-side (e.g. tokio-postgres's `CancelToken`), or take the arguments by value and write `strategy = \"drain\"`"
    } else {
        "write `strategy = \"drain\"` (the body finishes holding its place, the caller gets `Timeout` at once), or add an `on_timeout` cleanup that cancels the query server-side"
    };
    format!("{problem}; {fix}; write `strategy = \"cancel\"` to keep cancelling (right when the server stops the query itself, e.g. a `statement_timeout` no longer than the op's timeout)")
}
