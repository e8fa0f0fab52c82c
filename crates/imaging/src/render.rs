//! The pipeline: decode reduced (DCT scale or row-fed shrink) → Lanczos3 to
//! 600x600 over the centre square (fast_image_resize, SIMD) → colour to sRGB →
//! EXIF orientation → filter → progressive JPEG + blurhash. Everything after
//! decoding works on the 600x600 output, so its cost does not grow with the input.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Seek};
use std::path::Path;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage};

use crate::color::{cmyk_to_srgb, rgb_to_srgb};
use crate::decode::{Decoded, Pixels, decode};
use crate::encode::{Encoding, blurhash_of, encode_jpeg};
use crate::filter::{self, Filter};
use crate::probe::{Limits, OUTPUT_SIZE, ProbeError};

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
    render_reader(BufReader::with_capacity(64 * 1024, file), limits, filter)
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
    reader: R,
    limits: &Limits,
    filter: Filter,
) -> Result<Rendered, RenderError> {
    let decoded = decode(reader, limits)?;
    let rgb = to_output(decoded)?;
    let (pixels, encoding) = apply_filter(rgb, filter);
    let jpeg = encode_jpeg(&pixels, encoding)?;
    let blurhash = match encoding {
        Encoding::Gray => blurhash_of(&pixels.iter().flat_map(|&v| [v, v, v]).collect::<Vec<_>>())?,
        _ => blurhash_of(&pixels)?,
    };
    Ok(Rendered {
        jpeg,
        width: OUTPUT_SIZE,
        height: OUTPUT_SIZE,
        blurhash,
    })
}

/// Resizes the decoded square to the output, converts it to sRGB and orients it.
fn to_output(decoded: Decoded) -> Result<Vec<u8>, RenderError> {
    let Decoded {
        pixels,
        width,
        height,
        crop,
        icc,
        orientation,
    } = decoded;
    let icc = icc.as_deref();
    let rgb = match pixels {
        Pixels::Rgb(data) => {
            let mut rgb = resize(&data, width, height, crop, PixelType::U8x3)?;
            rgb_to_srgb(&mut rgb, icc);
            rgb
        }
        Pixels::Cmyk { data, inverted } => {
            let cmyk = resize(&data, width, height, crop, PixelType::U8x4)?;
            cmyk_to_srgb(&cmyk, inverted, icc)
        }
    };
    let mut image = DynamicImage::ImageRgb8(
        RgbImage::from_raw(OUTPUT_SIZE, OUTPUT_SIZE, rgb)
            .ok_or_else(|| RenderError::Internal("resized buffer has the wrong size".into()))?,
    );
    image.apply_orientation(orientation);
    Ok(image.into_rgb8().into_raw())
}

/// Lanczos3 from the crop square to 600x600. Four channels are CMYK, not
/// RGBA: the fourth is ink, so no alpha weighting.
fn resize(
    data: &[u8],
    width: u32,
    height: u32,
    crop: crate::decode::Crop,
    pixel: PixelType,
) -> Result<Vec<u8>, RenderError> {
    let internal = |e: &dyn std::fmt::Display| RenderError::Internal(e.to_string());
    let src = ImageRef::new(width, height, data, pixel).map_err(|e| internal(&e))?;
    let mut dst = Image::new(OUTPUT_SIZE, OUTPUT_SIZE, pixel);
    let options = ResizeOptions::new()
        .crop(crop.left, crop.top, crop.side, crop.side)
        .use_alpha(false)
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| internal(&e))?;
    Ok(dst.into_vec())
}

fn apply_filter(rgb: Vec<u8>, filter: Filter) -> (Vec<u8>, Encoding) {
    match filter {
        Filter::None => (rgb, Encoding::Colour),
        Filter::Grayscale => (filter::grayscale(&rgb), Encoding::Gray),
        Filter::Dither { levels } => {
            let mut rgb = rgb;
            filter::dither(&mut rgb, OUTPUT_SIZE as usize, 3, levels);
            (rgb, Encoding::Dithered)
        }
    }
}
