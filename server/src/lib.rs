//! The AuthPlane authorization server (`authserver`).
//!
//! A request goes one way: `http/` (parse, call, render) → service modules
//! (`oauth/`, `keys/`, `resource_index`, `limits`) → `store/`. The one place that turns a
//! domain error into an HTTP response is [`http::error`].
#![forbid(unsafe_code)]

pub mod app;
pub mod build_info;
pub mod cli;
pub mod clock;
pub mod configfile;
pub mod doctor;
pub mod http;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod oauth;
pub mod password;
pub mod random;
pub mod resource_index;
pub mod state;
pub mod store;
pub mod telemetry;

/// The layers of the list above, checked on the source: a module may not
/// name a layer above it (`crate::app` → `http` → `state` → `oauth` →
/// `store`/`keys`), so no import circle can come back unnoticed.
#[cfg(test)]
mod layers {
    fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                // Comments may name anything; code may not.
                let code: String = std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .map(|l| l.split("//").next().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push((p.display().to_string(), code));
            }
        }
    }

    #[test]
    fn no_module_names_a_layer_above_it() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        assert!(files.len() > 40, "found only {} source files under {}", files.len(), root.display());
        let rules: &[(&str, &[&str])] = &[
            ("/src/http/", &["crate::app"]),
            ("/src/state.rs", &["crate::app", "crate::http"]),
            ("/src/oauth/", &["crate::app", "crate::http", "crate::state", "actix"]),
            ("/src/store/", &["crate::app", "crate::http", "crate::state", "crate::oauth", "actix"]),
            ("/src/keys/", &["crate::app", "crate::http", "crate::state", "crate::oauth", "actix"]),
        ];
        let mut broken = Vec::new();
        for (path, code) in &files {
            for (layer, forbidden) in rules {
                if path.contains(layer) {
                    for f in *forbidden {
                        if code.contains(f) {
                            broken.push(format!("{path} names {f}"));
                        }
                    }
                }
            }
        }
        assert!(broken.is_empty(), "layer violations:\n{}", broken.join("\n"));
    }
}
