//! JPEG through libjpeg-turbo (the `mozjpeg` crate builds it from source with
//! its SIMD code): the image is decoded straight to the smallest DCT scale
//! (1/8 .. 8/8) that still covers the output, so a 12-megapixel photo is never
//! decoded at full size. CMYK and YCCK come out as CMYK for colour conversion.

use std::io::{self, BufRead, Read};
use std::os::raw::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::metadata::Orientation;
use mozjpeg::{ColorSpace, Decompress, Marker};
use mozjpeg_sys::jpeg_common_struct;

use crate::decode::{Decoded, Pixels};
use crate::probe::{OUTPUT_SIZE, ProbeError, nonzero};
use crate::render::RenderError;

/// What the frame header (SOFn) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub width: u32,
    pub height: u32,
    pub progressive: bool,
    /// Horizontal and vertical sampling factors of each component.
    pub components: Vec<(u8, u8)>,
}

impl Frame {
    /// Samples in the whole image over all components (chroma subsampling counted).
    pub fn samples(&self) -> u64 {
        let h_max = self
            .components
            .iter()
            .map(|c| c.0)
            .max()
            .unwrap_or(1)
            .max(1);
        let v_max = self
            .components
            .iter()
            .map(|c| c.1)
            .max()
            .unwrap_or(1)
            .max(1);
        let pixels = u64::from(self.width) * u64::from(self.height);
        self.components
            .iter()
            .map(|&(h, v)| {
                pixels * u64::from(h) * u64::from(v) / (u64::from(h_max) * u64::from(v_max))
            })
            .sum()
    }
}

/// Reads markers up to the frame header. Written by hand because the decoders
/// that parse it (libjpeg, zune-jpeg) do not report the sampling factors and
/// progressive flag the memory estimate needs without starting a decode.
pub(crate) fn read_frame<R: BufRead>(reader: &mut R) -> Result<Frame, ProbeError> {
    let bad = |why: &str| ProbeError::Unreadable(format!("JPEG: {why}"));
    let mut soi = [0u8; 2];
    reader
        .read_exact(&mut soi)
        .map_err(|_| bad("truncated header"))?;
    if soi != [0xFF, 0xD8] {
        return Err(bad("no start-of-image marker"));
    }
    loop {
        let marker = next_marker(reader).map_err(|_| bad("truncated before the frame header"))?;
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue; // markers without a length
        }
        if marker == 0xDA || marker == 0xD9 {
            return Err(bad("no frame header before the image data"));
        }
        let mut len = [0u8; 2];
        reader
            .read_exact(&mut len)
            .map_err(|_| bad("truncated segment"))?;
        let len = u16::from_be_bytes(len);
        if len < 2 {
            return Err(bad("segment length below 2"));
        }
        let mut body = vec![0u8; usize::from(len) - 2];
        reader
            .read_exact(&mut body)
            .map_err(|_| bad("truncated segment"))?;
        if is_frame_header(marker) {
            return parse_frame(marker, &body).ok_or_else(|| bad("malformed frame header"));
        }
    }
}

fn next_marker<R: Read>(reader: &mut R) -> io::Result<u8> {
    let mut byte = [0u8; 1];
    // Skip anything up to a 0xFF, then any fill bytes.
    loop {
        reader.read_exact(&mut byte)?;
        if byte[0] == 0xFF {
            break;
        }
    }
    loop {
        reader.read_exact(&mut byte)?;
        if byte[0] != 0xFF {
            return Ok(byte[0]);
        }
    }
}

fn is_frame_header(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

fn parse_frame(marker: u8, body: &[u8]) -> Option<Frame> {
    let height = u32::from(u16::from_be_bytes([*body.get(1)?, *body.get(2)?]));
    let width = u32::from(u16::from_be_bytes([*body.get(3)?, *body.get(4)?]));
    let count = usize::from(*body.get(5)?);
    if !(1..=4).contains(&count) || body.len() < 6 + 3 * count {
        return None;
    }
    let components = body[6..6 + 3 * count]
        .chunks_exact(3)
        .map(|c| (c[1] >> 4, c[1] & 0x0F))
        .collect();
    Some(Frame {
        width,
        height,
        progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
        components,
    })
}

/// The DCT scale numerator (over 8) that decodes the centre square to at
/// least the output size, and no larger than needed.
pub(crate) fn scale_numerator(width: u32, height: u32) -> u8 {
    let side = u64::from(width.min(height));
    (1..=8u8)
        .find(|&n| (side * u64::from(n)).div_ceil(8) >= u64::from(OUTPUT_SIZE))
        .unwrap_or(8)
}

/// The size libjpeg decodes to at [`scale_numerator`].
pub(crate) fn scaled_size(width: u32, height: u32) -> (u32, u32) {
    let n = u64::from(scale_numerator(width, height));
    let scale = |v: u32| (u64::from(v) * n).div_ceil(8) as u32;
    (scale(width), scale(height))
}

/// Decodes a JPEG at reduced scale, with its orientation, ICC profile and CMYK flavour.
pub(crate) fn decode<R: BufRead>(reader: R) -> Result<Decoded, RenderError> {
    // libjpeg reports errors by unwinding out of its callbacks (the crate's
    // design; `resume_unwind` skips the panic hook), so catch them here.
    match catch_unwind(AssertUnwindSafe(|| decode_unguarded(reader))) {
        Ok(result) => result,
        Err(payload) => {
            let why = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "libjpeg error".to_owned());
            Err(RenderError::Decode(why))
        }
    }
}

fn decode_unguarded<R: BufRead>(reader: R) -> Result<Decoded, RenderError> {
    let io_err = |e: io::Error| RenderError::Decode(e.to_string());
    let mut decompress = Decompress::with_err(strict_errors())
        .with_markers(&[Marker::APP(1), Marker::APP(2), Marker::APP(14)])
        .from_reader(reader)
        .map_err(io_err)?;
    let (width, height) = decompress.size();
    nonzero(width as u32, height as u32)?;
    let metadata = Metadata::read(&decompress);
    let cmyk = matches!(
        decompress.color_space(),
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
    );
    decompress.scale(scale_numerator(width as u32, height as u32));
    let (pixels, out_width, out_height) = if cmyk {
        let mut started = decompress
            .to_colorspace(ColorSpace::JCS_CMYK)
            .map_err(io_err)?;
        let size = (started.width() as u32, started.height() as u32);
        let data = started.read_scanlines::<u8>().map_err(io_err)?;
        started.finish().map_err(io_err)?;
        (
            Pixels::Cmyk {
                data,
                inverted: metadata.adobe,
            },
            size.0,
            size.1,
        )
    } else {
        let mut started = decompress.rgb().map_err(io_err)?;
        let size = (started.width() as u32, started.height() as u32);
        let data = started.read_scanlines::<u8>().map_err(io_err)?;
        started.finish().map_err(io_err)?;
        (Pixels::Rgb(data), size.0, size.1)
    };
    Ok(Decoded::centre_crop(
        pixels,
        out_width,
        out_height,
        metadata.icc,
        metadata.orientation,
    ))
}

struct Metadata {
    orientation: Orientation,
    icc: Option<Vec<u8>>,
    adobe: bool,
}

impl Metadata {
    fn read<R>(decompress: &Decompress<R>) -> Self {
        let mut orientation = Orientation::NoTransforms;
        let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
        let mut adobe = false;
        for marker in decompress.markers() {
            match marker.marker {
                Marker::APP(1) if marker.data.starts_with(b"Exif\0\0") => {
                    if let Some(o) = Orientation::from_exif_chunk(&marker.data[6..]) {
                        orientation = o;
                    }
                }
                Marker::APP(2)
                    if marker.data.len() > 14 && marker.data.starts_with(b"ICC_PROFILE\0") =>
                {
                    icc_chunks.push((marker.data[12], &marker.data[14..]));
                }
                Marker::APP(14) if marker.data.starts_with(b"Adobe") => adobe = true,
                _ => {}
            }
        }
        // A profile larger than one segment is split over several, numbered from 1.
        icc_chunks.sort_by_key(|c| c.0);
        let icc = (!icc_chunks.is_empty())
            .then(|| icc_chunks.iter().flat_map(|c| c.1).copied().collect());
        Metadata {
            orientation,
            icc,
            adobe,
        }
    }
}

/// libjpeg's default handlers print warnings and carry on, painting gray over
/// whatever is missing. A truncated or corrupt upload should be refused, not
/// served half gray, so these warnings are fatal; harmless ones (extraneous
/// bytes, an unknown JFIF version, a bad ICC chunk) are not.
fn strict_errors() -> mozjpeg_sys::jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills in every field of a zeroed error manager.
    let mut err: mozjpeg_sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(fail);
    err.emit_message = Some(on_message);
    err
}

const FATAL_WARNINGS: [c_int; 4] = [
    mozjpeg_sys::JWRN_JPEG_EOF as c_int,
    mozjpeg_sys::JWRN_HIT_MARKER as c_int,
    mozjpeg_sys::JWRN_HUFF_BAD_CODE as c_int,
    mozjpeg_sys::JWRN_MUST_RESYNC as c_int,
];

unsafe extern "C-unwind" fn on_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: libjpeg passes its own struct, whose `err` points at our manager.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 && FATAL_WARNINGS.contains(&code) {
        unsafe { fail(cinfo) }
    }
}

unsafe extern "C-unwind" fn fail(cinfo: &mut jpeg_common_struct) {
    let mut buffer = [0u8; 80];
    // SAFETY: format_message writes a NUL-terminated message of at most 80 bytes.
    unsafe {
        if let Some(format) = (*cinfo.err).format_message {
            let format: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, &mut [u8; 80]) =
                std::mem::transmute(format);
            format(cinfo, &mut buffer);
        }
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let message = format!("JPEG: {}", String::from_utf8_lossy(&buffer[..end]));
    std::panic::resume_unwind(Box::new(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_the_smallest_that_covers_the_output() {
        assert_eq!(scale_numerator(4000, 3000), 2); // 750 >= 600
        assert_eq!(scale_numerator(12000, 12000), 1); // 1500
        assert_eq!(scale_numerator(1000, 800), 6); // 600
        assert_eq!(scale_numerator(500, 500), 8);
        assert_eq!(scaled_size(4000, 3000), (1000, 750));
    }

    #[test]
    fn frame_header_gives_size_sampling_and_progressive() {
        // SOI, APP0 (short), SOF2 800x600 with 4:2:0 YCbCr.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00];
        jpeg.extend_from_slice(&[0xFF, 0xC2, 0x00, 0x11, 8, 0x02, 0x58, 0x03, 0x20, 3]);
        jpeg.extend_from_slice(&[1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        let frame = read_frame(&mut &jpeg[..]).unwrap();
        assert_eq!(
            (frame.width, frame.height, frame.progressive),
            (800, 600, true)
        );
        assert_eq!(frame.samples(), 800 * 600 * 3 / 2);
        assert!(read_frame(&mut &jpeg[..12]).is_err());
        assert!(read_frame(&mut &b"\xFF\xD8\xFF\xDA"[..]).is_err());
    }
}
