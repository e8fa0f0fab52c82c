//! Decompression bombs are refused from the header, before any pixel buffer
//! exists: this test binary counts every allocation to prove it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use imaging::{Filter, Limits, ProbeError, RenderError, render_bytes};

/// The system allocator, remembering the largest single allocation.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

#[test]
fn bombs_are_refused_quickly_without_large_allocations() {
    // A 50000x50000 PNG header (7.5 GB of pixels), and a JPEG frame header of 60000x60000.
    let png = common::png_claiming(50_000);
    let mut jpeg = vec![
        0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 8, 0xEA, 0x60, 0xEA, 0x60, 3,
    ];
    jpeg.extend_from_slice(&[1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
    // A BMP header of 30000x30000 at 32 bits: within the side limit, over the pixel limit.
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&[0; 8]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&30_000i32.to_le_bytes());
    bmp.extend_from_slice(&30_000i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&32u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    for (what, bytes) in [("PNG", png), ("JPEG", jpeg), ("BMP", bmp)] {
        LARGEST.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let err = render_bytes(&bytes, &Limits::default(), Filter::None).unwrap_err();
        let elapsed = started.elapsed();
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            matches!(err, RenderError::Probe(ProbeError::TooLarge { .. })),
            "{what}: {err}"
        );
        assert!(err.is_bad_input());
        assert!(elapsed.as_secs() < 1, "{what}: refused in {elapsed:?}");
        assert!(
            largest < 1 << 20,
            "{what}: largest allocation {largest} bytes"
        );
    }
}
