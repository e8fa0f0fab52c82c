//! Field-by-field validation errors, the text rules every field shares and
//! the page-size limit.

use serde::{Deserialize, Serialize};

/// One rejected field of a request, reported to the client as-is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    #[schema(example = "caption")]
    pub field: String,
    #[schema(example = "must be at most 2200 characters")]
    pub message: String,
}

/// Every rejected field of a request, so a client can fix them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn single(field: &str, message: impl Into<String>) -> Self {
        ValidationErrors(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Records the error of `result` under `field`, returning the value if valid.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// User text (captions, alt text, comments): Unicode without control characters,
/// except newline and tab. A CR LF pair counts as a newline, since browsers
/// submit form text that way; it is stored as LF. A lone CR, NUL or any other
/// control character is refused: they corrupt logs and terminals, and
/// PostgreSQL cannot store NUL in text at all.
pub fn clean_text(raw: String) -> Result<String, String> {
    let text = if raw.contains('\r') {
        raw.replace("\r\n", "\n")
    } else {
        raw
    };
    refuse_control_characters(&text)?;
    Ok(text)
}

/// The control-character rule of `clean_text`, without rewriting anything
/// (for secrets such as passwords, which must stay exactly as typed).
pub fn refuse_control_characters(text: &str) -> Result<(), String> {
    match text
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        None => Ok(()),
        Some(c) => Err(format!(
            "must not contain control characters other than newline and tab (found U+{:04X})",
            c as u32
        )),
    }
}

/// A page size: 1..=100, default 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u32);

impl Limit {
    pub const MAX: u32 = 100;
    pub const DEFAULT: u32 = 20;

    pub fn parse(raw: Option<u32>) -> Result<Self, String> {
        match raw {
            None => Ok(Limit(Self::DEFAULT)),
            Some(n) if (1..=Self::MAX).contains(&n) => Ok(Limit(n)),
            Some(_) => Err(format!("must be between 1 and {}", Self::MAX)),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_refuses_control_characters_but_newlines_and_tabs() {
        assert_eq!(clean_text("a\tb\nc".into()).unwrap(), "a\tb\nc");
        assert_eq!(clean_text("a\r\nb".into()).unwrap(), "a\nb");
        for bad in ["a\0b", "a\rb", "\u{1b}[31m", "\u{7f}", "\u{85}"] {
            let e = clean_text(bad.into()).unwrap_err();
            assert!(e.contains("control characters"), "{bad:?}: {e}");
        }
        assert_eq!(clean_text("émoji 🎉 ok".into()).unwrap(), "émoji 🎉 ok");
    }

    #[test]
    fn limit_bounds() {
        assert_eq!(Limit::parse(None).unwrap().get(), 20);
        assert_eq!(Limit::parse(Some(1)).unwrap().get(), 1);
        assert_eq!(Limit::parse(Some(100)).unwrap().get(), 100);
        assert!(Limit::parse(Some(0)).is_err());
        assert!(Limit::parse(Some(101)).is_err());
    }
}
