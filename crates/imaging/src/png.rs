//! PNG through the `png` crate, one row at a time into the shrinker, so a
//! 144-megapixel PNG needs a few rows and the shrunk square, not gigabytes.
//! Adam7-interlaced files cannot be finished row by row (every pass touches
//! every row), so those are decoded whole, as libvips does too.

use std::io::{BufRead, Seek};

use image::metadata::Orientation;
use png::Transformations;

use crate::decode::Decoded;
use crate::render::RenderError;
use crate::shrink::RowShrinker;

fn decode_err(e: impl std::fmt::Display) -> RenderError {
    RenderError::Decode(format!("PNG: {e}"))
}

pub(crate) fn decode<R: BufRead + Seek>(reader: R) -> Result<Decoded, RenderError> {
    let mut decoder = png::Decoder::new(reader);
    // Palette and tRNS to RGB(A), low bit depths up to 8, 16 bits down to 8.
    decoder.set_transformations(Transformations::normalize_to_color8());
    let mut png = decoder.read_info().map_err(decode_err)?;
    let info = png.info();
    let (width, height, interlaced) = (info.width, info.height, info.interlaced);
    let icc = info.icc_profile.as_ref().map(|p| p.to_vec());
    let orientation = info
        .exif_metadata
        .as_ref()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);
    let channels = png.output_color_type().0.samples();
    let mut shrinker = RowShrinker::new(width, height);
    if interlaced {
        let size = png
            .output_buffer_size()
            .ok_or_else(|| decode_err("image too large"))?;
        let line = png
            .output_line_size(width)
            .ok_or_else(|| decode_err("image too large"))?;
        let mut frame = vec![0u8; size];
        png.next_frame(&mut frame).map_err(decode_err)?;
        for row in frame.chunks_exact(line) {
            shrinker.push_samples(row, channels);
        }
    } else {
        while let Some(row) = png.next_row().map_err(decode_err)? {
            shrinker.push_samples(row.data(), channels);
        }
    }
    Decoded::from_shrinker(shrinker, icc, orientation)
}
