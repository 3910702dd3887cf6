//! Reads the config file and the environment into a validated [`Loaded`], and
//! notices when the file changes (a mounted Secret changes by swapping a
//! `..data` symlink, so the content is compared, not the inode).
//!
//! A registry directory (`--registry-dir`) may add `resources` and `clients`
//! in `*.yaml` fragments. The operator uses it to hand a large registry to the
//! pods in pieces that each stay far below the 1 MiB limit of a Secret; the
//! file and its fragments are loaded, validated and reloaded as one config.

use std::path::{Path, PathBuf};

use authplane_core::Secret;
use authplane_core::config::{ClientConfig, Config, Loaded, ResourceConfig};
use serde::Deserialize;

/// One registry fragment: only these two lists, nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Fragment {
    resources: Vec<ResourceConfig>,
    clients: Vec<ClientConfig>,
}

pub fn load(path: Option<&Path>, registry_dir: Option<&Path>) -> Result<Loaded, String> {
    let text = match path {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| format!("cannot read config file {}: {e}", p.display()))?)
        }
        None => None,
    };
    let name = path.map(|p| p.display().to_string()).unwrap_or_default();
    let mut loaded = Config::load(text.as_deref().map(|t| (name.as_str(), t)), std::env::vars())
        .map_err(|e| format!("invalid configuration: {e}"))?;
    let Some(dir) = registry_dir else { return Ok(loaded) };
    for file in fragments(dir)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read registry fragment {}: {e}", file.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        let f: Fragment =
            serde_saphyr::from_str(&text).map_err(|e| format!("invalid registry fragment {}: {e}", file.display()))?;
        loaded.config.resources.extend(f.resources);
        loaded.config.clients.extend(f.clients);
    }
    // Cross-entry rules (duplicates, clients naming unknown resources) see
    // the whole registry.
    loaded.config.validate(&loaded.from_env).map_err(|e| format!("invalid configuration: {e}"))?;
    Ok(loaded)
}

/// The `*.yaml` files of a registry directory in name order. Kubelet's
/// `..data` directory and other dot entries are skipped; the per-key
/// symlinks it makes are followed.
fn fragments(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read registry directory {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            !name.starts_with('.') && name.ends_with(".yaml") && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A digest of the file's bytes and of every registry fragment; `None` when
/// the file is unreadable.
pub fn fingerprint(path: &Path, registry_dir: Option<&Path>) -> Option<String> {
    let mut all = std::fs::read(path).ok()?;
    if let Some(dir) = registry_dir {
        for file in fragments(dir).unwrap_or_default() {
            all.extend_from_slice(file.to_string_lossy().as_bytes());
            all.push(0);
            all.extend(std::fs::read(&file).unwrap_or_default());
            all.push(0);
        }
    }
    Some(crate::random::sha256_hex(&all))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const RESOURCE: &str = "resources:\n- resource: https://mcp.example.com/mcp\n  scopes: [tools/read]\nclients: []\n";
    const CLIENT: &str = "resources: []\nclients:\n- client_id: cli\n  token_endpoint_auth_method: none\n  redirect_uris: [http://127.0.0.1/cb]\n  allowed_resources: [https://mcp.example.com/mcp]\n";

    #[test]
    fn registry_fragments_extend_the_file_and_are_checked_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "server:\n  issuer: https://auth.example.com\n").unwrap();
        let reg = dir.path().join("registry.d");
        std::fs::create_dir(&reg).unwrap();
        std::fs::write(reg.join("registry-00.yaml"), RESOURCE).unwrap();
        std::fs::write(reg.join("registry-01.yaml"), CLIENT).unwrap();
        std::fs::write(reg.join("index.json"), "{}").unwrap();
        let c = load(Some(&file), Some(&reg)).unwrap().config;
        assert_eq!((c.resources.len(), c.clients.len()), (1, 1));
        let fp = fingerprint(&file, Some(&reg));
        assert_eq!(fp, fingerprint(&file, Some(&reg)));

        // A change in a fragment changes the fingerprint (hot reload).
        std::fs::write(reg.join("registry-01.yaml"), "clients: []\n").unwrap();
        assert_ne!(fp, fingerprint(&file, Some(&reg)));
        assert_eq!(load(Some(&file), Some(&reg)).unwrap().config.clients.len(), 0);

        // Cross-fragment rules: the same client twice, or a client naming a
        // resource no fragment declares, refuses the whole config.
        std::fs::write(reg.join("registry-01.yaml"), CLIENT).unwrap();
        std::fs::write(reg.join("registry-02.yaml"), CLIENT).unwrap();
        assert!(load(Some(&file), Some(&reg)).unwrap_err().contains("declared twice"));
        std::fs::remove_file(reg.join("registry-00.yaml")).unwrap();
        std::fs::remove_file(reg.join("registry-02.yaml")).unwrap();
        assert!(load(Some(&file), Some(&reg)).is_err());
        // Only resources and clients belong in a fragment.
        std::fs::write(reg.join("registry-00.yaml"), "server:\n  issuer: https://evil.example.com\n").unwrap();
        assert!(load(Some(&file), Some(&reg)).unwrap_err().contains("registry-00.yaml"));
    }
}
