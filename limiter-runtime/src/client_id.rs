//! Client ids of credentials: a credential is its own id up to a bound,
//! beyond it (or when it could pose as one) a fixed-key fingerprint, so
//! that ids stay short and are the same in every instance.

use std::borrow::Cow;
use std::hash::Hasher;

/// Longest API key or bearer token a client id carries as it is; a longer
/// one is replaced by its fingerprint (see [`credential_id`]).
pub(crate) const MAX_CREDENTIAL_ID: usize = 128;

/// The client id of a credential of `kind` (`key`, `bearer`): the value
/// itself, or `#` and a 64-bit fingerprint when the value is longer than
/// [`MAX_CREDENTIAL_ID`] bytes or itself starts with `#` (so a client cannot
/// send a raw value that reads as another client's fingerprint). Client ids
/// end up in request extensions, handlers' own keys and labels: a 60 KB
/// header must not become a 60 KB id.
///
/// The fingerprint is SipHash with fixed keys (`DefaultHasher::new`), the
/// same in every instance and across restarts of one build, so a limit
/// kept in Redis under the client id is shared by the fleet for long
/// credentials too. Aiming at another client's fingerprint means finding a
/// 64-bit preimage without knowing its credential.
pub(crate) fn credential_id(kind: &str, value: &str) -> String {
    if value.len() <= MAX_CREDENTIAL_ID && !value.starts_with('#') {
        format!("{kind}:{value}")
    } else {
        let mut h = std::hash::DefaultHasher::new();
        h.write(value.as_bytes());
        format!("{kind}:#{:016x}", h.finish())
    }
}

/// Whether `value` has the shape of a fingerprint: `#` and 16 lowercase
/// hex digits.
fn is_fingerprint(value: &str) -> bool {
    value.len() == 17
        && value.starts_with('#')
        && value[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The client id a key given to the monitoring API stands for: a raw long
/// credential (`key:<200 bytes>`) is the fingerprint `IdentityConfig::identify`
/// gives its sender; anything else is itself.
pub(crate) fn normalize_id(key: &str) -> Cow<'_, str> {
    match key.split_once(':') {
        Some((kind @ ("key" | "bearer"), value))
            if value.len() > MAX_CREDENTIAL_ID
                || (value.starts_with('#') && !is_fingerprint(value)) =>
        {
            Cow::Owned(credential_id(kind, value))
        }
        _ => Cow::Borrowed(key),
    }
}
