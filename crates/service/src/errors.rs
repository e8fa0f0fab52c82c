//! What a service call can fail with, for the API to turn into problems.

use domain::ValidationErrors;
use store::StoreError;

/// What can go wrong in a service call, in the client's terms.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the request has invalid fields")]
    Validation(ValidationErrors),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// tus: the client's Upload-Offset is not the upload's offset.
    #[error("the upload is at offset {current}, not at the offset sent")]
    OffsetMismatch { current: u64 },
    /// tus: the chunk's checksum did not match; the chunk was discarded.
    #[error("the chunk does not match its Upload-Checksum; it was discarded")]
    ChecksumMismatch,
    #[error("{0}")]
    Gone(&'static str),
    #[error("the post changed since the entity tag in If-Match was issued")]
    PreconditionFailed,
    #[error("the cursor is malformed, was tampered with, or belongs to another listing")]
    BadCursor,
    #[error("the image is not a PNG, JPEG or BMP file (recognised by content)")]
    UnsupportedImage,
    #[error("{0}")]
    UnreadableImage(String),
    #[error("{0}")]
    ImageTooLarge(String),
    /// Moderation suspended the account: it cannot log in.
    #[error("this account is suspended by moderation")]
    Suspended,
    /// A moderator banned these exact bytes.
    #[error("this image was removed by moderation and cannot be posted again")]
    ImageBanned,
    #[error("the image is larger than {max} bytes")]
    PayloadTooLarge { max: u64 },
    /// The caller holds as many of something as one caller may (429).
    #[error("{0}")]
    TooMany(&'static str),
    /// A bounded resource (e.g. password hashing) is saturated; retry shortly.
    #[error("{0}")]
    Overloaded(&'static str),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => ServiceError::Conflict("that username is taken".into()),
            StoreError::UploadUnavailable => ServiceError::Validation(ValidationErrors::single(
                "upload_id",
                "no such finished upload (unknown, unfinished, expired or already used)",
            )),
            StoreError::Backend(e) => ServiceError::Internal(e),
        }
    }
}

impl From<ValidationErrors> for ServiceError {
    fn from(e: ValidationErrors) -> Self {
        ServiceError::Validation(e)
    }
}
