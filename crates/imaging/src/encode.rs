//! The served bytes: a progressive JPEG from libjpeg-turbo's encoder (the
//! `mozjpeg` crate, set to libjpeg-turbo's fast defaults rather than mozjpeg's
//! slow trellis search, which buys a few percent of size at ten times the time),
//! and the blurhash.

use std::panic::{AssertUnwindSafe, catch_unwind};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use mozjpeg::{ColorSpace, Compress};

use crate::probe::OUTPUT_SIZE;
use crate::render::RenderError;

const QUALITY: f32 = 80.0;
/// Dither patterns are high-frequency detail that ordinary JPEG settings smear
/// away, so dithered output keeps full chroma resolution and a higher quality.
const DITHER_QUALITY: f32 = 92.0;
/// Blurhash is computed on a small thumbnail: the result is the same at a fraction of the cost.
const BLURHASH_SOURCE: u32 = 32;

/// How the output is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Colour,
    Gray,
    Dithered,
}

/// Encodes a 600x600 image (RGB, or one gray channel for [`Encoding::Gray`]).
pub(crate) fn encode_jpeg(pixels: &[u8], encoding: Encoding) -> Result<Vec<u8>, RenderError> {
    catch_unwind(AssertUnwindSafe(|| encode_unguarded(pixels, encoding)))
        .map_err(|_| RenderError::Internal("the JPEG encoder failed".into()))?
        .map_err(|e| RenderError::Internal(format!("JPEG encoder: {e}")))
}

fn encode_unguarded(pixels: &[u8], encoding: Encoding) -> std::io::Result<Vec<u8>> {
    let space = if encoding == Encoding::Gray {
        ColorSpace::JCS_GRAYSCALE
    } else {
        ColorSpace::JCS_RGB
    };
    let mut compress = Compress::new(space);
    compress.set_fastest_defaults();
    compress.set_size(OUTPUT_SIZE as usize, OUTPUT_SIZE as usize);
    if encoding == Encoding::Dithered {
        compress.set_quality(DITHER_QUALITY);
        compress.set_chroma_sampling_pixel_sizes((1, 1), (1, 1));
    } else {
        compress.set_quality(QUALITY);
    }
    compress.set_progressive_mode();
    compress.set_optimize_coding(true);
    let mut started = compress.start_compress(Vec::with_capacity(128 * 1024))?;
    started.write_scanlines(pixels)?;
    started.finish()
}

/// The blurhash (4x4 components) of a 600x600 RGB image.
pub(crate) fn blurhash_of(rgb: &[u8]) -> Result<String, RenderError> {
    let internal = |e: &dyn std::fmt::Display| RenderError::Internal(e.to_string());
    let src =
        ImageRef::new(OUTPUT_SIZE, OUTPUT_SIZE, rgb, PixelType::U8x3).map_err(|e| internal(&e))?;
    let mut small = Image::new(BLURHASH_SOURCE, BLURHASH_SOURCE, PixelType::U8x3);
    Resizer::new()
        .resize(
            &src,
            &mut small,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        )
        .map_err(|e| internal(&e))?;
    let rgba: Vec<u8> = small
        .buffer()
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    blurhash::encode(4, 4, BLURHASH_SOURCE, BLURHASH_SOURCE, &rgba).map_err(|e| internal(&e))
}
