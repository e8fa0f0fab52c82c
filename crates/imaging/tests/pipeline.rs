//! The pipeline fed generated images of every accepted class and hostile files.

mod common;

use std::io::Cursor;

use common::{decode_output, encode, halves, is_blue, is_red, png_claiming, with_exif_orientation};
use image::{DynamicImage, ImageFormat as Fmt, Rgb, RgbImage, Rgba, RgbaImage};
use imaging::{
    Filter, ImageFormat, Limits, OUTPUT_SIZE, ProbeError, RenderError, probe_reader, render_bytes,
};

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn every_format_renders_to_a_600_square_progressive_jpeg() {
    let img = DynamicImage::ImageRgb8(halves(900, 500));
    for fmt in [Fmt::Png, Fmt::Jpeg, Fmt::Bmp] {
        let out = render_bytes(&encode(&img, fmt), &limits(), Filter::None).unwrap();
        assert_eq!((out.width, out.height), (OUTPUT_SIZE, OUTPUT_SIZE));
        let decoded = decode_output(&out.jpeg);
        assert_eq!(decoded.dimensions(), (600, 600));
        // Progressive JPEGs carry an SOF2 marker.
        assert!(
            out.jpeg.windows(2).any(|w| w == [0xFF, 0xC2]),
            "{fmt:?} output is progressive"
        );
        // No EXIF or other metadata: no APP1 segment.
        assert!(!out.jpeg.windows(2).any(|w| w == [0xFF, 0xE1]));
        assert!(!out.blurhash.is_empty());
    }
}

#[test]
fn centre_crop_covers_without_distortion() {
    // A wide image: the centre square keeps the red/blue boundary in the middle.
    let out = render_bytes(
        &encode(&DynamicImage::ImageRgb8(halves(1200, 400)), Fmt::Png),
        &limits(),
        Filter::None,
    )
    .unwrap();
    let d = decode_output(&out.jpeg);
    assert!(is_red(d.get_pixel(150, 300)));
    assert!(is_blue(d.get_pixel(450, 300)));
}

#[test]
fn exif_orientation_is_applied() {
    let base = encode(&DynamicImage::ImageRgb8(halves(400, 200)), Fmt::Jpeg);
    // Orientation 1: left red, right blue.
    let d = decode_output(
        &render_bytes(&with_exif_orientation(&base, 1), &limits(), Filter::None)
            .unwrap()
            .jpeg,
    );
    assert!(is_red(d.get_pixel(100, 300)) && is_blue(d.get_pixel(500, 300)));
    // Orientation 6 (rotate 90° clockwise to display): the left edge becomes the top.
    let d = decode_output(
        &render_bytes(&with_exif_orientation(&base, 6), &limits(), Filter::None)
            .unwrap()
            .jpeg,
    );
    assert!(is_red(d.get_pixel(300, 100)) && is_blue(d.get_pixel(300, 500)));
    // Orientation 3 (rotate 180°): left and right swap.
    let d = decode_output(
        &render_bytes(&with_exif_orientation(&base, 3), &limits(), Filter::None)
            .unwrap()
            .jpeg,
    );
    assert!(is_blue(d.get_pixel(100, 300)) && is_red(d.get_pixel(500, 300)));
}

#[test]
fn alpha_is_flattened_onto_white() {
    let img = RgbaImage::from_fn(300, 300, |x, _| {
        if x < 150 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([0, 0, 255, 255])
        }
    });
    let d = decode_output(
        &render_bytes(
            &encode(&DynamicImage::ImageRgba8(img), Fmt::Png),
            &limits(),
            Filter::None,
        )
        .unwrap()
        .jpeg,
    );
    let p = d.get_pixel(100, 300);
    assert!(
        p.0.iter().all(|&c| c > 240),
        "transparent became white, got {p:?}"
    );
    assert!(is_blue(d.get_pixel(500, 300)));
}

#[test]
fn gray_sixteen_bit_and_palette_pngs_render() {
    let gray = DynamicImage::ImageLuma8(image::GrayImage::from_fn(700, 700, |x, _| {
        image::Luma([(x % 256) as u8])
    }));
    let gray_alpha = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
        64,
        64,
        image::LumaA([10, 128]),
    ));
    let deep = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
        640,
        480,
        Rgb([65535u16, 0, 0]),
    ));
    for img in [gray, gray_alpha, deep] {
        render_bytes(&encode(&img, Fmt::Png), &limits(), Filter::None).unwrap();
    }
    let d = decode_output(
        &render_bytes(
            &encode(
                &DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
                    64,
                    64,
                    Rgb([65535u16, 0, 0]),
                )),
                Fmt::Png,
            ),
            &limits(),
            Filter::None,
        )
        .unwrap()
        .jpeg,
    );
    assert!(is_red(d.get_pixel(300, 300)), "16-bit red stays red");
}

#[test]
fn filters_change_the_output() {
    let img = encode(&DynamicImage::ImageRgb8(halves(800, 800)), Fmt::Png);
    let gray = render_bytes(&img, &limits(), Filter::Grayscale).unwrap();
    let d = decode_output(&gray.jpeg);
    let p = d.get_pixel(100, 100);
    assert!(
        p[0].abs_diff(p[1]) < 4 && p[1].abs_diff(p[2]) < 4,
        "grayscale output, got {p:?}"
    );
    let gradient = RgbImage::from_fn(600, 600, |x, _| {
        let v = (x * 255 / 599) as u8;
        Rgb([v, v, v])
    });
    let dithered = render_bytes(
        &encode(&DynamicImage::ImageRgb8(gradient), Fmt::Png),
        &limits(),
        Filter::Dither { levels: 2 },
    )
    .unwrap();
    let d = decode_output(&dithered.jpeg);
    // Two levels: almost every pixel is near black or near white even in the mid-grey middle.
    let extreme = (250..350)
        .flat_map(|x| (0..600).map(move |y| (x, y)))
        .filter(|&(x, y)| {
            let v = d.get_pixel(x, y)[0];
            !(60..=195).contains(&v)
        })
        .count();
    assert!(
        extreme as f64 / 60_000.0 > 0.9,
        "dither pattern survives encoding ({extreme})"
    );
}

#[test]
fn probe_reads_headers_only_and_enforces_limits() {
    let png = encode(&DynamicImage::ImageRgb8(halves(300, 200)), Fmt::Png);
    let h = probe_reader(Cursor::new(&png), &limits()).unwrap();
    assert_eq!((h.format, h.width, h.height), (ImageFormat::Png, 300, 200));
    let tight = Limits {
        max_pixels: 1000,
        max_side: 30_000,
    };
    assert!(matches!(
        probe_reader(Cursor::new(&png), &tight),
        Err(ProbeError::TooLarge { .. })
    ));
}

/// A PNG whose header claims 50000x50000 with almost no data: refused from the header.
#[test]
fn decompression_bomb_is_refused_before_decoding() {
    let png = png_claiming(50_000);
    let started = std::time::Instant::now();
    let err = render_bytes(&png, &limits(), Filter::None).unwrap_err();
    assert!(
        matches!(err, RenderError::Probe(ProbeError::TooLarge { .. })),
        "{err}"
    );
    assert!(err.is_bad_input());
    assert!(started.elapsed().as_secs() < 1);
}

#[test]
fn hostile_files_give_clean_errors() {
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    assert!(matches!(
        render_bytes(&gif, &limits(), Filter::None),
        Err(RenderError::Probe(ProbeError::UnsupportedFormat))
    ));
    assert!(matches!(
        render_bytes(b"", &limits(), Filter::None),
        Err(RenderError::Probe(ProbeError::UnsupportedFormat))
    ));
    // Right magic, garbage after it.
    for head in [
        &b"\x89PNG\r\n\x1a\n"[..],
        &[0xFF, 0xD8, 0xFF, 0xE0][..],
        &b"BM"[..],
    ] {
        let mut junk = head.to_vec();
        junk.extend(std::iter::repeat_n(0x5Au8, 200));
        let err = render_bytes(&junk, &limits(), Filter::None).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
    }
    // Truncated in the pixel data: the header is fine, decoding fails.
    let png = encode(
        &DynamicImage::ImageRgb8(RgbImage::from_fn(500, 500, |x, y| {
            Rgb([x as u8, y as u8, 7])
        })),
        Fmt::Png,
    );
    let cut = &png[..png.len() / 2];
    assert!(probe_reader(Cursor::new(cut), &limits()).is_ok());
    let err = render_bytes(cut, &limits(), Filter::None).unwrap_err();
    assert!(matches!(err, RenderError::Decode(_)), "{err}");
    // Every prefix of a small JPEG and BMP: never a panic.
    for fmt in [Fmt::Jpeg, Fmt::Bmp] {
        let full = encode(&DynamicImage::ImageRgb8(halves(64, 48)), fmt);
        for len in (0..full.len()).step_by(7) {
            let _ = render_bytes(&full[..len], &limits(), Filter::None);
        }
    }
}
