//! Whether libjpeg-turbo was built with its SIMD code. The `mozjpeg-sys` build
//! quietly falls back to plain C when NASM is missing, which makes JPEG work
//! several times slower; a test checks it (see scripts/build-tools).

unsafe extern "C" {
    // libjpeg-turbo's own dispatch probe: nonzero when a SIMD inverse DCT is
    // available on this CPU, always zero in a build without SIMD.
    fn jsimd_can_idct_islow() -> std::os::raw::c_int;
}

/// True when libjpeg-turbo runs its SIMD code on this machine.
pub fn jpeg_simd_enabled() -> bool {
    // SAFETY: a pure query without arguments or side effects.
    unsafe { jsimd_can_idct_islow() != 0 }
}
