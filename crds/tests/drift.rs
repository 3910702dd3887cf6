//! CI fails when `crds/yaml/` is not what the types generate (`make crds`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn committed_crd_yaml_matches_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml");
    for (name, content) in authplane_crds::crd_files().unwrap() {
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(committed == content, "crds/yaml/{name} is stale: run `make crds` and commit the result");
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, 3, "crds/yaml/ holds a file crdgen does not write");
}

#[test]
fn every_kind_has_status_printer_columns_and_a_short_name() {
    for crd in authplane_crds::crds() {
        let v = &crd.spec.versions[0];
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{:?}", crd.metadata.name);
        let cols: Vec<&str> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert!(cols.contains(&"Ready") && cols.contains(&"Age"), "{cols:?}");
        assert!(!crd.spec.names.short_names.clone().unwrap_or_default().is_empty());
    }
}
