#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on purpose
//! Black-box tests of `authserver`: the real binary, real HTTP, a fresh
//! SQLite file or Postgres database per test. Run against Postgres with
//! AUTHPLANE_TEST_POSTGRES_URL=postgres://user@127.0.0.1:PORT (make test does).

mod admin;
mod audit;
mod broker;
mod cli;
mod config;
mod discovery;
mod docs;
mod doctor;
mod dpop;
mod health;
mod helpers;
mod keys;
mod logs;
mod metrics;
mod oauth;
mod quirks;
mod security;
mod upstream;
