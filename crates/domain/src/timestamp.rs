//! Timestamps as clients see them: RFC 3339 in UTC, exactly as chrono writes
//! them with `SecondsFormat::AutoSi` and `Z` (`2026-11-23T22:48:22.123Z`).
//!
//! Written by hand because chrono formats through `core::fmt`, and a feed page
//! carries about 140 timestamps: that formatting machinery was a tenth of the
//! server's CPU on deep feed pages. Anything outside years 0–9999 or with a
//! leap second falls back to chrono.

use chrono::{Datelike, Timelike};
use serde::Serializer;

use super::Timestamp;

/// `serialize_with` for a `Timestamp` field.
pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match format(t, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    }
}

/// `serialize_with` for an `Option<Timestamp>` field.
pub fn serialize_option<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

/// Writes `t` into `buf`; `None` when it needs chrono's general formatting.
fn format<'a>(t: &Timestamp, buf: &'a mut [u8; 30]) -> Option<&'a str> {
    // Fields of the naive value: on the `DateTime` each one re-applies the offset.
    let t = t.naive_utc();
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let (fraction, digits) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    let mut at = 0;
    let mut put = |value: u32, digits: u32, then: u8| {
        for d in (0..digits).rev() {
            buf[at] = b'0' + (value / 10u32.pow(d) % 10) as u8;
            at += 1;
        }
        buf[at] = then;
        at += 1;
    };
    put(year, 4, b'-');
    put(t.month(), 2, b'-');
    put(t.day(), 2, b'T');
    put(t.hour(), 2, b':');
    put(t.minute(), 2, b':');
    if digits == 0 {
        put(t.second(), 2, b'Z');
    } else {
        put(t.second(), 2, b'.');
        put(fraction, digits, b'Z');
    }
    std::str::from_utf8(&buf[..at]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat, Utc};

    fn at(year: i32, nanos: u32) -> Timestamp {
        chrono::NaiveDate::from_ymd_opt(year, 6, 1)
            .unwrap()
            .and_hms_nano_opt(12, 30, 45, nanos)
            .unwrap()
            .and_utc()
    }

    fn chrono_text(t: &Timestamp) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    #[test]
    fn matches_chrono_for_every_precision() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let secs = (seed % 253_402_300_799) as i64; // up to 9999-12-31
            let nanos = match seed % 4 {
                0 => 0,
                1 => (seed >> 20) as u32 % 1000 * 1_000_000,
                2 => (seed >> 20) as u32 % 1_000_000 * 1_000,
                _ => (seed >> 20) as u32 % 1_000_000_000,
            };
            let t: Timestamp = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            let mut buf = [0u8; 30];
            assert_eq!(format(&t, &mut buf).unwrap(), chrono_text(&t));
        }
    }

    #[test]
    fn serialises_like_chrono_and_falls_back_outside_four_digit_years() {
        let samples = [
            DateTime::<Utc>::from_timestamp_millis(1_795_000_000_123).unwrap(),
            DateTime::<Utc>::from_timestamp_millis(1_795_000_000_000).unwrap(),
            at(-1, 123),
            at(10_000, 5),
        ];
        for t in samples {
            let ours = serialize(&t, serde_json::value::Serializer).unwrap();
            assert_eq!(ours, serde_json::to_value(t).unwrap());
        }
        assert_eq!(
            serialize_option(&None, serde_json::value::Serializer).unwrap(),
            serde_json::Value::Null
        );
    }
}
