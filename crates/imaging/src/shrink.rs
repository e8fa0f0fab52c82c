//! Shrinking while rows arrive: the centre square of the source is
//! box-averaged by an integer factor as each row is decoded, so a huge image
//! never exists in memory at full size (what libvips calls shrink-on-load).
//! The final, high-quality Lanczos pass then runs on the shrunk square.
//! Written here because no crate offers an incremental, row-fed box shrink.

use crate::probe::OUTPUT_SIZE;

/// Integer box-shrink factor for a square of `side` pixels. It leaves at
/// least twice the output size for the Lanczos pass, so the box filter's
/// softness never shows in the output.
pub(crate) fn shrink_factor(side: u32) -> u32 {
    (side / (2 * OUTPUT_SIZE)).max(1)
}

/// Converts one row of 8-bit gray, gray+alpha, RGB or RGBA samples to RGB,
/// compositing any alpha over white.
fn flatten_row(src: &[u8], channels: usize, dst: &mut Vec<u8>) {
    dst.clear();
    match channels {
        1 => dst.extend(src.iter().flat_map(|&v| [v, v, v])),
        2 => dst.extend(src.chunks_exact(2).flat_map(|p| {
            let v = over_white(p[0], p[1]);
            [v, v, v]
        })),
        3 => dst.extend_from_slice(src),
        _ => dst.extend(src.chunks_exact(4).flat_map(|p| {
            [
                over_white(p[0], p[3]),
                over_white(p[1], p[3]),
                over_white(p[2], p[3]),
            ]
        })),
    }
}

fn over_white(value: u8, alpha: u8) -> u8 {
    let a = u32::from(alpha);
    ((u32::from(value) * a + 255 * (255 - a) + 127) / 255) as u8
}

/// Receives full-width RGB rows top to bottom and keeps the box-shrunk centre square.
pub(crate) struct RowShrinker {
    factor: usize,
    first_column: usize,
    first_row: u32,
    end_row: u32,
    next_row: u32,
    side: usize,
    /// Per source column of the square, the sum of the rows seen since the last output row.
    column_sums: Vec<u32>,
    rows_in_sums: usize,
    out: Vec<u8>,
    /// One source row converted to RGB.
    scratch: Vec<u8>,
}

const CHANNELS: usize = 3;

impl RowShrinker {
    pub(crate) fn new(width: u32, height: u32) -> Self {
        let full = width.min(height);
        let factor = shrink_factor(full);
        let side = full / factor;
        let used = side * factor;
        RowShrinker {
            factor: factor as usize,
            first_column: ((width - used) / 2) as usize,
            first_row: (height - used) / 2,
            end_row: (height - used) / 2 + used,
            next_row: 0,
            side: side as usize,
            column_sums: vec![0; used as usize * CHANNELS],
            rows_in_sums: 0,
            out: Vec::with_capacity(side as usize * side as usize * CHANNELS),
            scratch: Vec::new(),
        }
    }

    /// Whether the next row falls inside the square.
    fn wants_next(&self) -> bool {
        (self.first_row..self.end_row).contains(&self.next_row)
    }

    /// Counts a row that lies outside the square without looking at it.
    fn skip(&mut self) {
        self.next_row += 1;
    }

    /// Feeds the next source row of 8-bit gray, gray+alpha, RGB or RGBA
    /// samples, converting it only if it lies inside the square.
    pub(crate) fn push_samples(&mut self, row: &[u8], channels: usize) {
        if !self.wants_next() {
            self.skip();
            return;
        }
        let mut rgb = std::mem::take(&mut self.scratch);
        flatten_row(row, channels, &mut rgb);
        self.push(&rgb);
        self.scratch = rgb;
    }

    /// Feeds the next RGB row of the source (its full width).
    pub(crate) fn push(&mut self, row: &[u8]) {
        let wanted = self.wants_next();
        self.next_row += 1;
        if !wanted {
            return;
        }
        let start = self.first_column * CHANNELS;
        let src = &row[start..start + self.side * self.factor * CHANNELS];
        if self.factor == 1 {
            self.out.extend_from_slice(src);
            return;
        }
        // Sum rows column by column first (a plain widening add the compiler
        // vectorises); columns are folded only once per `factor` rows.
        for (sum, &v) in self.column_sums.iter_mut().zip(src) {
            *sum += u32::from(v);
        }
        self.rows_in_sums += 1;
        if self.rows_in_sums == self.factor {
            self.emit_row();
        }
    }

    fn emit_row(&mut self) {
        let area = (self.factor * self.factor) as u32;
        let block = self.factor * CHANNELS;
        for columns in self.column_sums.chunks_exact(block) {
            let mut px = [0u32; CHANNELS];
            for p in columns.chunks_exact(CHANNELS) {
                px[0] += p[0];
                px[1] += p[1];
                px[2] += p[2];
            }
            self.out
                .extend(px.iter().map(|&s| ((s + area / 2) / area) as u8));
        }
        self.column_sums.iter_mut().for_each(|s| *s = 0);
        self.rows_in_sums = 0;
    }

    /// The shrunk square and its side, or None if rows were missing.
    pub(crate) fn finish(self) -> Option<(Vec<u8>, u32)> {
        (self.out.len() == self.side * self.side * CHANNELS).then_some((self.out, self.side as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_images_are_only_cropped() {
        let mut s = RowShrinker::new(4, 2);
        for y in 0..2u8 {
            let row: Vec<u8> = (0..4u8).flat_map(|x| [x, y, 0]).collect();
            s.push(&row);
        }
        let (out, side) = s.finish().unwrap();
        assert_eq!(side, 2);
        assert_eq!(out, vec![1, 0, 0, 2, 0, 0, 1, 1, 0, 2, 1, 0]);
    }

    #[test]
    fn large_images_are_box_averaged_around_the_centre() {
        // 2400 wide, 3600 tall: factor 2, a 1200 square starting at row 600.
        let (w, h) = (2400u32, 3600u32);
        let mut s = RowShrinker::new(w, h);
        for y in 0..h {
            let v = if y % 2 == 0 { 10 } else { 30 };
            s.push(&vec![v; w as usize * 3]);
        }
        let (out, side) = s.finish().unwrap();
        assert_eq!(side, 1200);
        assert!(out.iter().all(|&v| v == 20));
    }

    #[test]
    fn missing_rows_are_detected() {
        let mut s = RowShrinker::new(10, 10);
        s.push(&[0; 30]);
        assert!(s.finish().is_none());
    }

    #[test]
    fn alpha_is_composited_over_white() {
        let mut out = Vec::new();
        flatten_row(&[0, 0, 0, 0, 255, 0, 0, 255], 4, &mut out);
        assert_eq!(out, vec![255, 255, 255, 255, 0, 0]);
        flatten_row(&[0, 128], 2, &mut out);
        assert_eq!(out, vec![127, 127, 127]);
    }
}
