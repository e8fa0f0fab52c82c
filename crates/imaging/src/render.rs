//! Decoding and the 600x600 output. This first pipeline favours correctness:
//! the `image` crate decodes whole frames, `fast_image_resize` (SIMD) does the
//! crop-resize and `jpeg-encoder` writes the progressive JPEG.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Seek};
use std::path::Path;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use crate::filter::{self, Filter};
use crate::probe::{Limits, ProbeError, check_limits, sniff_reader};

/// Side of the square every image is served at.
pub const OUTPUT_SIZE: u32 = 600;
const QUALITY: u8 = 80;
/// Dither patterns are high-frequency detail that ordinary JPEG settings smear
/// away, so dithered output keeps full chroma resolution and a higher quality.
const DITHER_QUALITY: u8 = 92;
/// Blurhash is computed on a small thumbnail: the result is the same at a fraction of the cost.
const BLURHASH_SOURCE: u32 = 32;

/// The image as served, plus what the API reports about it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub blurhash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("the image cannot be decoded: {0}")]
    Decode(String),
    #[error("internal image processing error: {0}")]
    Internal(String),
}

impl RenderError {
    /// Whether the input itself is at fault (so retrying cannot help).
    pub fn is_bad_input(&self) -> bool {
        match self {
            RenderError::Probe(ProbeError::Io(_)) | RenderError::Internal(_) => false,
            RenderError::Probe(_) | RenderError::Decode(_) => true,
        }
    }
}

/// Renders the image file at `path` as Imagegram serves it.
pub fn render(path: &Path, limits: &Limits, filter: Filter) -> Result<Rendered, RenderError> {
    let file = File::open(path).map_err(ProbeError::Io)?;
    render_reader(BufReader::new(file), limits, filter)
}

/// Renders an in-memory image as Imagegram serves it.
pub fn render_bytes(
    bytes: &[u8],
    limits: &Limits,
    filter: Filter,
) -> Result<Rendered, RenderError> {
    render_reader(Cursor::new(bytes), limits, filter)
}

fn render_reader<R: BufRead + Seek>(
    mut reader: R,
    limits: &Limits,
    filter: Filter,
) -> Result<Rendered, RenderError> {
    let image = decode(&mut reader, limits)?;
    let rgb = flatten_on_white(image);
    let square = crop_resize(&rgb)?;
    let (pixels, color) = apply_filter(square, filter);
    let quality = if matches!(filter, Filter::Dither { .. }) {
        DITHER_QUALITY
    } else {
        QUALITY
    };
    let jpeg = encode_jpeg(&pixels, color, quality)?;
    let blurhash = blurhash_of(&pixels, color)?;
    Ok(Rendered {
        jpeg,
        width: OUTPUT_SIZE,
        height: OUTPUT_SIZE,
        blurhash,
    })
}

/// Decodes with the header limits enforced again by the decoder itself, and
/// applies the EXIF orientation.
fn decode<R: BufRead + Seek>(reader: &mut R, limits: &Limits) -> Result<DynamicImage, RenderError> {
    let format = sniff_reader(reader)?;
    // Header first, so an oversized image is refused as such before a decoder exists.
    let (width, height) = ImageReader::with_format(&mut *reader, format.to_image_crate())
        .into_dimensions()
        .map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    check_limits(width, height, limits)?;
    reader.rewind().map_err(ProbeError::Io)?;
    let mut image_reader = ImageReader::with_format(reader, format.to_image_crate());
    let decoder_limits = decoder_limits(limits);
    image_reader.limits(decoder_limits.clone());
    let mut decoder = image_reader
        .into_decoder()
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    // `into_decoder` does not carry the reader's limits over, so set them again.
    decoder
        .set_limits(decoder_limits)
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| RenderError::Decode(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image)
}

fn decoder_limits(limits: &Limits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    // Room for the largest allowed image at 16 bits x 4 channels, plus decoder scratch.
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    l
}

/// 8-bit RGB with any alpha composited over white.
fn flatten_on_white(image: DynamicImage) -> image::RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for p in rgba.pixels() {
        let a = u32::from(p[3]);
        for c in 0..3 {
            let v = (u32::from(p[c]) * a + 255 * (255 - a) + 127) / 255;
            out.push(v as u8);
        }
    }
    image::RgbImage::from_raw(w, h, out).expect("buffer sized for the image")
}

/// Centre-crops the largest square and scales it to the output size (cover, no distortion).
fn crop_resize(rgb: &image::RgbImage) -> Result<Vec<u8>, RenderError> {
    let (w, h) = rgb.dimensions();
    let side = w.min(h);
    let left = f64::from(w - side) / 2.0;
    let top = f64::from(h - side) / 2.0;
    let src = ImageRef::new(w, h, rgb.as_raw(), PixelType::U8x3)
        .map_err(|e| RenderError::Internal(e.to_string()))?;
    let mut dst = Image::new(OUTPUT_SIZE, OUTPUT_SIZE, PixelType::U8x3);
    let options = ResizeOptions::new()
        .crop(left, top, f64::from(side), f64::from(side))
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| RenderError::Internal(e.to_string()))?;
    Ok(dst.into_vec())
}

fn apply_filter(rgb: Vec<u8>, filter: Filter) -> (Vec<u8>, ColorType) {
    let width = OUTPUT_SIZE as usize;
    match filter {
        Filter::None => (rgb, ColorType::Rgb),
        Filter::Grayscale => (filter::grayscale(&rgb), ColorType::Luma),
        Filter::Dither { levels } => {
            let mut rgb = rgb;
            filter::dither(&mut rgb, width, 3, levels);
            (rgb, ColorType::Rgb)
        }
    }
}

fn encode_jpeg(pixels: &[u8], color: ColorType, quality: u8) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::with_capacity(128 * 1024);
    let mut encoder = Encoder::new(&mut out, quality);
    encoder.set_progressive(true);
    if quality == DITHER_QUALITY {
        encoder.set_sampling_factor(SamplingFactor::R_4_4_4);
    }
    let side = OUTPUT_SIZE as u16;
    encoder
        .encode(pixels, side, side, color)
        .map_err(|e| RenderError::Internal(e.to_string()))?;
    Ok(out)
}

fn blurhash_of(pixels: &[u8], color: ColorType) -> Result<String, RenderError> {
    let rgb: Vec<u8> = match color {
        ColorType::Luma => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        _ => pixels.to_vec(),
    };
    let src = ImageRef::new(OUTPUT_SIZE, OUTPUT_SIZE, &rgb, PixelType::U8x3)
        .map_err(|e| RenderError::Internal(e.to_string()))?;
    let mut small = Image::new(BLURHASH_SOURCE, BLURHASH_SOURCE, PixelType::U8x3);
    Resizer::new()
        .resize(
            &src,
            &mut small,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        )
        .map_err(|e| RenderError::Internal(e.to_string()))?;
    let rgba: Vec<u8> = small
        .buffer()
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    blurhash::encode(4, 4, BLURHASH_SOURCE, BLURHASH_SOURCE, &rgba)
        .map_err(|e| RenderError::Internal(e.to_string()))
}
