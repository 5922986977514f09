//! Web integration tests: each test starts its own server on a random
//! loopback port with its own fresh database — SQLite, or PostgreSQL when
//! `VELLUM_TEST_DATABASE_URL` is set (one new database per test, dropped
//! afterwards).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

extern crate vellum_web as web;

mod harness;

mod alerts;
mod audit;
mod backup;
mod browser;
mod clinical;
mod csrf;
mod fhir;
mod first_password;
mod hardening;
mod login;
mod logs;
mod migrations;
mod pages;
mod pool;
mod roles;
mod safety;
mod script;
mod sessions;
mod setup;
mod tokens;
mod totp;
mod writes;
