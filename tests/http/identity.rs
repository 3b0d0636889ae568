//! Verified identity over real TCP: a credential buys a client its own
//! budget only once a verifier accepts it; invented keys and tokens, and
//! expired or wrongly signed JWTs, are the anonymous client they come from.

use axum::routing::get;
use axum::{Extension, Router};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use limiter::http::ClientClass::{Anonymous, Api, Authenticated};
use limiter::http::{Client, Jwt, KeySet, LimiterLayer, Rule, Verified, Verifier};
use serde_json::json;

use super::{client, registry, serve};

const SECRET: &[u8] = b"the signing secret of the test's identity provider";

/// A server whose one route answers the caller's class and id, under a
/// budget per class: anonymous 3, API keys 10, bearer tokens 6 a minute.
async fn server(layer: limiter::http::LimiterLayerBuilder) -> String {
    let layer = layer
        .registry(registry())
        .rule(
            Rule::new("*")
                .name("anonymous")
                .classes([Anonymous])
                .per_minute(3),
        )
        .rule(Rule::new("*").name("api").classes([Api]).per_minute(10))
        .rule(
            Rule::new("*")
                .name("users")
                .classes([Authenticated])
                .per_minute(6),
        )
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/who",
            get(|Extension(c): Extension<Client>| async move { format!("{} {}", c.class, c.id) }),
        )
        .layer(layer);
    serve(app).await
}

/// Sends `n` requests, header `name` set by `value(i)`; returns how many
/// were admitted and the last admitted answer.
async fn send(
    base: &str,
    n: usize,
    name: &str,
    value: impl Fn(usize) -> String,
) -> (usize, String) {
    let c = client();
    let (mut ok, mut last) = (0, String::new());
    for i in 0..n {
        let resp = c
            .get(format!("{base}/who"))
            .header(name, value(i))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => {
                ok += 1;
                last = resp.text().await.unwrap();
            }
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, last)
}

fn jwt(secret: &[u8], claims: serde_json::Value) -> String {
    let key = EncodingKey::from_secret(secret).unwrap();
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[tokio::test]
async fn invented_credentials_get_no_more_than_the_anonymous_budget() {
    let base = server(
        LimiterLayer::builder()
            .api_keys("x-api-key", KeySet::new().key("real-key", "acme"))
            .bearer(Verifier::jwt(Jwt::hs256(SECRET).unwrap())),
    )
    .await;
    // A new key on every request: one anonymous client, 3 admitted.
    let (ok, who) = send(&base, 20, "x-api-key", |i| format!("invented-{i}")).await;
    assert_eq!(ok, 3, "rotating keys");
    assert_eq!(who, "anonymous ip:127.0.0.1");
    // A new bearer token on every request: the same anonymous budget.
    let (ok, _) = send(&base, 20, "authorization", |i| format!("Bearer t{i}")).await;
    assert_eq!(
        ok, 0,
        "rotating bearer tokens share the spent anonymous budget"
    );
    // Expired and wrongly signed tokens are no identity either.
    let expired = jwt(SECRET, json!({"sub": "alice", "exp": now() - 60}));
    let forged = jwt(
        b"another secret",
        json!({"sub": "alice", "exp": now() + 600}),
    );
    for token in [expired, forged] {
        let (ok, _) = send(&base, 3, "authorization", |_| format!("Bearer {token}")).await;
        assert_eq!(ok, 0);
    }
}

#[tokio::test]
async fn a_verified_key_and_a_valid_jwt_get_their_own_budgets() {
    let base = server(
        LimiterLayer::builder()
            .api_keys("x-api-key", KeySet::new().key("real-key", "acme"))
            .bearer(Verifier::jwt(Jwt::hs256(SECRET).unwrap())),
    )
    .await;
    let (ok, who) = send(&base, 12, "x-api-key", |_| "real-key".into()).await;
    assert_eq!((ok, who.as_str()), (10, "api key:acme"));
    let token = jwt(SECRET, json!({"sub": "alice", "exp": now() + 600}));
    let (ok, who) = send(&base, 8, "authorization", |_| format!("Bearer {token}")).await;
    assert_eq!((ok, who.as_str()), (6, "authenticated bearer:alice"));
    // Another valid token of the same subject is the same client.
    let again = jwt(SECRET, json!({"sub": "alice", "exp": now() + 900}));
    let (ok, _) = send(&base, 2, "authorization", |_| format!("Bearer {again}")).await;
    assert_eq!(ok, 0, "alice's budget is spent whatever token she shows");
    // The anonymous budget was not touched by any of this.
    let (ok, _) = send(&base, 4, "x-nothing", |_| String::new()).await;
    assert_eq!(ok, 3);
}

#[tokio::test]
async fn closures_verify_sync_and_async() {
    let base = server(
        LimiterLayer::builder()
            .api_keys(
                "x-api-key",
                Verifier::from_fn(|k| k.strip_prefix("tenant-").map(Verified::new)),
            )
            .bearer(Verifier::from_async_fn(|t: String| async move {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                (t == "session-42").then(|| Verified::new("user-42").with_class(Api))
            })),
    )
    .await;
    let (ok, who) = send(&base, 11, "x-api-key", |_| "tenant-blue".into()).await;
    assert_eq!((ok, who.as_str()), (10, "api key:blue"));
    let (ok, who) = send(&base, 11, "authorization", |_| "Bearer session-42".into()).await;
    assert_eq!(
        (ok, who.as_str()),
        (10, "api bearer:user-42"),
        "the verifier chose the class"
    );
    let (ok, _) = send(&base, 5, "authorization", |_| "Bearer session-43".into()).await;
    assert_eq!(ok, 3, "a refused token is the anonymous client");
}
