#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `config/reference.yaml` and `docs/configuration.md` cover every key of the
//! schema, and the reference file is itself a valid configuration.

use std::path::PathBuf;

use authplane_core::config::{ClientConfig, Config, ResourceConfig, UserConfig};
use serde::de::DeserializeOwned;

fn repo_file(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The field names a `deny_unknown_fields` struct accepts, read from serde's
/// own "expected one of" message, so no list here can drift from the code.
fn fields_of<T: DeserializeOwned>() -> Vec<String> {
    let err =
        serde_json::from_str::<T>(r#"{"__no_such_field__": 1}"#).err().expect("unknown field refused").to_string();
    let list = err.split("expected one of ").nth(1).or_else(|| err.split("expected ").nth(1)).expect("field list");
    list.split(',')
        .map(|s| s.trim().trim_matches(|c| c == '`' || c == ' ').split('`').next().unwrap_or_default().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn the_reference_file_is_a_valid_config() {
    let text = repo_file("config/reference.yaml");
    let loaded = Config::load(Some(("config/reference.yaml", &text)), vec![]).expect("reference.yaml loads");
    assert_eq!(loaded.config.resources.len(), 1);
    // Every scalar default in the reference equals the code's default.
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let reference = serde_json::to_value(&loaded.config).unwrap();
    for section in ["server", "admin", "database", "signing", "oauth", "log", "audit"] {
        assert_eq!(
            reference[section], defaults[section],
            "reference.yaml section {section} differs from the code's defaults"
        );
    }
}

#[test]
fn every_key_is_documented_in_both_places() {
    let reference = repo_file("config/reference.yaml");
    let doc = repo_file("docs/configuration.md");
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let sections = fields_of::<Config>();
    assert!(sections.contains(&"server".to_owned()) && sections.contains(&"users".to_owned()), "{sections:?}");
    for (section, value) in defaults.as_object().unwrap() {
        assert!(reference.contains(&format!("\n{section}:")), "reference.yaml lacks section {section}");
        let Some(obj) = value.as_object() else { continue };
        for key in obj.keys() {
            assert!(reference.contains(&format!("\n  {key}:")), "reference.yaml lacks {section}.{key}");
            let env = format!("AUTHPLANE_{}_{}", section.to_uppercase(), key.to_uppercase());
            assert!(reference.contains(&env), "reference.yaml lacks {env}");
            assert!(doc.contains(&format!("`{section}.{key}`")), "docs/configuration.md lacks {section}.{key}");
            assert!(doc.contains(&env), "docs/configuration.md lacks {env}");
        }
    }
    for (list, fields) in [
        ("resources", fields_of::<ResourceConfig>()),
        ("clients", fields_of::<ClientConfig>()),
        ("users", fields_of::<UserConfig>()),
    ] {
        assert!(!fields.is_empty());
        for f in fields {
            assert!(reference.contains(&format!(" {f}:")), "reference.yaml lacks {list}[].{f}");
            assert!(doc.contains(&format!("| `{f}` |")), "docs/configuration.md lacks {list}[].{f}");
        }
    }
}
