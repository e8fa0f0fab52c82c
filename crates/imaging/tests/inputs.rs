//! Every accepted input class, each made from a real photograph (or, where the
//! class is about layout rather than content, a generated pattern), rendered
//! and compared with a plain reference resize of the same pixels.

mod common;

use common::*;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageEncoder, ImageFormat as Fmt, Rgb, RgbImage, RgbaImage};
use imaging::{Filter, Limits, ProbeError, RenderError, probe_reader, render_bytes};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

fn jpeg_with(
    pixels: &[u8],
    (w, h): (u32, u32),
    color: ColorType,
    setup: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, 92);
    setup(&mut encoder);
    encoder.encode(pixels, w as u16, h as u16, color).unwrap();
    out
}

fn has_marker(jpeg: &[u8], marker: u8) -> bool {
    jpeg.windows(2).any(|w| w == [0xFF, marker])
}

#[test]
fn libjpeg_turbo_runs_with_simd() {
    // scripts/build-tools installs NASM; without it mozjpeg-sys quietly builds plain C.
    if cfg!(target_arch = "x86_64") {
        assert!(
            imaging::jpeg_simd_enabled(),
            "libjpeg-turbo was built without SIMD (is nasm installed?)"
        );
    }
}

#[test]
fn jpeg_layouts_of_a_real_photo_render_like_a_plain_resize() {
    let photo = large_photo();
    let size = photo.dimensions();
    let expected = reference(&photo);
    let rgb = ColorType::Rgb;
    let cases: Vec<(&str, Vec<u8>, Option<u8>)> = vec![
        (
            "baseline 4:2:0",
            jpeg_with(&photo, size, rgb, |e| {
                e.set_sampling_factor(SamplingFactor::R_4_2_0)
            }),
            Some(0xC0),
        ),
        (
            "baseline 4:2:2",
            jpeg_with(&photo, size, rgb, |e| {
                e.set_sampling_factor(SamplingFactor::R_4_2_2)
            }),
            Some(0xC0),
        ),
        (
            "baseline 4:4:4",
            jpeg_with(&photo, size, rgb, |e| {
                e.set_sampling_factor(SamplingFactor::R_4_4_4)
            }),
            Some(0xC0),
        ),
        (
            "progressive",
            jpeg_with(&photo, size, rgb, |e| e.set_progressive(true)),
            Some(0xC2),
        ),
        (
            "restart markers",
            jpeg_with(&photo, size, rgb, |e| e.set_restart_interval(3)),
            Some(0xDD),
        ),
        (
            "progressive with restart markers",
            jpeg_with(&photo, size, rgb, |e| {
                e.set_progressive(true);
                e.set_restart_interval(5);
            }),
            Some(0xDD),
        ),
        (
            "small baseline (no DCT scaling)",
            encode(&DynamicImage::ImageRgb8(photo.clone()), Fmt::Jpeg),
            None,
        ),
    ];
    for (what, jpeg, marker) in cases {
        if let Some(m) = marker {
            assert!(
                has_marker(&jpeg, m),
                "{what}: the fixture has marker {m:02X}"
            );
        }
        assert_renders_like(&jpeg, &expected, 34.0, what);
    }
    // The original photograph itself, at its own size.
    assert_renders_like(
        &fixture("photo.jpg"),
        &reference(&common::photo()),
        34.0,
        "the real JPEG",
    );
}

#[test]
fn grayscale_jpeg_renders_gray() {
    let gray = DynamicImage::ImageRgb8(large_photo()).to_luma8();
    let jpeg = jpeg_with(&gray, gray.dimensions(), ColorType::Luma, |_| {});
    assert_renders_like(
        &jpeg,
        &reference(&gray_to_rgb(&gray)),
        35.0,
        "grayscale JPEG",
    );
}

/// CMYK with the plain ink formula, the inverse of the renderer's fallback.
fn to_cmyk(rgb: &RgbImage) -> Vec<u8> {
    rgb.pixels()
        .flat_map(|p| {
            let k = 255 - p.0.iter().copied().max().unwrap();
            let white = 255 - u32::from(k);
            let ink = |c: u8| {
                (u32::from(c) * 255)
                    .checked_div(white)
                    .map_or(0, |v| (255 - v) as u8)
            };
            [ink(p[0]), ink(p[1]), ink(p[2]), k]
        })
        .collect()
}

#[test]
fn cmyk_and_ycck_jpegs_render_in_rgb() {
    let photo = large_photo();
    let expected = reference(&photo);
    let cmyk = to_cmyk(&photo);
    for (what, color) in [("CMYK", ColorType::Cmyk), ("YCCK", ColorType::CmykAsYcck)] {
        let jpeg = jpeg_with(&cmyk, photo.dimensions(), color, |_| {});
        assert!(has_marker(&jpeg, 0xEE), "{what}: Adobe marker present");
        assert_renders_like(&jpeg, &expected, 34.0, what);
    }
}

/// The sRGB value `rgb` has when read in `profile`.
fn in_srgb(profile: &moxcms::ColorProfile, rgb: [u8; 3]) -> [u8; 3] {
    let srgb = moxcms::ColorProfile::new_srgb();
    let t = profile
        .create_transform_8bit(
            moxcms::Layout::Rgb,
            &srgb,
            moxcms::Layout::Rgb,
            Default::default(),
        )
        .unwrap();
    let mut out = [0u8; 3];
    t.transform(&rgb, &mut out).unwrap();
    out
}

fn close(a: &Rgb<u8>, b: [u8; 3], tolerance: u8) -> bool {
    a.0.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= tolerance)
}

#[test]
fn embedded_icc_profiles_are_converted_to_srgb() {
    let colour = [200u8, 100, 50];
    let flat = RgbImage::from_pixel(300, 300, Rgb(colour));
    for (name, profile) in [
        ("Display P3", moxcms::ColorProfile::new_display_p3()),
        ("Adobe RGB", moxcms::ColorProfile::new_adobe_rgb()),
    ] {
        let icc = profile.encode().unwrap();
        let expected = in_srgb(&profile, colour);
        assert!(
            expected.iter().zip(colour).any(|(e, c)| e.abs_diff(c) > 8),
            "{name} differs from sRGB"
        );
        let jpeg = jpeg_with(&flat, flat.dimensions(), ColorType::Rgb, |e| {
            e.add_icc_profile(&icc).unwrap()
        });
        let mut png = Vec::new();
        let mut encoder = PngEncoder::new(&mut png);
        encoder.set_icc_profile(icc.clone()).unwrap();
        encoder
            .write_image(&flat, 300, 300, image::ExtendedColorType::Rgb8)
            .unwrap();
        for (format, bytes) in [("JPEG", jpeg), ("PNG", png)] {
            let out = decode_output(&render(&bytes).jpeg);
            let p = out.get_pixel(300, 300);
            assert!(
                close(p, expected, 4),
                "{name} {format}: got {p:?}, want {expected:?}"
            );
        }
    }
    // Without a profile the numbers are sRGB already.
    let out = decode_output(&render(&encode(&DynamicImage::ImageRgb8(flat), Fmt::Png)).jpeg);
    assert!(close(out.get_pixel(300, 300), colour, 3));
}

/// Four quadrants of distinct colours, so every flip and rotation is distinguishable.
fn quadrants() -> RgbImage {
    RgbImage::from_fn(400, 400, |x, y| match (x < 200, y < 200) {
        (true, true) => Rgb([255, 0, 0]),
        (false, true) => Rgb([0, 255, 0]),
        (true, false) => Rgb([0, 0, 255]),
        (false, false) => Rgb([255, 255, 255]),
    })
}

#[test]
fn every_exif_orientation_is_applied() {
    let base = encode(&DynamicImage::ImageRgb8(quadrants()), Fmt::Jpeg);
    for exif in 1..=8u8 {
        let mut expected = DynamicImage::ImageRgb8(quadrants());
        expected.apply_orientation(Orientation::from_exif(exif).unwrap());
        let expected = expected.to_rgb8();
        let out = decode_output(&render(&with_exif_orientation(&base, u16::from(exif))).jpeg);
        for (ox, oy, ex, ey) in [
            (150, 150, 100, 100),
            (450, 150, 300, 100),
            (150, 450, 100, 300),
            (450, 450, 300, 300),
        ] {
            let want = expected.get_pixel(ex, ey).0;
            assert!(
                close(out.get_pixel(ox, oy), want, 40),
                "orientation {exif} at ({ox},{oy}): got {:?}, want {want:?}",
                out.get_pixel(ox, oy)
            );
        }
    }
}

fn png_raw(
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    setup: impl FnOnce(&mut png::Encoder<&mut Vec<u8>>),
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(color);
        encoder.set_depth(depth);
        setup(&mut encoder);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(data).unwrap();
    }
    out
}

#[test]
fn png_colour_types_and_depths_render_like_the_photo() {
    let photo = photo();
    let (w, h) = photo.dimensions();
    let expected = reference(&photo);
    let gray = DynamicImage::ImageRgb8(photo.clone()).to_luma8();
    let expected_gray = reference(&gray_to_rgb(&gray));
    let rgba = DynamicImage::ImageRgb8(photo.clone()).to_rgba8();
    let rgb16: Vec<u8> = photo.as_raw().iter().flat_map(|&v| [v, v]).collect();
    let gray16: Vec<u8> = gray.as_raw().iter().flat_map(|&v| [v, 0x80]).collect();
    let gray_alpha: Vec<u8> = gray.as_raw().iter().flat_map(|&v| [v, 255]).collect();
    use png::{BitDepth::*, ColorType::*};
    let cases = [
        ("RGB", png_raw(w, h, Rgb, Eight, &photo, |_| {}), &expected),
        ("RGBA", png_raw(w, h, Rgba, Eight, &rgba, |_| {}), &expected),
        (
            "RGB 16-bit",
            png_raw(w, h, Rgb, Sixteen, &rgb16, |_| {}),
            &expected,
        ),
        (
            "gray",
            png_raw(w, h, Grayscale, Eight, &gray, |_| {}),
            &expected_gray,
        ),
        (
            "gray 16-bit",
            png_raw(w, h, Grayscale, Sixteen, &gray16, |_| {}),
            &expected_gray,
        ),
        (
            "gray+alpha",
            png_raw(w, h, GrayscaleAlpha, Eight, &gray_alpha, |_| {}),
            &expected_gray,
        ),
    ];
    for (what, bytes, expected) in cases {
        assert_renders_like(&bytes, expected, 38.0, &format!("PNG {what}"));
    }
    // Adam7 interlaced (a fixture made by libvips; the png crate cannot write it).
    let interlaced = fixture("photo-interlaced.png");
    assert_eq!(interlaced[28], 1, "the fixture is interlaced");
    let its_pixels = image::load_from_memory(&interlaced).unwrap().to_rgb8();
    assert_renders_like(&interlaced, &reference(&its_pixels), 40.0, "PNG interlaced");
}

#[test]
fn palette_pngs_with_transparency_render_on_white() {
    // Index 0 red, 1 blue, 2 fully transparent, 3 half-transparent black; 4-bit and 8-bit.
    let palette = [255, 0, 0, 0, 0, 255, 0, 255, 0, 0, 0, 0];
    let trns = [255, 255, 0, 128];
    let (w, h) = (64u32, 64u32);
    let index = |x: u32, y: u32| -> u8 {
        match (x < 32, y < 32) {
            (true, true) => 0,
            (false, true) => 1,
            (true, false) => 2,
            (false, false) => 3,
        }
    };
    let eight: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| index(x, y)))
        .collect();
    let four: Vec<u8> = (0..h)
        .flat_map(|y| (0..w / 2).map(move |x| (index(2 * x, y) << 4) | index(2 * x + 1, y)))
        .collect();
    for (depth, data) in [(png::BitDepth::Eight, eight), (png::BitDepth::Four, four)] {
        let bytes = png_raw(w, h, png::ColorType::Indexed, depth, &data, |e| {
            e.set_palette(palette.to_vec());
            e.set_trns(trns.to_vec());
        });
        let out = decode_output(&render(&bytes).jpeg);
        assert!(is_red(out.get_pixel(150, 150)), "{depth:?} red");
        assert!(is_blue(out.get_pixel(450, 150)), "{depth:?} blue");
        assert!(
            close(out.get_pixel(150, 450), [255, 255, 255], 6),
            "{depth:?} transparent is white"
        );
        assert!(
            close(out.get_pixel(450, 450), [127, 127, 127], 8),
            "{depth:?} half black over white"
        );
    }
}

/// A BMP with a BITMAPINFOHEADER, written by hand because encoders only write
/// the plain 24/32-bit kinds.
fn bmp(w: i32, h: i32, bpp: u16, compression: u32, extra: &[u8], data: &[u8]) -> Vec<u8> {
    let offset = 14 + 40 + extra.len() as u32;
    let colours = if bpp <= 8 {
        (extra.len() / 4) as u32
    } else {
        0
    };
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&(offset + data.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&bpp.to_le_bytes());
    out.extend_from_slice(&compression.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&2835i32.to_le_bytes());
    out.extend_from_slice(&2835i32.to_le_bytes());
    out.extend_from_slice(&colours.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(extra);
    out.extend_from_slice(data);
    out
}

/// Rows of 24-bit BGR, padded to four bytes, in the given order.
fn bgr_rows(img: &RgbImage, bottom_up: bool) -> Vec<u8> {
    let row_len = (img.width() as usize * 3).div_ceil(4) * 4;
    let mut rows: Vec<Vec<u8>> = img
        .rows()
        .map(|row| {
            let mut r: Vec<u8> = row.flat_map(|p| [p[2], p[1], p[0]]).collect();
            r.resize(row_len, 0);
            r
        })
        .collect();
    if bottom_up {
        rows.reverse();
    }
    rows.concat()
}

#[test]
fn bmp_variants_render() {
    let photo = photo();
    let (w, h) = (photo.width() as i32, photo.height() as i32);
    let expected = reference(&photo);
    let rgba =
        DynamicImage::ImageRgba8(RgbaImage::from_fn(photo.width(), photo.height(), |x, y| {
            let p = photo.get_pixel(x, y);
            image::Rgba([p[0], p[1], p[2], 255])
        }));
    let cases = [
        (
            "24-bit bottom-up",
            bmp(w, h, 24, 0, &[], &bgr_rows(&photo, true)),
        ),
        (
            "24-bit top-down",
            bmp(w, -h, 24, 0, &[], &bgr_rows(&photo, false)),
        ),
        (
            "24-bit (image encoder)",
            encode(&DynamicImage::ImageRgb8(photo.clone()), Fmt::Bmp),
        ),
        ("32-bit (image encoder)", encode(&rgba, Fmt::Bmp)),
    ];
    for (what, bytes) in cases {
        assert_renders_like(&bytes, &expected, 38.0, &format!("BMP {what}"));
    }

    // Compressed and palette kinds: left half red, right half blue, 64x64.
    let palette = [0, 0, 255, 0, 255, 0, 0, 0]; // BGRX: red, blue
    let rle8: Vec<u8> = (0..64)
        .flat_map(|_| [32, 0, 32, 1, 0, 0])
        .chain([0, 1])
        .collect();
    let rle4: Vec<u8> = (0..64)
        .flat_map(|_| [32, 0x00, 32, 0x11, 0, 0])
        .chain([0, 1])
        .collect();
    let indexed8: Vec<u8> = (0..64)
        .flat_map(|_| (0..64).map(|x| u8::from(x >= 32)))
        .collect();
    let px565 = |r: u16, g: u16, b: u16| ((r >> 3) << 11 | (g >> 2) << 5 | (b >> 3)).to_le_bytes();
    let rgb565: Vec<u8> = (0..64)
        .flat_map(|_| {
            (0..64).flat_map(move |x| {
                if x < 32 {
                    px565(255, 0, 0)
                } else {
                    px565(0, 0, 255)
                }
            })
        })
        .collect();
    let masks: Vec<u8> = [0xF800u32, 0x07E0, 0x001F]
        .iter()
        .flat_map(|m| m.to_le_bytes())
        .collect();
    let cases = [
        ("8-bit palette", bmp(64, 64, 8, 0, &palette, &indexed8)),
        ("RLE8", bmp(64, 64, 8, 1, &palette, &rle8)),
        ("RLE4", bmp(64, 64, 4, 2, &palette, &rle4)),
        (
            "16-bit 5-6-5 bitfields",
            bmp(64, 64, 16, 3, &masks, &rgb565),
        ),
    ];
    for (what, bytes) in cases {
        let out = decode_output(&render(&bytes).jpeg);
        assert!(
            is_red(out.get_pixel(150, 300)),
            "BMP {what}: left is red, got {:?}",
            out.get_pixel(150, 300)
        );
        assert!(
            is_blue(out.get_pixel(450, 300)),
            "BMP {what}: right is blue, got {:?}",
            out.get_pixel(450, 300)
        );
    }
}

#[test]
fn hostile_jpegs_give_clean_errors() {
    let limits = Limits::default();
    let jpeg = encode(&DynamicImage::ImageRgb8(photo()), Fmt::Jpeg);
    // Truncated anywhere in the scan data: an error, not a half-gray image.
    for cut in [jpeg.len() / 3, jpeg.len() / 2, jpeg.len() - 100] {
        let err = render_bytes(&jpeg[..cut], &limits, Filter::None).unwrap_err();
        assert!(matches!(err, RenderError::Decode(_)), "cut at {cut}: {err}");
    }
    // A frame header that lies about the size: refused from the header...
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut huge = jpeg.clone();
    huge[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]); // 60000x60000
    let err = render_bytes(&huge, &limits, Filter::None).unwrap_err();
    assert!(
        matches!(err, RenderError::Probe(ProbeError::TooLarge { .. })),
        "{err}"
    );
    // ...or, within the limits, fails when the data runs out.
    let mut taller = jpeg.clone();
    taller[sof + 5..sof + 9].copy_from_slice(&[0x10, 0x00, 0x10, 0x00]); // 4096x4096
    assert!(probe_reader(std::io::Cursor::new(&taller), &limits).is_ok());
    assert!(render_bytes(&taller, &limits, Filter::None).is_err());
    // Scribbled-over scan data: whatever happens, no panic and no abort.
    let start = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap() + 20;
    for seed in 0..40usize {
        let mut bad = jpeg.clone();
        for i in 0..30 {
            let at = start + (seed * 7919 + i * 104_729) % (jpeg.len() - start - 2);
            bad[at] = (seed * 31 + i) as u8;
        }
        let _ = render_bytes(&bad, &limits, Filter::None);
    }
    // A header with no frame at all, and a frame with a zero size.
    assert!(render_bytes(&[0xFF, 0xD8, 0xFF, 0xD9], &limits, Filter::None).is_err());
    let mut zero = jpeg.clone();
    zero[sof + 5..sof + 9].copy_from_slice(&[0, 0, 0, 0]);
    assert!(render_bytes(&zero, &limits, Filter::None).is_err());
}

#[test]
fn lying_png_headers_give_clean_errors() {
    // Within the limits, but far more pixels than the data holds.
    let png = png_claiming(3000);
    let err = render_bytes(&png, &Limits::default(), Filter::None).unwrap_err();
    assert!(matches!(err, RenderError::Decode(_)), "{err}");
}

#[test]
fn memory_estimates_follow_the_header() {
    let photo = large_photo();
    let size = photo.dimensions();
    let probe =
        |bytes: &[u8]| probe_reader(std::io::Cursor::new(bytes), &Limits::default()).unwrap();
    let baseline = probe(&jpeg_with(&photo, size, ColorType::Rgb, |_| {}));
    let progressive = probe(&jpeg_with(&photo, size, ColorType::Rgb, |e| {
        e.set_progressive(true)
    }));
    let pixels = u64::from(size.0 * size.1);
    // Progressive keeps 2 bytes per sample (4:2:0 = 1.5 samples per pixel) on top.
    assert!(progressive.decode_bytes >= baseline.decode_bytes + 2 * pixels * 3 / 2 - 4096);
    let png = probe(&encode(&DynamicImage::ImageRgb8(photo.clone()), Fmt::Png));
    let bmp = probe(&encode(&DynamicImage::ImageRgb8(photo.clone()), Fmt::Bmp));
    assert!(bmp.decode_bytes >= 4 * pixels && png.decode_bytes < bmp.decode_bytes);
}
