//! `migrate`'s reads and writes of whole tables on PostgreSQL.

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Postgres, Row};

use super::PgStore;
use crate::StoreResult;
use crate::transfer::{Kind, Row as TransferRow, Table, Transfer, Value};
use domain::Timestamp;

/// The expression that reads a column as the type `read_value` expects.
fn select_expr(column: &str, kind: Kind) -> String {
    // A long rendering is set aside in a column of its own (migration 0019).
    if column == "rendered" {
        return "COALESCE(rendered, rendered_long) AS rendered".to_owned();
    }
    match kind {
        Kind::Int(_) => format!("{column}::bigint AS {column}"),
        Kind::Json => format!("{column}::text AS {column}"),
        _ => column.to_owned(),
    }
}

fn select_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(c, k)| select_expr(c, *k))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_value(row: &PgRow, i: usize, kind: Kind) -> sqlx::Result<Value> {
    let value = match kind {
        Kind::Uuid => row.try_get::<Option<uuid::Uuid>, _>(i)?.map(Value::Uuid),
        Kind::Text | Kind::Json => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
        Kind::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
        Kind::Int(_) => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
        Kind::Time => row.try_get::<Option<Timestamp>, _>(i)?.map(Value::Time),
    };
    Ok(value.unwrap_or(Value::Null))
}

fn read_row(table: &Table, row: &PgRow) -> sqlx::Result<TransferRow> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, k))| read_value(row, i, *k))
        .collect()
}

/// Appends `row` as one line of `COPY`'s text format: tab-separated, `\N`
/// for NULL, backslash escapes in text, `\\x…` (an escaped `\x`) for bytes.
fn copy_line(out: &mut String, row: TransferRow) {
    use std::fmt::Write;
    for (i, value) in row.into_iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match value {
            Value::Null => out.push_str("\\N"),
            Value::Uuid(u) => write!(out, "{u}").expect("writing to a String"),
            Value::Int(n) => write!(out, "{n}").expect("writing to a String"),
            Value::Time(t) => out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            Value::Bytes(b) => {
                out.push_str("\\\\x");
                out.push_str(&hex::encode(b));
            }
            Value::Text(t) => {
                for c in t.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out.push('\n');
}

/// Sends `rows` into `table` with one `COPY … FROM STDIN`.
async fn copy_in(
    conn: &mut sqlx::PgConnection,
    table: &str,
    columns: &str,
    rows: Vec<TransferRow>,
) -> sqlx::Result<()> {
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
        .await?;
    let mut text = String::new();
    for row in rows {
        copy_line(&mut text, row);
        if text.len() > 1 << 20 {
            copy.send(std::mem::take(&mut text).into_bytes()).await?;
        }
    }
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// Binds `value` with the Rust type matching `kind`, so NULLs are typed too.
fn bind<'q>(
    q: Query<'q, Postgres, PgArguments>,
    kind: Kind,
    value: Value,
) -> Query<'q, Postgres, PgArguments> {
    match (kind, value) {
        (Kind::Uuid, Value::Uuid(u)) => q.bind(Some(u)),
        (Kind::Uuid, _) => q.bind(None::<uuid::Uuid>),
        (Kind::Text | Kind::Json, Value::Text(s)) => q.bind(Some(s)),
        (Kind::Text | Kind::Json, _) => q.bind(None::<String>),
        (Kind::Bytes, Value::Bytes(b)) => q.bind(Some(b)),
        (Kind::Bytes, _) => q.bind(None::<Vec<u8>>),
        (Kind::Int(_), Value::Int(i)) => q.bind(Some(i)),
        (Kind::Int(_), _) => q.bind(None::<i64>),
        (Kind::Time, Value::Time(t)) => q.bind(Some(t)),
        (Kind::Time, _) => q.bind(None::<Timestamp>),
    }
}

#[async_trait]
impl Transfer for PgStore {
    async fn export_rows(
        &self,
        table: &'static Table,
        after: Option<Value>,
        limit: u32,
    ) -> StoreResult<Vec<TransferRow>> {
        let (cols, t, k) = (select_list(table), table.name, table.key);
        let key_kind = table.columns[table.key_index()].1;
        let rows = match after {
            Some(after) => {
                let sql = format!("SELECT {cols} FROM {t} WHERE {k} > $1 ORDER BY {k} LIMIT $2");
                bind(sqlx::query(AssertSqlSafe(sql)), key_kind, after)
                    .bind(i64::from(limit))
                    .try_map(|r: PgRow| read_row(table, &r))
                    .fetch_all(&mut *self.conn().await?)
                    .await?
            }
            None => {
                let sql = format!("SELECT {cols} FROM {t} ORDER BY {k} LIMIT $1");
                sqlx::query(AssertSqlSafe(sql))
                    .bind(i64::from(limit))
                    .try_map(|r: PgRow| read_row(table, &r))
                    .fetch_all(&mut *self.conn().await?)
                    .await?
            }
        };
        Ok(rows)
    }

    /// Rows go in with `COPY` (one round trip for the batch, parsed by the
    /// server in bulk). A table keyed by UUID or bytes is copied in key
    /// order after the largest key the target holds (`migrate`), which both
    /// backends order alike (bytewise), so none of its rows can be there
    /// already: they are copied straight into the table. Any other goes
    /// through a temporary table, then one `INSERT … SELECT` applies the
    /// conflict rule `COPY` cannot: a copy run again skips (or, for
    /// `replace` tables, overwrites) what is already there.
    async fn import_rows(&self, table: &'static Table, rows: Vec<TransferRow>) -> StoreResult<()> {
        let key_kind = table.columns[table.key_index()].1;
        if !table.replace && matches!(key_kind, Kind::Uuid | Kind::Bytes) {
            let mut conn = self.conn().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            copy_in(&mut tx, table.name, &table.column_list(), rows).await?;
            tx.commit().await?;
            return Ok(());
        }
        let conflict = if table.replace {
            let sets: Vec<String> = table
                .columns
                .iter()
                .map(|(c, _)| format!("{c} = excluded.{c}"))
                .collect();
            format!("DO UPDATE SET {}", sets.join(", "))
        } else {
            "DO NOTHING".to_owned()
        };
        let (name, columns) = (table.name, table.column_list());
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // A value compressed on its way through `incoming` would be inserted
        // compressed as it is, whatever the target table's own setting (see
        // migration 0008), so `incoming` compresses nothing a page can hold.
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TEMP TABLE incoming (LIKE {name}) WITH (toast_tuple_target = 8160) ON COMMIT DROP"
        )))
        .execute(&mut *tx)
        .await?;
        copy_in(&mut tx, "incoming", &columns, rows).await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {name} ({columns}) SELECT {columns} FROM incoming \
             ORDER BY {key} ON CONFLICT ({key}) {conflict}",
            key = table.key
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets aside the table's indexes that back no constraint (a primary
    /// key, a unique constraint or another table's foreign key needs its
    /// index; the primary key also serves the copy's conflict rule) and its
    /// foreign keys, in one transaction with the notes that rebuild them.
    async fn set_aside_for_load(&self, table: &'static Table) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let name = table.name;
        sqlx::query(AssertSqlSafe(format!(
            "LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"
        )))
        .execute(&mut *tx)
        .await?;
        let found: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT i.indexname::text, 'index', i.indexdef,                     format('DROP INDEX %I.%I', i.schemaname, i.indexname)              FROM pg_indexes i              WHERE i.schemaname = current_schema() AND i.tablename = $1                AND NOT EXISTS (SELECT 1 FROM pg_constraint c                    WHERE c.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)              UNION ALL              SELECT c.conname::text, 'foreign key',                     format('ALTER TABLE %I ADD CONSTRAINT %I %s', $1, c.conname, pg_get_constraintdef(c.oid)),                     format('ALTER TABLE %I DROP CONSTRAINT %I', $1, c.conname)              FROM pg_constraint c              WHERE c.conrelid = format('%I.%I', current_schema(), $1)::regclass AND c.contype = 'f'",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        for (object, kind, restore, drop) in found {
            sqlx::query(
                "INSERT INTO migrate_set_aside (table_name, name, kind, restore)                  VALUES ($1, $2, $3, $4)",
            )
            .bind(name)
            .bind(&object)
            .bind(&kind)
            .bind(&restore)
            .execute(&mut *tx)
            .await?;
            sqlx::query(AssertSqlSafe(drop)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Indexes first, then foreign keys: each key is then checked once, by
    /// one join over the whole table, instead of once per row inserted.
    async fn restore_set_aside(&self) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let notes: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT table_name, name, restore FROM migrate_set_aside              ORDER BY kind = 'foreign key', table_name, name",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut tables: Vec<String> = notes.iter().map(|(t, ..)| t.clone()).collect();
        tables.sort();
        tables.dedup();
        for (table, name, restore) in notes {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            // An index sorts in memory up to this much, instead of in many
            // runs on disk (for this transaction only).
            sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
                .execute(&mut *tx)
                .await?;
            sqlx::query(AssertSqlSafe(restore))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM migrate_set_aside WHERE table_name = $1 AND name = $2")
                .bind(&table)
                .bind(&name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        // Fresh statistics for the planner, which would otherwise plan the
        // first statements on the loaded tables blind, until autovacuum
        // gets to them; and the visibility map and hint bits set at once,
        // not by the first readers: index-only scans (the feed's, migration
        // 0019) then read no table page, and no reader writes one.
        for table in tables {
            sqlx::query(AssertSqlSafe(format!("VACUUM (ANALYZE) {table}")))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    async fn has_set_aside(&self) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM migrate_set_aside)")
                .fetch_one(&mut *self.conn().await?)
                .await?,
        )
    }

    async fn count_rows(&self, table: &'static Table) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.name
        )))
        .fetch_one(&mut *self.conn().await?)
        .await?;
        Ok(n as u64)
    }

    async fn last_key(&self, table: &'static Table) -> StoreResult<Option<Value>> {
        let kind = table.columns[table.key_index()].1;
        let sql = format!(
            "SELECT {} FROM {t} ORDER BY {k} DESC LIMIT 1",
            select_expr(table.key, kind),
            t = table.name,
            k = table.key
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .try_map(|r: PgRow| read_value(&r, 0, kind))
            .fetch_optional(&mut *self.conn().await?)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_lines_escape_what_the_text_format_reserves() {
        let mut out = String::new();
        copy_line(
            &mut out,
            vec![
                Value::Text("a\tb\nc\\d\re".into()),
                Value::Null,
                Value::Bytes(vec![0, 0xff]),
                Value::Int(-7),
                Value::Uuid(uuid::Uuid::from_u128(1)),
                Value::Time(domain::from_millis(1_700_000_000_123)),
            ],
        );
        assert_eq!(
            out,
            "a\\tb\\nc\\\\d\\re\t\\N\t\\\\x00ff\t-7\t00000000-0000-0000-0000-000000000001\t\
             2023-11-14T22:13:20.123000Z\n"
        );
    }
}
