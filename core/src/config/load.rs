//! Parsing the YAML text and overlaying `AUTHPLANE_<SECTION>_<KEY>` variables.

use super::*;

/// Sections that may be set with `AUTHPLANE_<SECTION>_<KEY>`.
const ENV_SECTIONS: &[&str] =
    &["server", "admin", "database", "signing", "oauth", "log", "audit", "otel", "limits", "broker"];
/// Sections that are lists and so cannot come from the environment.
const LIST_SECTIONS: &[&str] = &["resources", "clients", "users"];
/// Variables with the prefix that are not config keys.
const NON_CONFIG_VARS: &[&str] = &["AUTHPLANE_CONFIG", "AUTHPLANE_URL"];

/// A loaded configuration with the provenance needed for error messages.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Dotted keys that the environment set, with the variable name.
    pub from_env: Vec<(String, String)>,
}

impl Config {
    /// Parses YAML text (`None` = no file: defaults), overlays `AUTHPLANE_*`
    /// variables from `env` (env wins), and validates.
    pub fn load<I>(yaml: Option<(&str, &str)>, env: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut doc = match yaml {
            Some((name, text)) if !text.trim().is_empty() => {
                let v: Value = serde_saphyr::from_str(text).map_err(|e| {
                    err(
                        name,
                        None,
                        format!("not valid YAML: {}", one_line(&e.to_string())),
                        "fix the syntax at the position shown",
                    )
                })?;
                match v {
                    Value::Object(_) => v,
                    Value::Null => Value::Object(Default::default()),
                    _ => {
                        return Err(err(
                            name,
                            None,
                            "the top level must be a mapping of sections",
                            "start the file with e.g. `server:`",
                        ));
                    }
                }
            }
            _ => Value::Object(Default::default()),
        };
        let from_env = overlay_env(&mut doc, env)?;
        let config: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            let key = env_label(&path, &from_env);
            let inner = one_line(&e.into_inner().to_string());
            let fix = if inner.contains("unknown field") {
                "remove the key or correct its spelling; see config/reference.yaml"
            } else {
                "see config/reference.yaml for the expected type"
            };
            err(key, None, inner, fix)
        })?;
        config.validate(&from_env)?;
        Ok(Loaded { config, from_env })
    }
}

/// Keys of an upstream that `AUTHPLANE_UPSTREAMS_<ID>_<KEY>` may set (the
/// id upper-cased, `-` as `_`): the ones a deployment keeps out of the file.
const UPSTREAM_ENV_KEYS: &[&str] = &[
    "client_secret_file",
    "client_secret",
    "client_id",
    "display_name",
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
];

/// Sets one string field of an upstream declared in the file.
fn overlay_upstream(doc: &mut Value, var: &str, rest: &str, raw: String) -> Result<(String, String), ConfigError> {
    let entries = doc.get_mut("upstreams").and_then(Value::as_array_mut);
    let mut found = None;
    for (i, entry) in entries.into_iter().flatten().enumerate() {
        let Some(id) = entry.get("id").and_then(Value::as_str) else { continue };
        let prefix = format!("{}_", id.replace('-', "_"));
        if let Some(key) = rest.strip_prefix(&prefix)
            && let Some(key) = UPSTREAM_ENV_KEYS.iter().find(|k| **k == key)
        {
            found = Some((i, entry, *key));
            break;
        }
    }
    let Some((i, entry, key)) = found else {
        return Err(err(
            var,
            None,
            "names no upstream declared in the config file, or no key that can be set from the environment",
            format!("declare the upstream in the file; settable keys: {}", UPSTREAM_ENV_KEYS.join(", ")),
        ));
    };
    if let Value::Object(m) = entry {
        m.insert(key.to_owned(), Value::String(raw));
    }
    Ok((format!("upstreams[{i}].{key}"), var.to_owned()))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `server.issuer` or `AUTHPLANE_SERVER_ISSUER (server.issuer)`.
pub(super) fn env_label(path: &str, from_env: &[(String, String)]) -> String {
    match from_env.iter().find(|(p, _)| p == path) {
        Some((_, var)) => format!("{var} ({path})"),
        None => path.to_owned(),
    }
}

/// Applies `AUTHPLANE_<SECTION>_<KEY>=value` to the document. The type a value
/// is parsed as comes from the schema's defaults, so `"true"` becomes a bool for
/// `oauth.require_scope` and stays a string for `server.issuer`.
fn overlay_env<I>(doc: &mut Value, env: I) -> Result<Vec<(String, String)>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let mut vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("AUTHPLANE_")).collect();
    vars.sort();
    let mut applied = Vec::new();
    for (var, raw) in vars {
        if NON_CONFIG_VARS.contains(&var.as_str()) {
            continue;
        }
        let rest = var["AUTHPLANE_".len()..].to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else { continue };
        if section == "upstreams" {
            applied.push(overlay_upstream(doc, &var, key, raw)?);
            continue;
        }
        if LIST_SECTIONS.contains(&section) {
            return Err(err(
                &var,
                None,
                format!("{section} is a list and cannot be set from the environment"),
                "declare it in the config file",
            ));
        }
        if !ENV_SECTIONS.contains(&section) {
            // Not ours (e.g. AUTHPLANE_TOOLS_DIR used by the test scripts).
            continue;
        }
        let path = format!("{section}.{key}");
        let Some(kind) = defaults.get(section).and_then(|s| s.as_object()).and_then(|s| s.get(key)) else {
            return Err(err(
                &var,
                Some(&raw),
                format!("{path} is not a configuration key"),
                "check the spelling against config/reference.yaml",
            ));
        };
        let value = match kind {
            Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(err(format!("{var} ({path})"), Some(&raw), "not a boolean", "use true or false")),
            },
            Value::Number(n) if n.is_f64() => match raw.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Value::from(f),
                _ => {
                    return Err(err(format!("{var} ({path})"), Some(&raw), "not a number", "use e.g. 0.1"));
                }
            },
            Value::Number(_) => match raw.trim().parse::<u64>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    return Err(err(format!("{var} ({path})"), Some(&raw), "not a whole number", "use digits only"));
                }
            },
            // Lists from the environment are comma-separated.
            Value::Array(_) => Value::Array(
                raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())).collect(),
            ),
            _ => Value::String(raw.clone()),
        };
        let Value::Object(root) = doc else { break };
        let section_obj = root.entry(section.to_owned()).or_insert_with(|| Value::Object(Default::default()));
        match section_obj {
            Value::Object(m) => {
                m.insert(key.to_owned(), value);
            }
            Value::Null => {
                let mut m = serde_json::Map::new();
                m.insert(key.to_owned(), value);
                *section_obj = Value::Object(m);
            }
            _ => {
                return Err(err(
                    section,
                    None,
                    "must be a mapping",
                    "write it as `section:` followed by indented keys",
                ));
            }
        }
        applied.push((path, var));
    }
    Ok(applied)
}
