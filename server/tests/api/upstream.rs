//! The login page with identity providers, on the real binary: one provider
//! and no local users sends the browser straight to the provider; a provider
//! that cannot be reached is a 503 page in words with an `upstream_unreachable`
//! audit row — never a stack. (The whole sign-in against a real OpenID
//! provider is e2e/oauth/js/upstream.test.mjs.)

use crate::helpers::*;

#[tokio::test]
async fn one_provider_and_no_local_users_goes_straight_there_and_an_unreachable_one_is_a_page() {
    let app = spawn_with(|dir, db| {
        let base = base_config(dir, db);
        let without_users = base[..base.find("users:\n").unwrap()].to_owned();
        Spawn {
            // Port 9 on loopback: nothing listens, the connection is refused.
            config: Some(format!(
                "{without_users}upstreams:\n  - id: corp\n    display_name: Corp SSO\n    issuer: http://127.0.0.1:9\n    client_id: authplane\n    client_secret: s3cret\n"
            )),
            env: vec![],
        }
    })
    .await;
    let b = Browser::new(&app);
    // authorize → /ui/login → /ui/upstream/corp/start (no page in between) → the provider.
    let q = [
        ("response_type", "code"),
        ("client_id", "test-client"),
        ("redirect_uri", "http://127.0.0.1/callback"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
        ("resource", "http://localhost:8080/mcp"),
    ];
    let res = b.http.get(format!("{}/oauth/authorize", app.public)).query(&q).send().await.unwrap();
    let login = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(login.starts_with("/ui/login?request="), "{login}");
    let res = b.http.get(format!("{}{login}", app.public)).send().await.unwrap();
    assert_eq!(res.status(), 303, "no login page: the only way in is the provider");
    let start = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(start.starts_with("/ui/upstream/corp/start?request="), "{start}");
    let res = b.http.get(format!("{}{start}", app.public)).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let html = res.text().await.unwrap();
    assert!(html.contains("Corp SSO could not be reached"), "{html}");
    assert!(!html.contains("127.0.0.1:9"), "the provider's address stays off the page");
    let (status, audit) = app.admin_json(reqwest::Method::GET, "/admin/audit?type=login_failed", None).await;
    assert_eq!(status, 200);
    let detail = &audit["events"][0]["detail"];
    assert_eq!(detail["upstream"], "corp");
    assert_eq!(detail["reason"], "upstream_unreachable");
}

#[tokio::test]
async fn the_cli_lists_upstreams_and_unlinking_an_unknown_link_says_so() {
    let app = spawn_with_extra(
        "upstreams:\n  - { id: corp, issuer: 'http://127.0.0.1:9', client_id: a, client_secret: s, store_tokens: true }\n  - { id: gh, authorization_endpoint: 'http://127.0.0.1:9/a', token_endpoint: 'http://127.0.0.1:9/t', userinfo_endpoint: 'http://127.0.0.1:9/u', client_id: b, client_secret: s }\n",
    )
    .await;
    let env = vec![("AUTHPLANE_ADMIN_API_KEY".into(), ADMIN_KEY.into()), ("AUTHPLANE_URL".into(), app.admin.clone())];
    let out = command(&["admin", "upstream", "list"], &env).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("STORE_TOKENS"), "{text}");
    assert!(lines[1].starts_with("corp") && lines[1].contains("oidc") && lines[1].contains("true"), "{text}");
    assert!(lines[2].starts_with("gh") && lines[2].contains("oauth2"), "{text}");
    let out = command(&["admin", "upstream", "unlink", "alice", "corp"], &env).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no stored corp grant"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn deleting_a_user_deletes_its_stored_upstream_grants_and_an_upstream_user_has_no_password() {
    use authplane_server::store::entities::upstream_grant;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let app = spawn_with_extra(
        "upstreams:\n  - { id: corp, issuer: 'http://127.0.0.1:9', client_id: a, client_secret: s, store_tokens: true }\n",
    )
    .await;
    let db = sea_orm::Database::connect(&app.db_url).await.unwrap();
    // A user the provider created (no password), with a stored grant.
    let user = authplane_server::store::entities::user::ActiveModel {
        id: Set("corp:ann".into()),
        username: Set("corp:ann".into()),
        password_hash: Set(String::new()),
        email: Set(None),
        name: Set(None),
        source: Set("upstream:corp".into()),
        created_at: Set(1),
        updated_at: Set(1),
    };
    authplane_server::store::entities::user::Entity::insert(user).exec_without_returning(&db).await.unwrap();
    upstream_grant::Entity::insert(grant_row("corp:ann", "corp", false, None, 1))
        .exec_without_returning(&db)
        .await
        .unwrap();

    // The password form cannot sign it in, whatever the password.
    let b = Browser::new(&app);
    let login = b.authorize(&[]).await;
    let failed = b.login(&login, "corp:ann", "").await;
    assert!(matches!(failed, Landing::Page(401, _)), "{failed:?}");

    let (status, _) = app.admin_json(reqwest::Method::DELETE, "/admin/users/corp:ann", None).await;
    assert_eq!(status, 204);
    assert!(upstream_grant::Entity::find().all(&db).await.unwrap().is_empty(), "the grant's tokens went with the user");
    let (_, audit) = app.admin_json(reqwest::Method::GET, "/admin/audit?type=broker_grant_updated", None).await;
    assert_eq!(audit["events"][0]["detail"]["action"], "deleted");
}
