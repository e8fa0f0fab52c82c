//! Imagegram: a self-hostable backend for an image-sharing app.
//!
//! Layers, top to bottom: `http` (axum routes, extractors, problem+json) →
//! `service` (rules; no SQL, no HTTP) → `store` (storage traits and their
//! backends) and `worker` (image jobs) → the `imaging` crate (pure pipeline).

pub mod app;
pub mod config;
pub mod domain;
pub mod http;
pub mod migrate;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod worker;
