//! Imagegram's image pipeline, kept pure (files in, bytes out; no I/O beyond
//! reading the input) so it can be tested, fuzzed and benchmarked on its own:
//! sniff → header limits → decode → orient → flatten → crop-resize → filter → encode + blurhash.

mod filter;
mod probe;
mod render;

pub use filter::Filter;
pub use probe::{Header, ImageFormat, Limits, ProbeError, probe, probe_reader, sniff};
pub use render::{OUTPUT_SIZE, RenderError, Rendered, render, render_bytes};
