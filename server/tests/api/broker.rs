//! The token broker's refresh lease on the real database (SQLite here, and
//! Postgres when AUTHPLANE_TEST_POSTGRES_URL is set): of many connections —
//! standing in for replicas — racing for one stale grant, exactly one takes
//! the lease; a reader of an outdated row never does; an expired lease can
//! be taken again. The refresh itself, with a real provider, is in
//! e2e/oauth/js/upstream.test.mjs.

use authplane_server::oauth::broker::take_lease;
use authplane_server::store::entities::upstream_grant;
use sea_orm::{ActiveValue::Set, EntityTrait};

use crate::helpers::{fresh_database, grant_row};

#[tokio::test(flavor = "multi_thread")]
async fn of_replicas_racing_for_a_stale_grant_exactly_one_takes_the_refresh_lease() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let first = sea_orm::Database::connect(&url).await.unwrap();
    authplane_server::store::migrate(&first).await.unwrap();
    let now = 1_800_000_000;
    upstream_grant::Entity::insert(grant_row("corp:ann", "corp", true, Some(now - 1), now - 100))
        .exec_without_returning(&first)
        .await
        .unwrap();
    let row = upstream_grant::Entity::find_by_id(("corp:ann".to_owned(), "corp".to_owned()))
        .one(&first)
        .await
        .unwrap()
        .unwrap();

    let mut replicas = Vec::new();
    for _ in 0..6 {
        replicas.push(sea_orm::Database::connect(&url).await.unwrap());
    }
    let races = replicas.iter().map(|db| take_lease(db, &row, now));
    let won: Vec<bool> = futures_util::future::join_all(races).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert!(!take_lease(&first, &row, now + 10).await.unwrap(), "a live lease is not taken twice");

    // The lease ran out (the winner died mid-refresh): the next reader takes it.
    assert!(take_lease(&first, &row, now + 31).await.unwrap());
    // A refresh that completed changes updated_at: a reader of the old row loses.
    upstream_grant::Entity::update(upstream_grant::ActiveModel {
        user_id: Set("corp:ann".into()),
        upstream_id: Set("corp".into()),
        refreshing_until: Set(None),
        updated_at: Set(now + 40),
        ..Default::default()
    })
    .exec(&first)
    .await
    .unwrap();
    assert!(!take_lease(&first, &row, now + 100).await.unwrap(), "an outdated read never refreshes again");
}
