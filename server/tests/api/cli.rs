use crate::helpers::*;

fn admin_env(app: &TestApp) -> Vec<(String, String)> {
    vec![("AUTHPLANE_ADMIN_API_KEY".into(), ADMIN_KEY.into()), ("AUTHPLANE_URL".into(), app.admin.clone())]
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_names_version_commit_and_date() {
    let out = command(&["version"], &[]).output().unwrap();
    let text = ok(&out);
    assert!(text.starts_with(&format!("authserver {} (commit ", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains(", built "), "{text}");
}

#[tokio::test]
async fn admin_commands_talk_to_a_running_server() {
    let app = spawn_app().await;
    let env = admin_env(&app);
    let text = ok(&command(&["admin", "resource", "list"], &env).output().unwrap());
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("RESOURCE"));
    assert!(lines.next().unwrap().starts_with("http://localhost:8080/mcp  tools/read,tools/write"));

    let text = ok(&command(
        &["admin", "resource", "create", "https://cli.example.com/mcp", "--scope", "cli/run", "--name", "CLI"],
        &env,
    )
    .output()
    .unwrap());
    assert_eq!(text.trim(), "resource https://cli.example.com/mcp created");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&command(&["admin", "resource", "list", "-o", "json"], &env).output().unwrap()))
            .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    ok(&command(&["admin", "resource", "delete", "https://cli.example.com/mcp"], &env).output().unwrap());

    let text = ok(&command(
        &[
            "admin",
            "client",
            "create",
            "--client-id",
            "batch",
            "--auth-method",
            "client_secret_basic",
            "--grant-type",
            "client_credentials",
        ],
        &env,
    )
    .output()
    .unwrap());
    assert!(text.contains("client batch created") && text.contains("client_secret: "), "{text}");
    let text = ok(&command(&["admin", "client", "list"], &env).output().unwrap());
    assert!(text.contains("batch") && text.contains("test-client"));
    ok(&command(&["admin", "client", "delete", "batch"], &env).output().unwrap());

    let mut user_env = env.clone();
    user_env.push(("AUTHPLANE_USER_PASSWORD".into(), "a long password".into()));
    let text = ok(&command(&["admin", "user", "create", "dora", "--id", "user-7"], &user_env).output().unwrap());
    assert_eq!(text.trim(), "user dora created with id user-7");
    let text = ok(&command(&["admin", "user", "list"], &env).output().unwrap());
    assert!(text.contains("user-7") && text.contains("dora"));
    ok(&command(&["admin", "user", "delete", "dora"], &env).output().unwrap());

    // Errors come back as one line with the status and the OAuth-style code.
    let out = command(&["admin", "resource", "delete", "http://localhost:8080/mcp"], &env).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("authserver: 409 conflict:"));
    let mut bad = env.clone();
    bad[0].1 = "wrong-wrong-wrong-wrong".into();
    let out = command(&["admin", "resource", "list"], &bad).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("401 unauthorized"));
    let out = command(&["admin", "resource", "list"], &env[1..]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("set AUTHPLANE_ADMIN_API_KEY"));
}

#[tokio::test]
async fn migrate_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let env = vec![("AUTHPLANE_DATABASE_URL".to_owned(), db)];
    let first = ok(&command(&["migrate"], &env).current_dir(dir.path()).output().unwrap());
    let n: usize = first.split(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2, "{first}");
    let second = ok(&command(&["migrate"], &env).current_dir(dir.path()).output().unwrap());
    assert!(second.starts_with("0 migration(s) applied"), "{second}");
}
