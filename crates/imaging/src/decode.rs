//! Decoding to a reduced image, per format: JPEG at DCT scale, PNG row by row
//! through the shrinker, BMP whole. Each hands the renderer a small image, the
//! square to take from it, its colour profile and its EXIF orientation.

use std::io::{BufRead, Seek};

use image::metadata::Orientation;

use crate::probe::{ImageFormat, Limits, probe_reader};
use crate::render::RenderError;
use crate::shrink::RowShrinker;
use crate::{bmp, jpeg, png};

/// Decoded samples.
pub(crate) enum Pixels {
    Rgb(Vec<u8>),
    /// Four channels; Adobe's writers store them inverted (255 = no ink).
    Cmyk {
        data: Vec<u8>,
        inverted: bool,
    },
}

/// The square to take from a decoded image, in its pixels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crop {
    pub left: f64,
    pub top: f64,
    pub side: f64,
}

pub(crate) struct Decoded {
    pub pixels: Pixels,
    pub width: u32,
    pub height: u32,
    pub crop: Crop,
    pub icc: Option<Vec<u8>>,
    pub orientation: Orientation,
}

impl Decoded {
    /// An image whose centre square is still to be taken. The centre square of
    /// the stored image is also the centre square of the oriented one, so
    /// orientation can wait until the output is small.
    pub(crate) fn centre_crop(
        pixels: Pixels,
        width: u32,
        height: u32,
        icc: Option<Vec<u8>>,
        orientation: Orientation,
    ) -> Self {
        let side = width.min(height);
        Decoded {
            pixels,
            width,
            height,
            crop: Crop {
                left: f64::from(width - side) / 2.0,
                top: f64::from(height - side) / 2.0,
                side: f64::from(side),
            },
            icc,
            orientation,
        }
    }
}

impl Decoded {
    /// The shrinker's square, once every row has arrived.
    pub(crate) fn from_shrinker(
        shrinker: RowShrinker,
        icc: Option<Vec<u8>>,
        orientation: Orientation,
    ) -> Result<Self, RenderError> {
        let (square, side) = shrinker
            .finish()
            .ok_or_else(|| RenderError::Decode("the image data ended early".into()))?;
        Ok(Decoded::centre_crop(
            Pixels::Rgb(square),
            side,
            side,
            icc,
            orientation,
        ))
    }
}

/// Sniffs, checks the header against `limits`, then decodes.
pub(crate) fn decode<R: BufRead + Seek>(
    mut reader: R,
    limits: &Limits,
) -> Result<Decoded, RenderError> {
    let header = probe_reader(&mut reader, limits)?;
    match header.format {
        ImageFormat::Jpeg => jpeg::decode(reader),
        ImageFormat::Png => png::decode(reader),
        ImageFormat::Bmp => bmp::decode(reader, limits),
    }
}
