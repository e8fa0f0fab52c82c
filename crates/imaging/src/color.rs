//! Colour to 8-bit sRGB on the 600x600 output, where it costs next to nothing:
//! embedded RGB profiles (Display P3, Adobe RGB, ...) and CMYK profiles go
//! through moxcms; CMYK without a profile uses the plain ink formula.

use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

/// Converts resized RGB samples from their embedded profile to sRGB, in place.
/// A profile that cannot be read, or is not an RGB profile, is ignored: the
/// samples are then taken as sRGB, which is what a browser would do.
pub(crate) fn rgb_to_srgb(rgb: &mut Vec<u8>, icc: Option<&[u8]>) {
    let Some(profile) = icc.and_then(|icc| ColorProfile::new_from_slice(icc).ok()) else {
        return;
    };
    if profile.color_space != DataColorSpace::Rgb {
        return;
    }
    let srgb = ColorProfile::new_srgb();
    let Ok(transform) =
        profile.create_transform_8bit(Layout::Rgb, &srgb, Layout::Rgb, TransformOptions::default())
    else {
        return;
    };
    let mut out = vec![0u8; rgb.len()];
    if transform.transform(rgb, &mut out).is_ok() {
        *rgb = out;
    }
}

/// Converts resized CMYK samples to sRGB.
pub(crate) fn cmyk_to_srgb(cmyk: &[u8], inverted: bool, icc: Option<&[u8]>) -> Vec<u8> {
    let ink: Vec<u8> = if inverted {
        cmyk.iter().map(|&v| 255 - v).collect()
    } else {
        cmyk.to_vec()
    };
    if let Some(rgb) = icc.and_then(|icc| cmyk_with_profile(&ink, icc)) {
        return rgb;
    }
    ink.chunks_exact(4)
        .flat_map(|p| {
            let white = 255 - u32::from(p[3]);
            let channel = |c: u8| ((255 - u32::from(c)) * white / 255) as u8;
            [channel(p[0]), channel(p[1]), channel(p[2])]
        })
        .collect()
}

fn cmyk_with_profile(ink: &[u8], icc: &[u8]) -> Option<Vec<u8>> {
    let profile = ColorProfile::new_from_slice(icc).ok()?;
    if profile.color_space != DataColorSpace::Cmyk {
        return None;
    }
    let srgb = ColorProfile::new_srgb();
    // moxcms takes 8-bit CMYK in the RGBA layout.
    let transform = profile
        .create_transform_8bit(
            Layout::Rgba,
            &srgb,
            Layout::Rgb,
            TransformOptions::default(),
        )
        .ok()?;
    let mut rgb = vec![0u8; ink.len() / 4 * 3];
    transform.transform(ink, &mut rgb).ok()?;
    Some(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_without_profile_uses_the_ink_formula() {
        // No ink is white, full black is black, full cyan is cyan.
        assert_eq!(
            cmyk_to_srgb(&[0, 0, 0, 0], false, None),
            vec![255, 255, 255]
        );
        assert_eq!(cmyk_to_srgb(&[0, 0, 0, 255], false, None), vec![0, 0, 0]);
        assert_eq!(
            cmyk_to_srgb(&[255, 0, 0, 0], false, None),
            vec![0, 255, 255]
        );
        // Adobe's inverted storage: 255 means no ink.
        assert_eq!(
            cmyk_to_srgb(&[255, 255, 255, 255], true, None),
            vec![255, 255, 255]
        );
    }

    #[test]
    fn an_srgb_profile_changes_almost_nothing_and_garbage_is_ignored() {
        let srgb = ColorProfile::new_srgb().encode().unwrap();
        let mut px = vec![10, 128, 250, 0, 0, 0];
        rgb_to_srgb(&mut px, Some(&srgb));
        for (a, b) in px.iter().zip([10, 128, 250, 0, 0, 0]) {
            assert!(a.abs_diff(b) <= 1, "{px:?}");
        }
        let mut px = vec![1, 2, 3];
        rgb_to_srgb(&mut px, Some(b"not a profile"));
        assert_eq!(px, vec![1, 2, 3]);
    }

    #[test]
    fn a_wide_gamut_profile_is_converted() {
        let p3 = ColorProfile::new_display_p3().encode().unwrap();
        // A P3 orange is more saturated than the same numbers in sRGB: red
        // rises and blue falls once converted.
        let mut px = vec![200, 100, 50];
        rgb_to_srgb(&mut px, Some(&p3));
        assert!(px[0] >= 210 && px[2] <= 40, "{px:?}");
    }
}
