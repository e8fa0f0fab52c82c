//! Imagegram's image pipeline, kept pure (files in, bytes out; no I/O beyond
//! reading the input) so it can be tested, fuzzed and benchmarked on its own:
//! sniff → header limits → decode reduced → crop-resize → sRGB → orient →
//! filter → encode + blurhash.

mod bmp;
mod color;
mod decode;
mod encode;
mod filter;
mod jpeg;
mod png;
mod probe;
mod render;
mod shrink;
mod simd;

pub use filter::Filter;
pub use probe::{Header, ImageFormat, Limits, OUTPUT_SIZE, ProbeError, probe, probe_reader, sniff};
pub use render::{RenderError, Rendered, render, render_bytes};
pub use simd::jpeg_simd_enabled;
