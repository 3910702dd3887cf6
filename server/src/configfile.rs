//! Reads the config file and the environment into a validated [`Loaded`], and
//! notices when the file changes (a mounted Secret changes by swapping a
//! `..data` symlink, so the content is compared, not the inode).

use std::path::Path;

use authplane_core::Secret;
use authplane_core::config::{Config, Loaded};

pub fn load(path: Option<&Path>) -> Result<Loaded, String> {
    let text = match path {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| format!("cannot read config file {}: {e}", p.display()))?)
        }
        None => None,
    };
    let name = path.map(|p| p.display().to_string()).unwrap_or_default();
    Config::load(text.as_deref().map(|t| (name.as_str(), t)), std::env::vars())
        .map_err(|e| format!("invalid configuration: {e}"))
}

/// A digest of the file's bytes; `None` when unreadable.
pub fn fingerprint(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| crate::random::sha256_hex(&b))
}

/// The admin API key: `admin.api_key`, or the trimmed content of
/// `admin.api_key_file`.
pub fn admin_key(cfg: &Config) -> Result<Option<Secret<String>>, String> {
    if let Some(k) = &cfg.admin.api_key {
        return Ok(Some(k.clone()));
    }
    let Some(file) = &cfg.admin.api_key_file else { return Ok(None) };
    let text = std::fs::read_to_string(file).map_err(|e| format!("admin.api_key_file = {file:?}: cannot read: {e}"))?;
    let key = text.trim().to_owned();
    if key.len() < 16 {
        return Err(format!(
            "admin.api_key_file = {file:?}: the key is shorter than 16 characters (fix: use a long random key, e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(Some(Secret::new(key)))
}
