//! Format recognition by content and header-only checks, done before any
//! pixel buffer exists so hostile files are refused cheaply. The header also
//! yields the decode's memory estimate, which the worker admits jobs against.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

use crate::jpeg;
use crate::shrink::shrink_factor;

/// Side of the square every image is served at.
pub const OUTPUT_SIZE: u32 = 600;

/// Memory every render needs whatever its input: output-size buffers, the
/// resizer's scratch, the encoder, code and allocator slack.
const FIXED_OVERHEAD: u64 = 24 << 20;

/// The formats Imagegram accepts, recognised by magic bytes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Bmp,
}

impl ImageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Bmp => "bmp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "png" => Some(ImageFormat::Png),
            "jpeg" => Some(ImageFormat::Jpeg),
            "bmp" => Some(ImageFormat::Bmp),
            _ => None,
        }
    }
}

/// Recognises a format from the first bytes of a file (at least 8 are needed for PNG).
pub fn sniff(head: &[u8]) -> Option<ImageFormat> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if head.starts_with(b"BM") {
        Some(ImageFormat::Bmp)
    } else {
        None
    }
}

/// Size limits checked from the header, before decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_pixels: u64,
    pub max_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 100_000_000,
            max_side: 30_000,
        }
    }
}

/// What the header says about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// Estimated peak memory of rendering this image, in bytes.
    pub decode_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("not a PNG, JPEG or BMP image")]
    UnsupportedFormat,
    #[error("the image header cannot be read: {0}")]
    Unreadable(String),
    #[error(
        "the image is {width}x{height}; the limit is {max_pixels} pixels and {max_side} pixels per side"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
        max_side: u32,
    },
    #[error("reading the image failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads only the header of the file at `path` and checks it against `limits`.
pub fn probe(path: &Path, limits: &Limits) -> Result<Header, ProbeError> {
    probe_reader(BufReader::new(File::open(path)?), limits)
}

/// Like [`probe`], over any seekable reader.
pub fn probe_reader<R: BufRead + Seek>(
    mut reader: R,
    limits: &Limits,
) -> Result<Header, ProbeError> {
    let format = sniff_reader(&mut reader)?;
    let header = match format {
        ImageFormat::Jpeg => jpeg_header(&mut reader)?,
        ImageFormat::Png => png_header(&mut reader)?,
        ImageFormat::Bmp => bmp_header(&mut reader)?,
    };
    reader.rewind()?;
    check_limits(header.width, header.height, limits)?;
    Ok(header)
}

fn jpeg_header<R: BufRead>(reader: &mut R) -> Result<Header, ProbeError> {
    let frame = jpeg::read_frame(reader)?;
    let scaled = jpeg::scaled_size(frame.width, frame.height);
    let channels = if frame.components.len() == 4 { 4 } else { 3 };
    let mut bytes = FIXED_OVERHEAD + pixels(scaled.0, scaled.1) * channels;
    // libjpeg's row buffers: a few MCU rows of every component at full width.
    bytes += u64::from(frame.width) * 16 * 2 * frame.components.len() as u64;
    if frame.progressive {
        // Every coefficient of every component is kept until the last scan:
        // 2 bytes per sample.
        bytes += 2 * frame.samples();
    }
    Ok(Header {
        format: ImageFormat::Jpeg,
        width: frame.width,
        height: frame.height,
        decode_bytes: bytes,
    })
}

fn png_header<R: BufRead + Seek>(reader: &mut R) -> Result<Header, ProbeError> {
    let decoder = png::Decoder::new(&mut *reader);
    let png = decoder
        .read_info()
        .map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    let info = png.info();
    let (width, height) = (info.width, info.height);
    nonzero(width, height)?;
    let shrunk = u64::from(width.min(height) / shrink_factor(width.min(height)));
    // Rows stream through; only the shrunk square and a few rows stay.
    let mut bytes = FIXED_OVERHEAD + shrunk * shrunk * 3 + u64::from(width) * 8 * 3;
    if info.interlaced {
        // Adam7 passes cover the whole image before any row is final.
        bytes += pixels(width, height) * 4;
    }
    Ok(Header {
        format: ImageFormat::Png,
        width,
        height,
        decode_bytes: bytes,
    })
}

fn bmp_header<R: BufRead + Seek>(reader: &mut R) -> Result<Header, ProbeError> {
    let (width, height) = image::ImageReader::with_format(&mut *reader, image::ImageFormat::Bmp)
        .into_dimensions()
        .map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    nonzero(width, height)?;
    Ok(Header {
        format: ImageFormat::Bmp,
        width,
        height,
        // BMP is decoded whole, to 8-bit RGB or RGBA.
        decode_bytes: FIXED_OVERHEAD + pixels(width, height) * 4,
    })
}

fn pixels(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height)
}

pub(crate) fn nonzero(width: u32, height: u32) -> Result<(), ProbeError> {
    if width == 0 || height == 0 {
        return Err(ProbeError::Unreadable("the image has no pixels".into()));
    }
    Ok(())
}

pub(crate) fn sniff_reader<R: Read + Seek>(reader: &mut R) -> Result<ImageFormat, ProbeError> {
    let mut head = [0u8; 8];
    let mut filled = 0;
    while filled < head.len() {
        let n = reader.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    reader.rewind()?;
    sniff(&head[..filled]).ok_or(ProbeError::UnsupportedFormat)
}

pub(crate) fn check_limits(width: u32, height: u32, limits: &Limits) -> Result<(), ProbeError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels || width > limits.max_side || height > limits.max_side {
        return Err(ProbeError::TooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_magic_only() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(ImageFormat::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(b"BM\0\0"), Some(ImageFormat::Bmp));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\x89PN"), None);
    }

    #[test]
    fn limits_count_pixels_and_sides() {
        let limits = Limits {
            max_pixels: 100,
            max_side: 20,
        };
        assert!(check_limits(10, 10, &limits).is_ok());
        assert!(check_limits(11, 10, &limits).is_err());
        assert!(check_limits(21, 1, &limits).is_err());
    }
}
