//! Snapshots of the generated code, one per main shape of each attribute,
//! so that a change to an expansion shows in review as a diff of the code
//! it generates (`src/snapshots/*.snap`; `INSTA_UPDATE=always cargo test
//! -p limiter-macros` rewrites them, then read the diff).

use proc_macro2::TokenStream;
use quote::quote;

use crate::entry;

type Attribute = fn(TokenStream, TokenStream) -> TokenStream;

/// `#[name(args)] item` and its expansion, pretty-printed one after the
/// other, so that each snapshot shows what it expands.
fn expand(name: &str, attribute: Attribute, args: TokenStream, item: TokenStream) -> String {
    let out = attribute(args.clone(), item.clone());
    let name = syn::Ident::new(name, proc_macro2::Span::call_site());
    let input = pretty(quote!(#[#name(#args)] #item));
    format!("{input}\n// expands to:\n\n{}", pretty(out))
}

/// The same, for a method: both inside `impl Repo { .. }`.
fn expand_method(name: &str, attribute: Attribute, args: TokenStream, item: TokenStream) -> String {
    let out = attribute(args.clone(), item.clone());
    let name = syn::Ident::new(name, proc_macro2::Span::call_site());
    let input = pretty(quote!(impl Repo { #[#name(#args)] #item }));
    format!(
        "{input}\n// expands to:\n\n{}",
        pretty(quote!(impl Repo { #out }))
    )
}

/// Items, formatted.
fn pretty(items: TokenStream) -> String {
    let file: syn::File = syn::parse2(items).expect("parses as items");
    prettyplease::unparse(&file)
}

#[test]
fn limit_async_result() {
    let code = expand(
        "limit_blocking",
        entry::limit_blocking,
        quote!(
            op = "db.user",
            kind = database,
            timeout = "2s",
            rate = "100/s, 5000/h",
            key = tenant,
            max_concurrent_per_key = 3,
            queue = 10
        ),
        quote! {
            /// Loads a user.
            pub async fn load_user(tenant: String, id: u64) -> Result<String, DbError> {
                if id == 0 { return Err(DbError::Missing); }
                Ok(format!("{tenant}/{id}"))
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn limit_async_plain_return() {
    let code = expand(
        "limit_blocking",
        entry::limit_blocking,
        quote!(timeout = "1500ms", strategy = "cache_fallback", key = city),
        quote! {
            async fn temperature(city: String) -> f32 {
                21.5
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn limit_async_unit_with_priority_and_breaker() {
    let code = expand(
        "limit_blocking",
        entry::limit_blocking,
        quote!(
            op = "jobs",
            max_concurrent = 2,
            priority = urgency,
            overload = "drop_oldest",
            breaker(failure_rate = 0.5, min_calls = 10, recovery = "1m")
        ),
        quote! {
            async fn run_job(urgency: u8) {
                tokio::task::yield_now().await;
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn limit_plain_fn() {
    let code = expand(
        "limit_blocking",
        entry::limit_blocking,
        quote!(kind = cpu_intensive, timeout = "5s"),
        quote! {
            fn checksum(data: Vec<u8>) -> u32 {
                data.iter().map(|b| u32::from(*b)).sum()
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn limit_plain_fn_result_with_retries() {
    let code = expand(
        "limit_blocking",
        entry::limit_blocking,
        quote!(
            op = "read",
            kind = file_io,
            retries = 2,
            backoff = "exponential",
            backoff_base = "100ms"
        ),
        quote! {
            fn read(mut path: String) -> std::io::Result<usize> {
                path.push_str(".txt");
                std::fs::read(path).map(|b| b.len())
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn limit_method_with_self_and_retries() {
    let code = expand_method(
        "limit_blocking",
        entry::limit_blocking,
        quote!(
            op = "repo.get",
            retries = 1,
            backend = "redis",
            rate = "10/s"
        ),
        quote! {
            pub async fn get(&self, id: u32, name: &str) -> Option<u32> {
                self.find(id, name)
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn limit_method_with_fallback() {
    let code = expand_method(
        "limit_blocking",
        entry::limit_blocking,
        quote!(op = "catalog.item", timeout = "1s", fallback = Self::cached),
        quote! {
            pub async fn item(&self, id: u64, region: &str) -> String {
                format!("{region}-{id}")
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn limit_breaker_failure_classifier() {
    let code = expand(
        "limit_blocking",
        entry::limit_blocking,
        quote!(op = "api", breaker(failure = is_failure)),
        quote! {
            async fn call_api() -> Result<impl Send, ApiError> {
                Ok(1)
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn limit_blocking_call_warning() {
    let code = expand(
        "limit_blocking",
        entry::limit_blocking,
        quote!(op = "sleepy"),
        quote! {
            async fn sleepy(d: std::time::Duration) {
                std::thread::sleep(d);
                let later = tokio::time::sleep(d);
                later.await;
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn limit_async_trait_method() {
    let code = expand_method(
        "limit_blocking",
        entry::limit_blocking,
        quote!(op = "users.name", timeout = "1s"),
        quote! {
            fn name<'life0, 'async_trait>(
                &'life0 self,
                id: u64,
            ) -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<String, LimitError>> + ::core::marker::Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    let __self = self;
                    let id = id;
                    let __ret: Result<String, LimitError> = { Ok(format!("user-{id}")) };
                    #[allow(unreachable_code)]
                    __ret
                })
            }
        },
    );
    insta::assert_snapshot!(code);
}

/// A bad argument: the error, and the function expanded with the default
/// settings (still `async`, still returning `Result<_, LimitError>`).
#[test]
fn limit_recovery_after_errors() {
    let code = expand(
        "limit_blocking",
        entry::limit_blocking,
        quote!(kind = file_io, timeout = "2x"),
        quote! {
            fn read_len(path: String) -> Result<usize, ReadError> {
                Ok(path.len())
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn route_basic() {
    let code = expand(
        "optimize_route",
        entry::optimize_route,
        quote!(level = Basic, name = "GET /health"),
        quote! {
            pub async fn health() -> &'static str {
                "ok"
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn route_advanced() {
    let code = expand(
        "optimize_route",
        entry::optimize_route,
        quote!(
            level = Advanced,
            name = "POST /orders",
            rate = "50/s",
            max_concurrent = 8
        ),
        quote! {
            pub async fn create_order(body: String) -> Result<usize, AppError> {
                Ok(body.len())
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn route_ultra() {
    let code = expand(
        "optimize_route",
        entry::optimize_route,
        quote!(
            level = Ultra,
            name = "GET /users/{id}",
            key = id,
            cache_ttl = "500ms"
        ),
        quote! {
            pub async fn get_user(id: u64) -> Result<User, AppError> {
                Ok(User { id })
            }
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn task_plain() {
    let code = expand(
        "background_task",
        entry::background_task,
        quote!(),
        quote! {
            async fn fire_and_forget() {}
        },
    );
    insta::assert_snapshot!(code);
}

#[test]
fn task_with_retries() {
    let code = expand(
        "background_task",
        entry::background_task,
        quote!(
            name = "report",
            max_concurrent = 2,
            queue = 10,
            retries = 1,
            timeout = "30s"
        ),
        quote! {
            /// Builds a report in the background.
            pub async fn report(mut job: Job) -> Result<u64, std::io::Error> {
                job.id += 1;
                Ok(job.id)
            }
        },
    );
    insta::assert_snapshot!(code);
}

/// A body that does not parse is expanded around its tokens, unchanged:
/// the compiler reports the syntax error there, and nothing else.
#[test]
fn unparsable_body_is_kept_as_written() {
    let out = entry::limit_blocking(
        quote!(timeout = "1s"),
        quote!(async fn f(x: u32) -> u32 { let y = x +; y }),
    )
    .to_string();
    assert!(out.contains("let y = x + ; y"), "{out}");
    assert!(!out.contains("compile_error"), "{out}");
    assert!(
        out.contains("async fn f (x : u32) -> :: core :: result :: Result < u32"),
        "{out}"
    );
}

/// Level `Ultra` declares its configuration once, in the op's site.
#[test]
fn ultra_declares_its_config_once() {
    let out = entry::optimize_route(
        quote!(level = Ultra, key = id),
        quote!(
            async fn get(id: u64) -> Result<u64, E> {
                Ok(id)
            }
        ),
    )
    .to_string();
    assert_eq!(out.matches("OpConfig :: default ()").count(), 1, "{out}");
}

/// Only the errors are reported after errors, whatever the function.
#[test]
fn recovery_keeps_the_shape_callers_see() {
    let out = entry::limit_blocking(
        quote!(fallback = 42),
        quote!(
            async fn load(&mut self, id: &str) -> u32 {
                1
            }
        ),
    )
    .to_string();
    assert_eq!(out.matches("compile_error").count(), 1, "{out}");
    assert!(
        out.contains("-> u32"),
        "a fallback keeps the return type: {out}"
    );
    let out = entry::background_task(
        quote!(timeout = "never"),
        quote!(
            async fn report(name: &str) {
                let _ = name;
            }
        ),
    )
    .to_string();
    assert!(
        !out.contains("spawn"),
        "a borrowing body is not spawned: {out}"
    );
}
