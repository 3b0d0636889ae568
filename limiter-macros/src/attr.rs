//! Stage 1a: the arguments of the three attributes, parsed into typed
//! models that keep every value's span (darling's `SpannedValue`, or the
//! `Ident`/`Path` as written). Nothing is checked here beyond syntax and
//! names: unknown names get a "did you mean" and the list of valid ones,
//! duplicates are rejected by darling at the second occurrence.

use darling::ast::NestedMeta;
use darling::util::{Flag, SpannedValue};
use darling::{Error, FromMeta};
use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, Ident, Path};

/// Defines an argument struct and the list of its argument names together,
/// so that the "expected one of" list cannot drift from the fields. A field
/// `name as "spelling"` is spelled differently in the attribute (`crate`);
/// a trailing `..field: Type` is flattened in (darling) and not listed.
/// Field types are single names (the aliases below): a `ty` fragment would
/// reach darling wrapped in a group whose span hides its generated locals.
macro_rules! arguments {
    (
        $(#[$meta:meta])*
        pub(crate) struct $name:ident, names = $names:ident {
            $( $(#[$fmeta:meta])* $field:ident $(as $rename:literal)? : $ty:ident, )*
            $( .. $flat:ident : $flat_ty:ident, )?
        }
    ) => {
        $(#[$meta])*
        pub(crate) struct $name {
            $( $(#[$fmeta])* $(#[darling(rename = $rename)])? pub(crate) $field: $ty, )*
            $( #[darling(flatten)] pub(crate) $flat: $flat_ty, )?
        }

        #[doc = concat!("Every argument name of [`", stringify!($name), "`], in declaration order.")]
        pub(crate) const $names: &[&str] = &[ $( arguments!(@name $field $($rename)?) ),* ];
    };
    (@name $field:ident) => { stringify!($field) };
    (@name $field:ident $rename:literal) => { $rename };
}

/// A text argument with its span: `timeout = "10s"`.
type Text = Option<SpannedValue<String>>;
/// A count argument with its span: `max_concurrent = 20`.
type Count = Option<SpannedValue<u32>>;
/// A ratio argument with its span: `failure_rate = 0.5`.
type Ratio = Option<SpannedValue<f64>>;
/// An optional identifier argument: `key = user_id`.
type Name = Option<IdentArg>;
/// An optional path argument: `fallback = cached_user`.
type FnPath = Option<PathArg>;
/// `breaker`, `breaker = true` or `breaker(...)`, with its span.
type Breaker = Option<SpannedValue<BreakerArg>>;
/// An optional expression argument: `cost = items.len()`.
type Cost = Option<CostArg>;

/// `cost = expr`: what one call takes from the rate limits, an unsigned
/// integer expression over the parameters (its type is checked where the
/// expansion passes it to `Call::cost`). Literals are checked here.
#[derive(Debug, Clone)]
pub(crate) struct CostArg(pub(crate) Expr);

impl FromMeta for CostArg {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        let wrong = |what: &str| {
            Err(Error::custom(format!(
                "`cost` takes an unsigned integer expression, not {what}; e.g. `cost = items.len()` or `cost = 5`"
            ))
            .with_span(expr))
        };
        match expr {
            Expr::Lit(syn::ExprLit { lit, .. }) => match lit {
                syn::Lit::Int(i) if i.base10_digits().starts_with('-') => wrong("a negative number"),
                syn::Lit::Int(i) => match i.base10_parse::<u32>() {
                    Ok(0) => Err(Error::custom(
                        "`cost = 0` takes nothing from the rate limit; remove it, or compute the cost from the parameters",
                    )
                    .with_span(expr)),
                    Ok(_) => Ok(CostArg(expr.clone())),
                    Err(_) => Err(Error::custom(format!(
                        "`cost = {i}` is more than a rate window can hold (at most {})",
                        u32::MAX
                    ))
                    .with_span(expr)),
                },
                syn::Lit::Str(_) => wrong("a string (write the expression without quotes)"),
                syn::Lit::Float(_) => wrong("a float"),
                syn::Lit::Bool(_) => wrong("a bool"),
                _ => wrong("this literal"),
            },
            Expr::Unary(syn::ExprUnary {
                op: syn::UnOp::Neg(_),
                ..
            }) => wrong("a negative number"),
            _ => Ok(CostArg(expr.clone())),
        }
    }
}

/// An identifier argument: `key = user_id`, `kind = database`.
#[derive(Debug, Clone)]
pub(crate) struct IdentArg(pub(crate) Ident);

impl FromMeta for IdentArg {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
                Ok(IdentArg(p.path.segments[0].ident.clone()))
            }
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => s
                .parse::<Ident>()
                .map(IdentArg)
                .map_err(|_| Error::custom("expected an identifier").with_span(s)),
            other => {
                Err(Error::custom("expected an identifier, e.g. `key = user_id`").with_span(other))
            }
        }
    }
}

/// A path argument: `fallback = cache::lookup`.
#[derive(Debug, Clone)]
pub(crate) struct PathArg(pub(crate) Path);

impl FromMeta for PathArg {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Path(p) if p.qself.is_none() => Ok(PathArg(p.path.clone())),
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => s
                .parse::<Path>()
                .map(PathArg)
                .map_err(|_| Error::custom("expected a path to a function").with_span(s)),
            other => Err(Error::custom(
                "expected a path to a function, e.g. `fallback = cached_user`",
            )
            .with_span(other)),
        }
    }
}

/// `breaker`, `breaker = true|false`, or `breaker(failure_rate = 0.5, ...)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct BreakerArg {
    pub(crate) enabled: bool,
    pub(crate) fields: BreakerFields,
}

arguments! {
    /// The fields of `breaker(...)`.
    #[derive(Debug, Clone, Default, FromMeta)]
    #[darling(default)]
    pub(crate) struct BreakerFields, names = BREAKER_FIELDS {
        failure_rate: Ratio,
        min_calls: Count,
        window: Count,
        slow_call: Text,
        recovery: Text,
        half_open_calls: Count,
        success_threshold: Count,
        consecutive_failures: Count,
        /// `failure = path`: the errors of the body that count as failures.
        failure: FnPath,
    }
}

impl FromMeta for BreakerArg {
    fn from_word() -> darling::Result<Self> {
        Ok(Self {
            enabled: true,
            fields: BreakerFields::default(),
        })
    }

    fn from_bool(value: bool) -> darling::Result<Self> {
        Ok(Self {
            enabled: value,
            fields: BreakerFields::default(),
        })
    }

    fn from_list(items: &[NestedMeta]) -> darling::Result<Self> {
        let mut errors = Error::accumulator();
        let items = known_only(items.to_vec(), BREAKER_FIELDS, &mut errors);
        let fields = errors.handle(BreakerFields::from_list(&items));
        errors.finish()?;
        Ok(Self {
            enabled: true,
            fields: fields.unwrap_or_default(),
        })
    }
}

arguments! {
    /// The arguments of `#[limit_blocking(...)]` as written.
    #[derive(Debug, Default, FromMeta)]
    #[darling(default)]
    pub(crate) struct LimitArgs, names = ARGUMENTS {
        op: Text,
        kind: Name,
        timeout: Text,
        strategy: Text,
        on_timeout: FnPath,
        fallback: FnPath,
        rate: Text,
        burst: Count,
        algorithm: Text,
        cost: Cost,
        key: Name,
        max_concurrent: Count,
        max_concurrent_per_key: Count,
        queue: Count,
        queue_timeout: Text,
        overload: Text,
        priority: Name,
        retries: Count,
        backoff: Text,
        backoff_base: Text,
        breaker: Breaker,
        backend: Text,
        degradation: Text,
        deny_blocking: Flag,
        allow_blocking: Flag,
        registry: FnPath,
        krate as "crate": Text,
    }
}

arguments! {
    /// The arguments of `#[optimize_route(...)]`: its own, then any of
    /// `#[limit_blocking]`'s.
    #[derive(Debug, FromMeta)]
    pub(crate) struct RouteArgs, names = ROUTE_ARGUMENTS {
        level: IdentArg,
        name: Text,
        cache_ttl: Text,
        ..limit: LimitArgs,
    }
}

arguments! {
    /// The arguments of `#[background_task(...)]`.
    #[derive(Debug, Default, FromMeta)]
    #[darling(default)]
    pub(crate) struct TaskArgs, names = TASK_ARGUMENTS {
        name: Text,
        max_concurrent: Count,
        queue: Count,
        retries: Count,
        timeout: Text,
        krate as "crate": Text,
    }
}

/// Parses `#[limit_blocking]`'s arguments.
pub(crate) fn limit(args: TokenStream) -> syn::Result<LimitArgs> {
    parse(args, &[ARGUMENTS])
}

/// Parses `#[optimize_route]`'s arguments.
pub(crate) fn route(args: TokenStream) -> syn::Result<RouteArgs> {
    parse(args, &[ROUTE_ARGUMENTS, ARGUMENTS])
}

/// Parses `#[background_task]`'s arguments.
pub(crate) fn task(args: TokenStream) -> syn::Result<TaskArgs> {
    parse(args, &[TASK_ARGUMENTS])
}

/// Parses an argument list whose names are in `known`, reporting every
/// unknown name and every darling error together.
fn parse<T: FromMeta>(args: TokenStream, known: &[&[&str]]) -> syn::Result<T> {
    let items = NestedMeta::parse_meta_list(args)?;
    let known: Vec<&str> = known.concat();
    let mut errors = Error::accumulator();
    let items = known_only(items, &known, &mut errors);
    let parsed = errors.handle(T::from_list(&items));
    errors.finish()?;
    // `handle` gives `None` only with an error, which `finish` returned.
    parsed.ok_or_else(|| syn::Error::new(proc_macro2::Span::call_site(), "invalid arguments"))
}

/// Reports every argument whose name is not in `known`, with a "did you
/// mean" and the list of valid names, and returns the others.
fn known_only(
    items: Vec<NestedMeta>,
    known: &[&str],
    errors: &mut darling::error::Accumulator,
) -> Vec<NestedMeta> {
    items
        .into_iter()
        .filter(|item| {
            let NestedMeta::Meta(meta) = item else {
                return true; // darling reports literals itself
            };
            let name = meta_name(meta.path());
            if known.contains(&name.as_str()) {
                return true;
            }
            let hint = limiter_spec::closest(&name, known)
                .map(|c| format!(" did you mean `{c}`?"))
                .unwrap_or_default();
            errors.push(
                Error::custom(format!(
                    "unknown argument `{name}`;{hint} expected one of: {}",
                    known.join(", ")
                ))
                .with_span(meta.path()),
            );
            false
        })
        .collect()
}

/// The name of an argument (`timeout`), or its path as written.
fn meta_name(path: &Path) -> String {
    path.get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| quote!(#path).to_string())
}

/// What an expansion after errors needs to know of arguments that may not
/// have parsed: the facade's path, and whether the return type is kept.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    /// `crate = "path"`, when it is a path.
    pub(crate) krate: Option<Path>,
    /// A `fallback` argument is written: the return type stays as written.
    pub(crate) fallback: bool,
}

/// Reads [`Hints`] from the arguments' tokens, whatever else is wrong with
/// them.
pub(crate) fn hints(args: &TokenStream) -> Hints {
    let items = NestedMeta::parse_meta_list(args.clone()).unwrap_or_default();
    let mut hints = Hints::default();
    for item in &items {
        let NestedMeta::Meta(meta) = item else {
            continue;
        };
        match meta_name(meta.path()).as_str() {
            "fallback" => hints.fallback = true,
            "crate" => hints.krate = crate_path(meta),
            _ => {}
        }
    }
    hints
}

/// The path of `crate = "path"`, if it is one.
fn crate_path(meta: &syn::Meta) -> Option<Path> {
    let syn::Meta::NameValue(nv) = meta else {
        return None;
    };
    let Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Str(s),
        ..
    }) = &nv.value
    else {
        return None;
    };
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each listed name is accepted by the struct it lists (a name the
    /// struct lacks would be an "Unknown field" error from darling).
    #[test]
    fn argument_lists_name_every_field() {
        fn accepts<T: FromMeta>(names: &[&str], value: &str) {
            for name in names {
                let item: NestedMeta = syn::parse_str(&format!("{name} = {value}")).unwrap();
                if let Err(e) = T::from_list(&[item]) {
                    let text = e.to_string();
                    assert!(!text.contains("Unknown field"), "`{name}`: {text}");
                }
            }
        }
        accepts::<LimitArgs>(ARGUMENTS, "\"x\"");
        accepts::<TaskArgs>(TASK_ARGUMENTS, "\"x\"");
        accepts::<BreakerFields>(BREAKER_FIELDS, "\"x\"");
        assert_eq!(ARGUMENTS.len(), 27);
        assert_eq!(ARGUMENTS.last(), Some(&"crate"));
        assert_eq!(ROUTE_ARGUMENTS, ["level", "name", "cache_ttl"]);
        assert_eq!(TASK_ARGUMENTS.last(), Some(&"crate"));
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = limit(quote!(timout = "1s")).unwrap_err().to_string();
        assert!(err.contains("did you mean `timeout`?"), "{err}");
        assert!(err.contains("expected one of: op, kind, timeout"), "{err}");
        let err = route(quote!(level = Basic, cache_tll = "1s"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `cache_ttl`?"), "{err}");
    }

    #[test]
    fn hints_survive_bad_arguments() {
        let hints = hints(&quote!(fallback = 42, crate = "crate::lim", timeout = ));
        assert!(hints.krate.is_none(), "the list does not parse");
        let hints = self::hints(&quote!(fallback = 42, crate = "crate::lim"));
        assert!(hints.fallback);
        assert_eq!(
            hints.krate.map(|p| quote!(#p).to_string()).as_deref(),
            Some("crate :: lim")
        );
    }
}
