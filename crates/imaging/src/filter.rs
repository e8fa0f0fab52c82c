//! Post-resize filters. They run on the 600x600 output, so their cost is fixed.

/// A filter chosen for a post's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    #[default]
    None,
    Grayscale,
    /// Floyd–Steinberg error diffusion to `levels` (2..=16) levels per channel.
    Dither {
        levels: u8,
    },
}

/// Rec. 601 luma, the weighting JPEG's own YCbCr uses.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    let y = 299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b);
    ((y + 500) / 1000) as u8
}

/// Converts packed RGB to one gray channel.
pub(crate) fn grayscale(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]))
        .collect()
}

/// Floyd–Steinberg dithering in place, over `channels` interleaved channels,
/// scanning in serpentine order so the error does not drift to one side.
pub(crate) fn dither(pixels: &mut [u8], width: usize, channels: usize, levels: u8) {
    let levels = levels.clamp(2, 16) as i32;
    let step = 255.0 / (levels - 1) as f32;
    let row_len = width * channels;
    // Error carried into the current and the next row; one extra pixel each side
    // avoids bounds checks at the edges.
    let mut current = vec![0f32; row_len + 2 * channels];
    let mut next = vec![0f32; row_len + 2 * channels];
    for (y, row) in pixels.chunks_exact_mut(row_len).enumerate() {
        let left_to_right = y % 2 == 0;
        for i in 0..width {
            let x = if left_to_right { i } else { width - 1 - i };
            for c in 0..channels {
                let idx = x * channels + c;
                let e = idx + channels; // index into the padded error rows
                let wanted = f32::from(row[idx]) + current[e];
                let quantised = ((wanted / step).round() * step).clamp(0.0, 255.0);
                row[idx] = quantised.round() as u8;
                let err = wanted - quantised;
                let (ahead, behind) = if left_to_right {
                    (e + channels, e - channels)
                } else {
                    (e - channels, e + channels)
                };
                current[ahead] += err * 7.0 / 16.0;
                next[behind] += err * 3.0 / 16.0;
                next[e] += err * 5.0 / 16.0;
                next[ahead] += err * 1.0 / 16.0;
            }
        }
        std::mem::swap(&mut current, &mut next);
        next.iter_mut().for_each(|v| *v = 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dither_uses_only_the_allowed_levels() {
        let mut px: Vec<u8> = (0..64 * 64 * 3).map(|i| (i % 256) as u8).collect();
        dither(&mut px, 64, 3, 2);
        assert!(px.iter().all(|&v| v == 0 || v == 255));
        let mut px: Vec<u8> = (0..64 * 64).map(|i| (i % 256) as u8).collect();
        dither(&mut px, 64, 1, 4);
        assert!(px.iter().all(|&v| [0, 85, 170, 255].contains(&v)));
    }

    #[test]
    fn dither_keeps_average_brightness() {
        let mut px = vec![100u8; 100 * 100];
        dither(&mut px, 100, 1, 2);
        let mean = px.iter().map(|&v| f64::from(v)).sum::<f64>() / px.len() as f64;
        assert!((mean - 100.0).abs() < 3.0, "mean {mean}");
    }

    #[test]
    fn grayscale_weights_green_most() {
        assert_eq!(grayscale(&[255, 255, 255, 0, 0, 0]), vec![255, 0]);
        assert!(grayscale(&[0, 255, 0])[0] > grayscale(&[255, 0, 0])[0]);
    }
}
