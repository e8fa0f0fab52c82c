//! Helpers shared by the pipeline's integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::io::Cursor;
use std::path::Path;

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, ImageFormat as Fmt, Rgb, RgbImage};
use imaging::{Filter, Limits, Rendered, render_bytes};

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// The real photograph every variant is made from (800x533).
pub fn photo() -> RgbImage {
    image::load_from_memory(&fixture("photo.jpg"))
        .unwrap()
        .to_rgb8()
}

/// The photograph at twice its size, so JPEG decoding takes the DCT-scaled path.
pub fn large_photo() -> RgbImage {
    let p = photo();
    imageops::resize(&p, p.width() * 2, p.height() * 2, FilterType::Triangle)
}

pub fn encode(img: &DynamicImage, fmt: Fmt) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, fmt).unwrap();
    out.into_inner()
}

pub fn render(bytes: &[u8]) -> Rendered {
    render_bytes(bytes, &Limits::default(), Filter::None).unwrap()
}

pub fn decode_output(jpeg: &[u8]) -> RgbImage {
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF], "output is a JPEG");
    image::load_from_memory_with_format(jpeg, Fmt::Jpeg)
        .unwrap()
        .to_rgb8()
}

/// What the output should look like: the centre square, Lanczos3 to 600x600.
pub fn reference(img: &RgbImage) -> RgbImage {
    let side = img.width().min(img.height());
    let square = imageops::crop_imm(
        img,
        (img.width() - side) / 2,
        (img.height() - side) / 2,
        side,
        side,
    )
    .to_image();
    imageops::resize(&square, 600, 600, FilterType::Lanczos3)
}

pub fn gray_to_rgb(gray: &GrayImage) -> RgbImage {
    DynamicImage::ImageLuma8(gray.clone()).to_rgb8()
}

/// Peak signal-to-noise ratio in dB over all channels.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

/// Renders `bytes` and asserts the output looks like `expected` (PSNR in dB).
pub fn assert_renders_like(bytes: &[u8], expected: &RgbImage, min_psnr: f64, what: &str) {
    let out = decode_output(&render(bytes).jpeg);
    let db = psnr(&out, expected);
    if std::env::var_os("SHOW_PSNR").is_some() {
        eprintln!("{what}: {db:.1} dB");
    }
    assert!(db >= min_psnr, "{what}: PSNR {db:.1} dB < {min_psnr}");
}

/// Left half red, right half blue.
pub fn halves(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    })
}

pub fn is_red(p: &Rgb<u8>) -> bool {
    p[0] > 180 && p[2] < 80
}

pub fn is_blue(p: &Rgb<u8>) -> bool {
    p[2] > 180 && p[0] < 80
}

/// Inserts an EXIF APP1 segment carrying `orientation` right after the SOI marker.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2A\0\0\0\x08"); // big-endian TIFF, IFD at offset 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A PNG's CRC-32, for patching chunks.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 1x1 PNG whose header claims `side` x `side` (CRC fixed up).
pub fn png_claiming(side: u32) -> Vec<u8> {
    let mut png = encode(&DynamicImage::ImageRgb8(RgbImage::new(1, 1)), Fmt::Png);
    png[16..20].copy_from_slice(&side.to_be_bytes());
    png[20..24].copy_from_slice(&side.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}
