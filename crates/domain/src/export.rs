//! Data exports (PRODUCT.md §3 Accounts): a zip of everything an account
//! made, built in the background and kept for a week.

use serde::Serialize;

use super::{ExportId, Timestamp, UserId};

/// How long a finished export can be fetched.
pub const EXPORT_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    Processing,
    Ready,
    Failed,
}

impl ExportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Processing => "processing",
            ExportStatus::Ready => "ready",
            ExportStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "processing" => Ok(ExportStatus::Processing),
            "ready" => Ok(ExportStatus::Ready),
            "failed" => Ok(ExportStatus::Failed),
            other => Err(format!("unknown export status {other:?}")),
        }
    }
}

/// Where an export's zip is kept.
pub fn export_blob_key(id: ExportId) -> String {
    format!("exports/{id}.zip")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub id: ExportId,
    pub user: UserId,
    pub status: ExportStatus,
    pub created_at: Timestamp,
    /// When it stops being available (and is deleted).
    pub expires_at: Timestamp,
}

impl Export {
    pub fn new(user: UserId, at: Timestamp) -> Self {
        Export {
            id: ExportId::new(),
            user,
            status: ExportStatus::Processing,
            created_at: at,
            expires_at: super::later(at, EXPORT_KEPT),
        }
    }

    /// Where its zip is kept.
    pub fn blob_key(&self) -> String {
        export_blob_key(self.id)
    }

    /// Where its owner downloads it, once ready.
    pub fn download_path(&self) -> Option<String> {
        (self.status == ExportStatus::Ready).then(|| format!("/v1/me/exports/{}/download", self.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_is_kept_a_week_and_downloadable_once_ready() {
        let at = crate::now();
        let mut export = Export::new(UserId::new(), at);
        assert_eq!(export.expires_at - at, chrono::Duration::days(7));
        assert_eq!(export.download_path(), None);
        export.status = ExportStatus::Ready;
        assert!(export.download_path().unwrap().ends_with("/download"));
        assert!(export.blob_key().starts_with("exports/"));
        for s in [
            ExportStatus::Processing,
            ExportStatus::Ready,
            ExportStatus::Failed,
        ] {
            assert_eq!(ExportStatus::parse(s.as_str()), Ok(s));
        }
    }
}
