//! Whole-instance copy between backends (`imagegram migrate`): a neutral
//! description of every table, and the row values that travel between them.

use async_trait::async_trait;

use super::StoreResult;
use domain::Timestamp;

/// How a column is stored; each backend maps these to its own types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    Text,
    Bytes,
    /// An integer, with its PostgreSQL type.
    Int(&'static str),
    Time,
    Json,
}

#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    /// The primary key, which is also the copy order.
    pub key: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    /// Copied rows replace the target's (settings such as the cursor key must carry over).
    pub replace: bool,
}

/// A value of one column of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Uuid(uuid::Uuid),
    Text(String),
    Bytes(Vec<u8>),
    Int(i64),
    Time(Timestamp),
}

pub type Row = Vec<Value>;

use Kind::*;

/// Every table, parents before children.
pub const TABLES: &[Table] = &[
    Table {
        name: "settings",
        key: "name",
        columns: &[("name", Text), ("value", Bytes)],
        replace: true,
    },
    Table {
        name: "users",
        key: "id",
        columns: &[
            ("id", Uuid),
            ("username", Text),
            ("password_hash", Text),
            ("created_at", Time),
            // Events are keyed by (user, seq): a copy without it reuses keys.
            ("event_seq", Int("bigint")),
            ("role", Text),
            ("deleted_at", Time),
            ("suspended_at", Time),
        ],
        replace: false,
    },
    Table {
        name: "sessions",
        key: "token_hash",
        columns: &[
            ("token_hash", Bytes),
            ("user_id", Uuid),
            ("created_at", Time),
            ("last_used_at", Time),
        ],
        replace: false,
    },
    Table {
        name: "posts",
        key: "id",
        columns: &[
            ("id", Uuid),
            ("author_id", Uuid),
            ("caption", Text),
            ("alt_text", Text),
            ("status", Text),
            ("failure_reason", Text),
            ("filter", Text),
            ("dither_levels", Int("smallint")),
            ("original_key", Text),
            ("original_format", Text),
            ("image_key", Text),
            ("image_width", Int("integer")),
            ("image_height", Int("integer")),
            ("blurhash", Text),
            ("comment_count", Int("bigint")),
            ("last_comments", Json),
            ("created_at", Time),
            ("updated_at", Time),
            ("expires_at", Time),
            ("version", Int("bigint")),
            ("rendered", Text),
            ("rendered_version", Int("bigint")),
        ],
        replace: false,
    },
    Table {
        name: "comments",
        key: "id",
        columns: &[
            ("id", Uuid),
            ("post_id", Uuid),
            ("author_id", Uuid),
            ("body", Text),
            ("created_at", Time),
        ],
        replace: false,
    },
    Table {
        name: "jobs",
        key: "id",
        columns: &[
            ("id", Uuid),
            ("post_id", Uuid),
            ("attempts", Int("integer")),
            ("run_at", Time),
            ("lease_token", Uuid),
            ("last_error", Text),
            ("created_at", Time),
        ],
        replace: false,
    },
    Table {
        name: "uploads",
        key: "id",
        columns: &[
            ("id", Uuid),
            ("owner_id", Uuid),
            ("length", Int("bigint")),
            ("upload_offset", Int("bigint")),
            ("metadata", Text),
            ("lock_token", Uuid),
            ("lock_until", Time),
            ("created_at", Time),
            ("expires_at", Time),
            ("release_wanted", Int("smallint")),
        ],
        replace: false,
    },
    Table {
        name: "upload_chunks",
        key: "key",
        columns: &[
            ("key", Text),
            ("upload_id", Uuid),
            ("start", Int("bigint")),
            ("length", Int("bigint")),
        ],
        replace: false,
    },
    Table {
        name: "idempotency_keys",
        key: "scope_key",
        columns: &[
            ("scope_key", Text),
            ("fingerprint", Bytes),
            ("state", Text),
            ("status", Int("integer")),
            ("headers", Text),
            ("body", Bytes),
            ("created_at", Time),
            ("expires_at", Time),
            ("lease_until", Time),
        ],
        replace: false,
    },
    Table {
        name: "events",
        key: "key",
        columns: &[
            ("key", Text),
            ("user_id", Uuid),
            ("seq", Int("bigint")),
            ("kind", Text),
            ("data", Text),
            ("created_at", Time),
        ],
        replace: false,
    },
    Table {
        name: "blob_deletions",
        key: "key",
        columns: &[("key", Text), ("created_at", Time)],
        replace: false,
    },
    Table {
        name: "reports",
        key: "id",
        columns: &[
            ("id", Uuid),
            ("reporter_id", Uuid),
            ("target_type", Text),
            ("target_id", Uuid),
            ("reason", Text),
            ("note", Text),
            ("snapshot", Text),
            ("status", Text),
            ("resolution", Text),
            ("resolved_at", Time),
            ("created_at", Time),
        ],
        replace: false,
    },
    Table {
        name: "blocks",
        key: "id",
        columns: &[
            ("id", Uuid),
            ("blocker_id", Uuid),
            ("blocked_id", Uuid),
            ("created_at", Time),
        ],
        replace: false,
    },
    Table {
        name: "banned_images",
        key: "sha256",
        columns: &[("sha256", Bytes), ("created_at", Time)],
        replace: false,
    },
    Table {
        name: "exports",
        key: "id",
        columns: &[
            ("id", Uuid),
            ("user_id", Uuid),
            ("status", Text),
            ("lease_until", Time),
            ("created_at", Time),
            ("expires_at", Time),
        ],
        replace: false,
    },
    Table {
        name: "moderation_audit",
        key: "id",
        columns: &[
            ("id", Uuid),
            ("moderator", Text),
            ("action", Text),
            ("target", Text),
            ("note", Text),
            ("created_at", Time),
        ],
        replace: false,
    },
];

impl Table {
    pub fn key_index(&self) -> usize {
        self.columns
            .iter()
            .position(|(c, _)| *c == self.key)
            .expect("the key is a column")
    }

    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[async_trait]
pub trait Transfer: Send + Sync {
    /// Up to `limit` rows with keys above `after`, in key order.
    async fn export_rows(
        &self,
        table: &'static Table,
        after: Option<Value>,
        limit: u32,
    ) -> StoreResult<Vec<Row>>;
    /// Inserts rows in one transaction, skipping (or, for `replace` tables,
    /// overwriting) rows whose key is already present.
    async fn import_rows(&self, table: &'static Table, rows: Vec<Row>) -> StoreResult<()>;
    async fn count_rows(&self, table: &'static Table) -> StoreResult<u64>;
    /// The largest key present, where a resumed copy continues.
    async fn last_key(&self, table: &'static Table) -> StoreResult<Option<Value>>;
    /// Before a copy fills the table, which is empty: sets aside what a bulk
    /// load is faster without (indexes maintained row by row), durably noted
    /// so that `restore_set_aside` rebuilds it, in this run or, after an
    /// interruption, the next. A backend without that gain sets nothing aside.
    async fn set_aside_for_load(&self, _table: &'static Table) -> StoreResult<()> {
        Ok(())
    }
    /// Rebuilds all that was set aside; once every row is copied.
    async fn restore_set_aside(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Whether anything is set aside: this database is the target of an
    /// unfinished copy, not to be served.
    async fn has_set_aside(&self) -> StoreResult<bool> {
        Ok(false)
    }
}
