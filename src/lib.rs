//! Imagegram: a self-hostable backend for an image-sharing app. This crate is
//! the binary's wiring; the layers are crates (see docs/ARCHITECTURE.md):
//! `http` → `service` → `store`, with `domain` beneath them all, `worker`
//! beside `http`, and `imaging` the pure image pipeline.

pub use ::domain;
pub use ::http;
pub use ::service;
pub use ::store;
pub use ::worker;

pub mod app;
pub mod config;
pub mod migrate;
pub mod telemetry;
