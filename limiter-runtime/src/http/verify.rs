//! Credential verification: an API key or bearer token is a client's
//! identity only once a [`Verifier`] accepts it. An unverified credential
//! buys nothing: the caller is known by its address, in the anonymous
//! class, so inventing a new key per request never buys a fresh budget.
//!
//! Verifiers: a [`KeySet`] (keys given in code, or their SHA-256 digests
//! read from a store), a synchronous or asynchronous closure (a database
//! lookup, a call to an identity service), and with feature `jwt` a
//! [`Jwt`](super::Jwt) check of signed tokens.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::ConfigError;

use super::identity::ClientClass;

/// A credential a verifier accepted: who the caller is (an account, a key
/// id; never the credential itself), and its class when the verifier
/// decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The identity. Client ids are `key:<id>` for API keys and
    /// `bearer:<id>` for bearer tokens.
    pub id: String,
    /// The class, when the verifier says (a JWT claim); otherwise the
    /// source's: [`ClientClass::Api`] for API keys,
    /// [`ClientClass::Authenticated`] for bearer tokens. A verifier can
    /// never make a caller [`ClientClass::Internal`] (that takes the
    /// internal secret): such a class is ignored.
    pub class: Option<ClientClass>,
}

impl Verified {
    /// The identity `id`, with the source's class.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            class: None,
        }
    }

    /// The identity with its class decided by the verifier.
    pub fn with_class(mut self, class: ClientClass) -> Self {
        self.class = Some(class);
        self
    }
}

/// A future deciding a credential.
pub type VerifyFuture = Pin<Box<dyn Future<Output = Option<Verified>> + Send>>;

type SyncCheck = dyn Fn(&str) -> Option<Verified> + Send + Sync;
type AsyncCheck = dyn Fn(String) -> VerifyFuture + Send + Sync;

/// Decides whether a credential (an API key, a bearer token) is an
/// identity.
///
/// ```
/// use limiter_runtime::http::{KeySet, Verified, Verifier};
/// let keys = Verifier::keys(KeySet::new().key("k-123", "acme"));
/// let by_fn = Verifier::from_fn(|token| {
///     (token == "let-me-in").then(|| Verified::new("alice"))
/// });
/// let by_lookup = Verifier::from_async_fn(|token| async move {
///     // e.g. a database lookup of the token's digest
///     (token.len() == 32).then(|| Verified::new("bob"))
/// });
/// # let _ = (keys, by_fn, by_lookup);
/// ```
#[derive(Clone)]
pub struct Verifier(Check);

#[derive(Clone)]
enum Check {
    Keys(Arc<KeySet>),
    Sync(Arc<SyncCheck>),
    Async(Arc<AsyncCheck>),
    #[cfg(feature = "jwt")]
    Jwt(Arc<super::jwt::Jwt>),
}

impl Verifier {
    /// Accepts the keys of `set`.
    pub fn keys(set: KeySet) -> Self {
        Self(Check::Keys(Arc::new(set)))
    }

    /// Accepts what `check` accepts (called on the request's task; it must
    /// not block).
    pub fn from_fn<F>(check: F) -> Self
    where
        F: Fn(&str) -> Option<Verified> + Send + Sync + 'static,
    {
        Self(Check::Sync(Arc::new(check)))
    }

    /// Accepts what the future of `check` accepts: a lookup in a store, a
    /// call to an identity service. The request waits for it before any
    /// limit is applied, at most a second (then the credential counts as
    /// unverified); keep it fast or cached, as every request carrying a
    /// credential runs it.
    pub fn from_async_fn<F, Fut>(check: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Verified>> + Send + 'static,
    {
        Self(Check::Async(Arc::new(move |c| Box::pin(check(c)))))
    }

    /// Accepts JSON Web Tokens that `jwt` verifies (feature `jwt`).
    #[cfg(feature = "jwt")]
    #[cfg_attr(all(docsrs, limiter_doc_cfg), doc(cfg(feature = "jwt")))]
    pub fn jwt(jwt: super::Jwt) -> Self {
        Self(Check::Jwt(Arc::new(jwt)))
    }

    /// The verdict on `credential`: at once for every verifier but an
    /// asynchronous closure.
    pub(crate) fn check(&self, credential: &str) -> Verdict {
        match &self.0 {
            Check::Keys(set) => Verdict::Ready(set.verify(credential)),
            Check::Sync(f) => Verdict::Ready(f(credential)),
            Check::Async(f) => Verdict::Pending(f(credential.to_owned())),
            #[cfg(feature = "jwt")]
            Check::Jwt(jwt) => Verdict::Ready(jwt.verify(credential)),
        }
    }
}

/// A verifier's answer: now, or after a wait.
pub(crate) enum Verdict {
    Ready(Option<Verified>),
    Pending(VerifyFuture),
}

impl From<KeySet> for Verifier {
    fn from(set: KeySet) -> Self {
        Self::keys(set)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Check::Keys(set) => return f.debug_tuple("Verifier").field(set).finish(),
            Check::Sync(_) => "fn",
            Check::Async(_) => "async fn",
            #[cfg(feature = "jwt")]
            Check::Jwt(_) => "jwt",
        };
        f.debug_tuple("Verifier").field(&kind).finish()
    }
}

/// A set of API keys, each with the identity it stands for. Keys are kept
/// only as SHA-256 digests: a presented key is digested and looked up, so
/// the set holds no key in memory and the lookup time does not depend on
/// how much of a key matched.
#[derive(Clone, Default)]
pub struct KeySet {
    digests: HashMap<[u8; 32], String>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`, standing for the identity `id`.
    pub fn key(mut self, key: impl AsRef<[u8]>, id: impl Into<String>) -> Self {
        self.digests.insert(Sha256::digest(key).into(), id.into());
        self
    }

    /// Adds a key known only by its SHA-256 digest (64 hex digits, as a
    /// store of hashed keys keeps them), standing for `id`. Fails on a
    /// digest that is not 64 hex digits.
    pub fn sha256_hex(mut self, digest: &str, id: impl Into<String>) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            op: "<identity>".into(),
            field: "sha256_hex",
            value: digest.to_owned(),
            reason: reason.into(),
        };
        let hex = digest.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("a SHA-256 digest is 64 hex digits"));
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| invalid("a SHA-256 digest is 64 hex digits"))?;
        }
        self.digests.insert(bytes, id.into());
        Ok(self)
    }

    /// Keys in the set.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    fn verify(&self, key: &str) -> Option<Verified> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.digests.get(&digest).map(Verified::new)
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.digests.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(v: &Verifier, c: &str) -> Option<Verified> {
        match v.check(c) {
            Verdict::Ready(v) => v,
            Verdict::Pending(_) => panic!("a synchronous verifier"),
        }
    }

    #[test]
    fn a_key_set_accepts_its_keys_only() {
        let digest = format!("{:x}", Sha256::digest(b"hashed-key"));
        let set = KeySet::new()
            .key("k1", "acme")
            .sha256_hex(&digest, "globex")
            .unwrap();
        let v = Verifier::keys(set);
        assert_eq!(ready(&v, "k1"), Some(Verified::new("acme")));
        assert_eq!(ready(&v, "hashed-key"), Some(Verified::new("globex")));
        for wrong in ["k2", "k1 ", "", "K1", &digest] {
            assert_eq!(ready(&v, wrong), None, "{wrong:?}");
        }
        assert!(!format!("{v:?}").contains("k1"), "no key in Debug");
    }

    #[test]
    fn a_bad_digest_is_an_error_naming_it() {
        let err = KeySet::new()
            .sha256_hex("abc", "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("abc") && err.contains("64 hex digits"),
            "{err}"
        );
        for bad in [
            "z".repeat(64),
            "é".repeat(32),
            format!("+{}", "0".repeat(63)),
        ] {
            assert!(KeySet::new().sha256_hex(&bad, "x").is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn closures_decide_now_or_later() {
        let sync = Verifier::from_fn(|c| (c == "yes").then(|| Verified::new("s")));
        assert_eq!(ready(&sync, "yes"), Some(Verified::new("s")));
        assert_eq!(ready(&sync, "no"), None);
        let lookup = Verifier::from_async_fn(|c: String| async move {
            tokio::task::yield_now().await;
            (c == "yes").then(|| Verified::new("a").with_class(ClientClass::Api))
        });
        let Verdict::Pending(fut) = lookup.check("yes") else {
            panic!("an asynchronous verifier waits");
        };
        assert_eq!(
            fut.await,
            Some(Verified::new("a").with_class(ClientClass::Api))
        );
    }
}
