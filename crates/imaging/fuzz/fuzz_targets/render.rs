//! The whole pipeline entry, as a worker calls it: any bytes in, a JPEG or a
//! clean error out. The first byte picks the filter so those paths run too.
#![no_main]

use imaging::{Filter, Limits, render_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, image)) = data.split_first() else {
        return;
    };
    let filter = match choice % 4 {
        0 | 1 => Filter::None,
        2 => Filter::Grayscale,
        _ => Filter::Dither {
            levels: 2 + choice % 15,
        },
    };
    // Smaller limits than the service's keep every input within the fuzzer's
    // memory and time budget; the limit checks themselves are the same code.
    let limits = Limits {
        max_pixels: 16_000_000,
        max_side: 8_192,
    };
    let _ = render_bytes(image, &limits, filter);
});
