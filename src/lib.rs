//! Imagegram: a self-hostable backend for an image-sharing app. This crate is
//! the binary's wiring; the layers are crates (see docs/ARCHITECTURE.md):
//! `api` (HTTP) → `service` → `store`, with `domain` beneath them all, `worker`
//! beside `api`, and `imaging` the pure image pipeline.

pub use ::api;
pub use ::domain;
pub use ::service;
pub use ::store;
pub use ::worker;

pub mod app;
pub mod config;
pub mod migrate;
pub mod telemetry;
