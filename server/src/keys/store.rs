//! Where signing keys live: a directory of `<kid>.json` files (what the
//! operator mounts from a Secret) or the `signing_keys` table.

use std::path::{Path, PathBuf};

use authplane_core::Secret;
use authplane_core::keyfile::SigningKeyFile;
use sea_orm::{ActiveValue::Set, EntityTrait};

use crate::store::Db;
use crate::store::entities::signing_key;

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key directory {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not a signing-key file: {1}")]
    Parse(String, String),
    #[error("signing_keys table: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(
        "key directory {0} is read-only (a mounted Secret?): rotate keys where the Secret is managed, e.g. by the operator"
    )]
    ReadOnly(String),
}

/// One stored key and where it came from (for error messages).
pub struct StoredKey {
    pub file: SigningKeyFile,
    pub origin: String,
}

pub enum KeyStore {
    File { dir: PathBuf },
    Db { db: Db },
}

impl KeyStore {
    pub fn describe(&self) -> String {
        match self {
            KeyStore::File { dir } => format!("file:{}", dir.display()),
            KeyStore::Db { .. } => "db".into(),
        }
    }

    /// Creates the key directory (mode 0700) if needed.
    pub fn prepare(&self) -> Result<(), KeyStoreError> {
        if let KeyStore::File { dir } = self
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|e| KeyStoreError::Io(dir.display().to_string(), e))?;
            set_mode(dir, 0o700);
        }
        Ok(())
    }

    /// Whether the directory is a mounted Secret (the kubelet's `..data`
    /// symlink is there): its entries belong to whoever writes the Secret
    /// (the operator), not to this process.
    pub fn is_mounted_secret(&self) -> bool {
        matches!(self, KeyStore::File { dir } if std::fs::symlink_metadata(dir.join("..data")).is_ok())
    }

    /// Every entry, or the first one that cannot be read. In a mounted
    /// Secret an unreadable entry is skipped instead (returned in the second
    /// list): the Secret's writer removes it, and a pod that started in
    /// between must not crash-loop on it while valid keys are there.
    pub async fn load(&self) -> Result<(Vec<StoredKey>, Vec<KeyStoreError>), KeyStoreError> {
        match self {
            KeyStore::File { dir } => load_dir(dir, self.is_mounted_secret()),
            KeyStore::Db { db } => {
                let rows = signing_key::Entity::find().all(db).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| StoredKey {
                        origin: format!("signing_keys[{}]", r.kid),
                        file: SigningKeyFile {
                            kid: r.kid,
                            alg: r.alg,
                            created_at: r.created_at,
                            active_from: r.active_from,
                            private_key_pem: Secret::new(r.private_key_pem),
                        },
                    })
                    .collect::<Vec<_>>())
                .map(|keys| (keys, Vec::new()))
            }
        }
    }

    pub async fn insert(&self, key: &SigningKeyFile) -> Result<(), KeyStoreError> {
        match self {
            KeyStore::File { dir } => write_atomically(dir, &key.file_name(), key),
            KeyStore::Db { db } => {
                signing_key::Entity::insert(signing_key::ActiveModel {
                    kid: Set(key.kid.clone()),
                    alg: Set(key.alg.clone()),
                    created_at: Set(key.created_at),
                    active_from: Set(key.active_from),
                    private_key_pem: Set(key.private_key_pem.expose().clone()),
                })
                .exec_without_returning(db)
                .await?;
                Ok(())
            }
        }
    }

    pub async fn remove(&self, kid: &str) -> Result<(), KeyStoreError> {
        match self {
            KeyStore::File { dir } => {
                let path = dir.join(format!("{kid}.json"));
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) if is_read_only(&e) => Err(KeyStoreError::ReadOnly(dir.display().to_string())),
                    Err(e) => Err(KeyStoreError::Io(path.display().to_string(), e)),
                }
            }
            KeyStore::Db { db } => {
                signing_key::Entity::delete_by_id(kid.to_owned()).exec(db).await?;
                Ok(())
            }
        }
    }

    /// A cheap summary of the directory that changes whenever a key file (or
    /// the `..data` symlink of a mounted Secret) changes. `None` for the DB.
    pub fn fingerprint(&self) -> Option<String> {
        let KeyStore::File { dir } = self else { return None };
        let mut parts = Vec::new();
        if let Ok(target) = std::fs::read_link(dir.join("..data")) {
            parts.push(format!("..data->{}", target.display()));
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Ok(meta) = std::fs::metadata(e.path()) {
                    let mtime = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    parts.push(format!("{name}:{}:{mtime}", meta.len()));
                }
            }
        }
        parts.sort();
        Some(parts.join("|"))
    }
}

fn is_key_file(name: &str) -> bool {
    name.ends_with(".json") && !name.starts_with('.')
}

fn load_dir(dir: &Path, skip_unreadable: bool) -> Result<(Vec<StoredKey>, Vec<KeyStoreError>), KeyStoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(KeyStoreError::Io(dir.display().to_string(), e)),
    };
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| KeyStoreError::Io(dir.display().to_string(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_key_file(&name) {
            continue;
        }
        let path = entry.path();
        let origin = path.display().to_string();
        let read = std::fs::read_to_string(&path).map_err(|e| KeyStoreError::Io(origin.clone(), e)).and_then(|text| {
            serde_json::from_str::<SigningKeyFile>(&text)
                .map_err(|e| KeyStoreError::Parse(origin.clone(), e.to_string()))
        });
        match read {
            Ok(file) => out.push(StoredKey { file, origin }),
            Err(e) if skip_unreadable => skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    Ok((out, skipped))
}

/// Write to a temp file in the same directory, then rename, so a reader never
/// sees half a key.
fn write_atomically(dir: &Path, name: &str, key: &SigningKeyFile) -> Result<(), KeyStoreError> {
    let text = serde_json::to_string_pretty(key).map_err(|e| KeyStoreError::Parse(name.into(), e.to_string()))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let map = |e: std::io::Error| {
        if is_read_only(&e) {
            KeyStoreError::ReadOnly(dir.display().to_string())
        } else {
            KeyStoreError::Io(dir.display().to_string(), e)
        }
    };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(map)?;
        set_mode(&tmp, 0o600);
        f.write_all(text.as_bytes()).map_err(map)?;
        f.sync_all().map_err(map)?;
    }
    std::fs::rename(&tmp, dir.join(name)).map_err(map)?;
    Ok(())
}

fn is_read_only(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}
