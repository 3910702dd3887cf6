use crate::helpers::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn environment_overrides_the_file() {
    let app = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db)),
        env: env(&[("AUTHPLANE_SERVER_ISSUER", "https://auth.example.com"), ("AUTHPLANE_OAUTH_REQUIRE_SCOPE", "true")]),
    })
    .await;
    let m = app.metadata().await;
    assert_eq!(m["issuer"], "https://auth.example.com");
    assert_eq!(m["jwks_uri"], "https://auth.example.com/.well-known/jwks.json");
    let started = app.logs().into_iter().find(|l| l.contains("authserver started")).unwrap();
    assert_eq!(field(&started, "issuer").as_deref(), Some("https://auth.example.com"));
}

/// Runs `authserver serve` with a config expected to be refused; returns stderr.
fn refused(config: &str, extra_env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, config).unwrap();
    let out = command(&["--config", path.to_str().unwrap(), "serve"], &env(extra_env))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "should have failed:\n{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_configs_stop_start_up_with_one_line_naming_key_value_and_fix() {
    let e = refused("server:\n  issuer: [unclosed\n", &[]);
    assert!(e.contains("not valid YAML"), "{e}");
    let e = refused("server:\n  isuer: https://a.example\n", &[]);
    assert!(e.contains("server.isuer") && e.contains("unknown field"), "{e}");
    let e = refused("server:\n  issuer: https://auth.example.com/?tenant=a\n", &[]);
    assert!(e.contains("server.issuer") && e.contains("query") && e.contains("fix:"), "{e}");
    let e = refused("", &[("AUTHPLANE_SERVER_ISSUER", "https://auth.example.com#x")]);
    assert!(e.contains("AUTHPLANE_SERVER_ISSUER (server.issuer)") && e.contains("fragment"), "{e}");
    let e = refused("", &[("AUTHPLANE_OAUTH_REQUIRE_SCOPE", "maybe")]);
    assert!(e.contains("not a boolean"), "{e}");
    let e = refused("admin:\n  api_key: short\n", &[]);
    assert!(e.contains("admin.api_key") && !e.contains("short\""), "the key is not echoed: {e}");
}

#[test]
fn an_unreachable_database_at_start_is_one_line_without_the_password() {
    let e = refused(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\ndatabase:\n  connect_timeout: 2s\n",
        &[("AUTHPLANE_DATABASE_URL", "postgres://app:hunter2secret@127.0.0.1:1/authplane")],
    );
    assert!(e.contains("cannot connect to the database"), "{e}");
    assert!(e.contains("postgres://app:***@127.0.0.1:1/authplane"), "{e}");
    assert!(!e.contains("hunter2secret"), "{e}");
}

#[test]
fn a_corrupt_key_file_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("bad.json"), "{\"kid\": \"x\"").unwrap();
    let cfg = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\ndatabase:\n  url: sqlite://{d}/a.db?mode=rwc\nsigning:\n  key_dir: {d}/keys\n",
        d = dir.path().display()
    );
    let e = refused(&cfg, &[]);
    assert!(e.contains("bad.json") && e.contains("signing keys"), "{e}");
}

#[test]
fn a_mounted_secret_with_no_readable_key_stops_start_up_naming_the_file() {
    // Skipping a corrupt entry of a mounted Secret needs a good one beside it.
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(keys.join("..v1")).unwrap();
    std::fs::write(keys.join("..v1").join("bad.json"), "{\"kid\": \"x\"").unwrap();
    std::os::unix::fs::symlink("..v1", keys.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/bad.json", keys.join("bad.json")).unwrap();
    let cfg = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\ndatabase:\n  url: sqlite://{d}/a.db?mode=rwc\nsigning:\n  key_dir: {d}/keys\n",
        d = dir.path().display()
    );
    let e = refused(&cfg, &[]);
    assert!(e.contains("bad.json") && e.contains("signing keys"), "{e}");
}

#[test]
fn config_check_validates_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "server:\n  issuer: https://auth.example.com\n").unwrap();
    let out = command(&["--config", path.to_str().unwrap(), "config", "check"], &[]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("config OK: issuer=https://auth.example.com"));
    std::fs::write(&path, "oauth:\n  unknown_scopes: maybe\n").unwrap();
    let out = command(&["--config", path.to_str().unwrap(), "config", "check"], &[]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("oauth.unknown_scopes"));
}

#[tokio::test]
async fn the_config_file_is_reloaded_on_change_and_a_bad_edit_is_refused() {
    let app = spawn_app().await;
    let original = std::fs::read_to_string(&app.config_path).unwrap();
    let added =
        original.replace("clients:", "  - resource: https://files.example.com/mcp\n    scopes: [files/read]\nclients:");
    std::fs::write(&app.config_path, &added).unwrap();
    eventually(10, "new scope advertised", || async {
        app.metadata().await["scopes_supported"] == serde_json::json!(["files/read", "tools/read", "tools/write"])
    })
    .await;

    std::fs::write(
        &app.config_path,
        added.replace("issuer: http://localhost:9000", "issuer: http://localhost:9000/?bad"),
    )
    .unwrap();
    eventually(10, "bad edit refused", || async {
        app.logs().iter().any(|l| l.contains("error=ErrConfigReload") && l.contains("server.issuer"))
    })
    .await;
    assert_eq!(app.metadata().await["issuer"], "http://localhost:9000", "the running config stays");

    // Removing the resource from the file removes it from discovery.
    std::fs::write(&app.config_path, &original).unwrap();
    eventually(10, "scope removed", || async {
        app.metadata().await["scopes_supported"] == serde_json::json!(["tools/read", "tools/write"])
    })
    .await;
}
