//! BMP through the `image` crate (every bit depth, both row orders, RLE and
//! bitfields), decoded whole: BMP offers no row-streaming decoder, and an
//! upload-sized BMP is at most the 100 MiB it arrived as.

use std::io::{BufRead, Seek};

use image::codecs::bmp::BmpDecoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder};

use crate::decode::Decoded;
use crate::probe::Limits;
use crate::render::RenderError;
use crate::shrink::RowShrinker;

fn decode_err(e: impl std::fmt::Display) -> RenderError {
    RenderError::Decode(format!("BMP: {e}"))
}

pub(crate) fn decode<R: BufRead + Seek>(
    reader: R,
    limits: &Limits,
) -> Result<Decoded, RenderError> {
    let mut decoder = BmpDecoder::new(reader).map_err(decode_err)?;
    decoder
        .set_limits(decoder_limits(limits))
        .map_err(decode_err)?;
    let image = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    let image = match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other => DynamicImage::ImageRgb8(other.into_rgb8()),
    };
    let (width, height) = (image.width(), image.height());
    let channels = usize::from(image.color().channel_count());
    let mut shrinker = RowShrinker::new(width, height);
    for row in image.as_bytes().chunks_exact(width as usize * channels) {
        shrinker.push_samples(row, channels);
    }
    drop(image);
    Decoded::from_shrinker(shrinker, None, Orientation::NoTransforms)
}

/// The `image` crate's own allocation guard, set again on the decoder (its
/// `into_decoder()` path does not carry a reader's limits over).
fn decoder_limits(limits: &Limits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(4).saturating_add(64 << 20));
    l
}
