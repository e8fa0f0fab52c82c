//! Refuses to build a JPEG codec without SIMD, where SIMD needs NASM.
//!
//! libjpeg-turbo (built from source by `mozjpeg-sys`) assembles its SIMD code
//! with NASM on x86. Without NASM, `mozjpeg-sys` builds plain C and says so
//! only in a warning cargo hides for registry crates: JPEG work then runs
//! several times slower with no sign. `mozjpeg-sys` (`links = "jpeg"`) tells
//! this script where its generated `jconfig.h` is, which defines `WITH_SIMD`
//! exactly when the SIMD code went in.

use std::path::PathBuf;

const ALLOW: &str = "IMAGEGRAM_ALLOW_SLOW_JPEG";

fn main() {
    println!("cargo:rerun-if-env-changed={ALLOW}");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" && arch != "x86" {
        // Elsewhere the SIMD code is built with the C compiler's assembler.
        return;
    }
    let include =
        std::env::var_os("DEP_JPEG_INCLUDE").expect("mozjpeg-sys exports its include paths");
    let with_simd = std::env::split_paths(&include)
        .map(|dir: PathBuf| dir.join("jconfig.h"))
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .any(|text| text.lines().any(|l| l.trim() == "#define WITH_SIMD 1"));
    if with_simd {
        return;
    }
    let message = "libjpeg-turbo was built WITHOUT SIMD because NASM was not installed: \
        JPEG decoding and encoding would run several times slower. \
        Run ./scripts/build-tools (it installs NASM and has cargo rebuild the codec), \
        or set IMAGEGRAM_ALLOW_SLOW_JPEG=1 to build the slow codec anyway.";
    if std::env::var_os(ALLOW).is_some_and(|v| v != "0") {
        println!("cargo:warning={message}");
    } else {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
