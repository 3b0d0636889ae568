//! Bearer JSON Web Tokens verified with the `jsonwebtoken` crate (feature
//! `jwt`): the signature (HS256, RS256 or ES256 with the configured key),
//! `exp` and `nbf`, and `aud`/`iss` when configured. The token's subject
//! is the identity; a claim may name the class.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::ConfigError;

use super::identity::ClientClass;
use super::verify::Verified;

/// A check of signed bearer tokens.
///
/// ```
/// use limiter_runtime::http::{Jwt, Verifier};
/// let jwt = Jwt::hs256(b"a long shared secret")
///     .unwrap()
///     .audience(["my-api"])
///     .issuer(["https://auth.example.com"])
///     .class_claim("tier");
/// let verifier = Verifier::jwt(jwt);
/// # let _ = verifier;
/// ```
#[derive(Clone)]
pub struct Jwt {
    key: DecodingKey,
    validation: Validation,
    class_claim: Option<String>,
}

/// The claims read from a verified token.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Jwt {
    /// Tokens signed with HMAC-SHA256 and `secret`. Fails on an empty
    /// secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, ConfigError> {
        let key = DecodingKey::from_secret(secret).map_err(|e| invalid("hs256", "<secret>", e))?;
        Ok(Self::with(key, Algorithm::HS256))
    }

    /// Tokens signed with RSA (RS256) by the private half of the PEM public
    /// key `pem`. Fails on a key that does not parse.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let key =
            DecodingKey::from_rsa_pem(pem).map_err(|e| invalid("rs256_pem", &preview(pem), e))?;
        Ok(Self::with(key, Algorithm::RS256))
    }

    /// Tokens signed with ECDSA P-256 (ES256) by the private half of the
    /// PEM public key `pem`. Fails on a key that does not parse.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let key =
            DecodingKey::from_ec_pem(pem).map_err(|e| invalid("es256_pem", &preview(pem), e))?;
        Ok(Self::with(key, Algorithm::ES256))
    }

    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        // `exp` is required and checked, `nbf` checked when present; the
        // audience only when one is configured.
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 0;
        Self {
            key,
            validation,
            class_claim: None,
        }
    }

    /// Accepts only tokens whose `aud` names one of `audience` (a token
    /// without `aud` is refused).
    pub fn audience<S: ToString>(mut self, audience: impl IntoIterator<Item = S>) -> Self {
        let aud: Vec<String> = audience.into_iter().map(|a| a.to_string()).collect();
        self.validation.set_audience(&aud);
        self.validation.validate_aud = true;
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// Accepts only tokens whose `iss` is one of `issuers` (a token
    /// without `iss` is refused).
    pub fn issuer<S: ToString>(mut self, issuers: impl IntoIterator<Item = S>) -> Self {
        let iss: Vec<String> = issuers.into_iter().map(|i| i.to_string()).collect();
        self.validation.set_issuer(&iss);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Seconds of clock skew allowed on `exp` and `nbf` (default 0).
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.validation.leeway = seconds;
        self
    }

    /// Reads the caller's class from the claim `name` (`"api"` or
    /// `"authenticated"`; anything else leaves the class of a bearer
    /// token, authenticated).
    pub fn class_claim(mut self, name: impl Into<String>) -> Self {
        self.class_claim = Some(name.into());
        self
    }

    /// The identity of a valid token: its subject. A token without a
    /// subject is refused: there would be nobody to charge.
    pub(crate) fn verify(&self, token: &str) -> Option<Verified> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).ok()?;
        let sub = data.claims.sub.filter(|s| !s.is_empty())?;
        let class = self
            .class_claim
            .as_ref()
            .and_then(|c| data.claims.rest.get(c))
            .and_then(serde_json::Value::as_str)
            .and_then(|v| match v {
                "api" => Some(ClientClass::Api),
                "authenticated" => Some(ClientClass::Authenticated),
                _ => None,
            });
        Some(Verified { id: sub, class })
    }
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithms", &self.validation.algorithms)
            .field("audience", &self.validation.aud)
            .field("issuer", &self.validation.iss)
            .field("class_claim", &self.class_claim)
            .finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, value: &str, e: jsonwebtoken::errors::Error) -> ConfigError {
    ConfigError::Invalid {
        op: "<identity>".into(),
        field,
        value: value.to_owned(),
        reason: e.to_string(),
    }
}

/// The start of a key, to name it in an error without printing it whole.
fn preview(pem: &[u8]) -> String {
    let s = String::from_utf8_lossy(pem);
    let first = s.lines().next().unwrap_or_default();
    first.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn token(secret: &[u8], claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn valid_tokens_name_their_subject_and_others_are_refused() {
        let jwt = Jwt::hs256(b"secret-1").unwrap().class_claim("tier");
        let good = token(
            b"secret-1",
            json!({"sub": "alice", "exp": now() + 60, "tier": "api"}),
        );
        assert_eq!(
            jwt.verify(&good),
            Some(Verified::new("alice").with_class(ClientClass::Api))
        );
        let cases = [
            (
                "expired",
                token(b"secret-1", json!({"sub": "a", "exp": now() - 10})),
            ),
            (
                "not yet",
                token(
                    b"secret-1",
                    json!({"sub": "a", "exp": now() + 60, "nbf": now() + 30}),
                ),
            ),
            (
                "wrong key",
                token(b"secret-2", json!({"sub": "a", "exp": now() + 60})),
            ),
            ("no exp", token(b"secret-1", json!({"sub": "a"}))),
            ("no sub", token(b"secret-1", json!({"exp": now() + 60}))),
            ("garbage", "not.a.token".to_owned()),
        ];
        for (what, t) in cases {
            assert_eq!(jwt.verify(&t), None, "{what}");
        }
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let jwt = Jwt::hs256(b"s").unwrap().audience(["api"]).issuer(["me"]);
        let claims = |aud: &str, iss: &str| {
            token(
                b"s",
                json!({"sub": "a", "exp": now() + 60, "aud": aud, "iss": iss}),
            )
        };
        assert!(jwt.verify(&claims("api", "me")).is_some());
        assert!(jwt.verify(&claims("other", "me")).is_none());
        assert!(jwt.verify(&claims("api", "you")).is_none());
        // A token that leaves either claim out is refused too.
        let no_aud = token(b"s", json!({"sub": "a", "exp": now() + 60, "iss": "me"}));
        let no_iss = token(b"s", json!({"sub": "a", "exp": now() + 60, "aud": "api"}));
        assert!(jwt.verify(&no_aud).is_none(), "no aud");
        assert!(jwt.verify(&no_iss).is_none(), "no iss");
    }

    #[test]
    fn bad_keys_are_errors_naming_them() {
        assert!(Jwt::hs256(b"").is_err());
        let err = Jwt::rs256_pem(b"-----BEGIN NOTHING-----")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rs256_pem") && err.contains("BEGIN NOTHING"),
            "{err}"
        );
    }
}
