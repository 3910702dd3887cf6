#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on purpose
//! Postgres in production shape, with real parts: replicas starting together
//! (the start-up lock), a schema newer than the binary, TLS against a server
//! whose CA this test makes, and the pool when Postgres runs out of
//! connections. Runs in `make test`'s PostgreSQL step, which sets
//! AUTHPLANE_TEST_POSTGRES_URL; without it each test says it is skipped.
//! The TLS and pool tests start their own servers with `scripts/postgres.sh`.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod cluster;
mod pool;
mod replicas;
mod tls;
