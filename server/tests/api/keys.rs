use std::os::unix::fs::symlink;

use crate::helpers::*;

fn rotation_config(dir: &std::path::Path, db: &str, store: &str) -> String {
    base_config(dir, db)
        .replace("  key_store: file\n", &format!("  key_store: {store}\n  publish_ahead: 5s\n  retire_after: 4s\n"))
}

async fn phases(app: &TestApp) -> Vec<(String, String)> {
    let (_, v) = app.admin_json(reqwest::Method::GET, "/admin/keys", None).await;
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap().to_owned(), k["phase"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn file_store_rotation_goes_through_publish_sign_retire() {
    let app = spawn_with(|dir, db| Spawn { config: Some(rotation_config(dir, db, "file")), env: vec![] }).await;
    let a = app.current_kid().await;
    assert_eq!(app.jwks_kids().await, vec![a.clone()]);

    // Another process (the CLI) writes the new key; the server notices the
    // directory change without a restart.
    let out = app.cli(&["keys", "rotate"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let b = stdout.strip_prefix("published ").unwrap().split(' ').next().unwrap().to_owned();
    assert_ne!(a, b);

    // Phase 1: both published, the old key still signs.
    eventually(10, "new key published", || async { app.jwks_kids().await.len() == 2 }).await;
    let p = phases(&app).await;
    assert!(p.contains(&(a.clone(), "current".into())), "{p:?}");
    assert!(p.contains(&(b.clone(), "next".into())), "{p:?}");

    // Phase 2: the new key signs, the old one stays published.
    eventually(15, "new key signs", || async { app.current_kid().await == b }).await;
    let kids = app.jwks_kids().await;
    assert!(kids.contains(&a) && kids.contains(&b), "{kids:?}");
    assert!(phases(&app).await.contains(&(a.clone(), "previous".into())));

    // Phase 3: the old key leaves JWKS.
    eventually(15, "old key retired", || async { app.jwks_kids().await == vec![b.clone()] }).await;

    // `keys list` from the CLI reads the same store.
    let out = app.cli(&["keys", "list", "-o", "json"], &[]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["kid"], b);
    assert_eq!(listed[0]["phase"], "current");
}

#[tokio::test]
async fn db_store_rotation_through_the_admin_api() {
    let app = spawn_with(|dir, db| Spawn { config: Some(rotation_config(dir, db, "db")), env: vec![] }).await;
    assert!(!app.key_dir().exists(), "the db store writes no files");
    let a = app.current_kid().await;
    let (s, info) = app.admin_json(reqwest::Method::POST, "/admin/keys/rotate", Some(serde_json::json!({}))).await;
    assert_eq!(s, 201, "{info}");
    let b = info["kid"].as_str().unwrap().to_owned();
    assert_eq!(info["phase"], "next");
    assert_eq!(app.jwks_kids().await.len(), 2);
    let (_, listing) = app.admin_json(reqwest::Method::GET, "/admin/keys", None).await;
    assert_eq!(app.current_kid().await, a, "phase 1: the old key still signs: {listing}");

    // An emergency rotation signs at once.
    let (_, info) =
        app.admin_json(reqwest::Method::POST, "/admin/keys/rotate", Some(serde_json::json!({"immediate": true}))).await;
    let c = info["kid"].as_str().unwrap().to_owned();
    eventually(3, "the emergency key signs", || async { app.current_kid().await == c }).await;
    let kids = app.jwks_kids().await;
    assert!(kids.contains(&a) && kids.contains(&c), "{kids:?}");
    // The key announced before the emergency stays published: it was
    // promised to caches and still has its turn to sign.
    assert!(kids.contains(&b), "the announced key is not dropped: {kids:?}");
}

#[tokio::test]
async fn a_corrupt_key_file_at_runtime_keeps_the_last_good_keys() {
    let app = spawn_app().await;
    let kids = app.jwks_kids().await;
    std::fs::write(app.key_dir().join("broken.json"), "not json").unwrap();
    eventually(10, "reload error logged", || async {
        app.logs().iter().any(|l| l.contains("error=ErrKeyReload") && l.contains("broken.json"))
    })
    .await;
    assert_eq!(app.jwks_kids().await, kids);
    assert_eq!(app.health().await.0, 200);
}

#[tokio::test]
async fn a_mounted_secret_swapped_by_symlink_is_picked_up() {
    // The key directory laid out as the kubelet does for a Secret volume:
    // <dir>/..data -> ..v1, <dir>/<kid>.json -> ..data/<kid>.json, and the
    // update writes ..v2 and swaps ..data atomically.
    let (_, first) = authplane_server::keys::SigningKey::generate(0, 0).unwrap();
    let mut mounted = std::path::PathBuf::new();
    let app = spawn_with(|dir, db| {
        mounted = dir.join("mounted");
        std::fs::create_dir_all(mounted.join("..v1")).unwrap();
        std::fs::write(mounted.join("..v1").join(first.file_name()), serde_json::to_string(&first).unwrap()).unwrap();
        symlink("..v1", mounted.join("..data")).unwrap();
        symlink(format!("..data/{}", first.file_name()), mounted.join(first.file_name())).unwrap();
        let cfg = base_config(dir, db)
            .replace(&format!("key_dir: {}/keys", dir.display()), &format!("key_dir: {}", mounted.display()));
        Spawn { config: Some(cfg), env: vec![] }
    })
    .await;
    assert_eq!(app.jwks_kids().await, vec![first.kid.clone()]);

    let (_, second) = authplane_server::keys::SigningKey::generate(0, i64::MAX / 2).unwrap();
    std::fs::create_dir_all(mounted.join("..v2")).unwrap();
    for f in [&first, &second] {
        std::fs::write(mounted.join("..v2").join(f.file_name()), serde_json::to_string(f).unwrap()).unwrap();
    }
    symlink("..v2", mounted.join("..data_tmp")).unwrap();
    std::fs::rename(mounted.join("..data_tmp"), mounted.join("..data")).unwrap();
    symlink(format!("..data/{}", second.file_name()), mounted.join(second.file_name())).unwrap();

    eventually(10, "second key published", || async { app.jwks_kids().await.len() == 2 }).await;
    assert_eq!(app.current_kid().await, first.kid, "a key scheduled in the future does not sign yet");
}

/// Lays out `dir` as the kubelet mounts a Secret volume with `files`
/// (name, content): `..v1/<name>`, `..data -> ..v1`, `<name> -> ..data/<name>`.
fn mount_secret(dir: &std::path::Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("..v1")).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join("..v1").join(name), content).unwrap();
        symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
    symlink("..v1", dir.join("..data")).unwrap();
}

#[tokio::test]
async fn a_corrupt_entry_in_a_mounted_secret_is_skipped_while_good_keys_remain() {
    // Issue 18: a hand-edited keys Secret (the operator prunes the entry
    // within a second) must not crash-loop a pod that starts in between.
    let (_, good) = authplane_server::keys::SigningKey::generate(0, 0).unwrap();
    let good_json = serde_json::to_string(&good).unwrap();
    let mut mounted = std::path::PathBuf::new();
    let app = spawn_with(|dir, db| {
        mounted = dir.join("mounted");
        mount_secret(
            &mounted,
            &[
                (&good.file_name(), &good_json),
                ("hand-edited.json", "{\"kid\": \"x\""),
                ("wrong-pem.json", &good_json.replace(&good.kid, "not-the-thumbprint")),
            ],
        );
        let cfg = base_config(dir, db)
            .replace(&format!("key_dir: {}/keys", dir.display()), &format!("key_dir: {}", mounted.display()));
        Spawn { config: Some(cfg), env: vec![] }
    })
    .await;
    assert_eq!(app.jwks_kids().await, vec![good.kid.clone()]);
    assert_eq!(app.health().await.0, 200);
    let logs = app.logs();
    for name in ["hand-edited.json", "wrong-pem.json"] {
        assert!(
            logs.iter().any(|l| l.contains("error=ErrSigningKeyUnreadable") && l.contains(name)),
            "no ERROR line naming {name}: {logs:#?}"
        );
    }
    assert!(!logs.iter().any(|l| l.contains("PRIVATE KEY")), "key material in the log");
}
