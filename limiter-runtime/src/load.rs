//! Loading configuration into the global registry: the environment and a
//! TOML file, read into [`Settings`] and applied as one change.

use crate::error::ConfigError;
use crate::registry::registry;
use crate::settings::{settings_from_env, settings_from_file, Settings};

/// Reads the process environment (and the file `LIMITER_CONFIG` names, if
/// set) and applies it to the global registry.
pub fn load_env() -> Result<(), ConfigError> {
    let mut settings = match std::env::var("LIMITER_CONFIG") {
        Ok(path) => settings_from_file(&path, None)?,
        Err(_) => Settings::default(),
    };
    settings.overlay(&settings_from_env()?);
    registry().apply(&settings)
}

/// Reads `path` and applies it to the global registry, with the profile
/// named by `LIMITER_PROFILE` or else by the file's `profile` key.
pub fn load_file(path: impl AsRef<std::path::Path>) -> Result<(), ConfigError> {
    let profile = std::env::var("LIMITER_PROFILE").ok();
    let settings = settings_from_file(path, profile.as_deref())?;
    registry().apply(&settings)
}
