//! Writes the CRDs to `crds/yaml/` (`make crds`), or with `--check` fails
//! when the committed files differ from what the types generate.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("yaml"));
    let files = match authplane_crds::crd_files() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("crdgen: cannot render the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut drift = Vec::new();
    for (name, content) in &files {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == *content {
            continue;
        }
        if check {
            drift.push(path.display().to_string());
        } else if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, content)) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if !drift.is_empty() {
        eprintln!("crdgen: generated CRDs differ from the committed files (run `make crds`): {}", drift.join(", "));
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
