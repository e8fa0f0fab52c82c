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

/// The placeholder for parameter `n` of a column, cast to the column's type.
fn placeholder(n: usize, kind: Kind) -> String {
    match kind {
        Kind::Int(pg) => format!("${n}::{pg}"),
        Kind::Json => format!("${n}::jsonb"),
        _ => format!("${n}"),
    }
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
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("SELECT {cols} FROM {t} ORDER BY {k} LIMIT $1");
                sqlx::query(AssertSqlSafe(sql))
                    .bind(i64::from(limit))
                    .try_map(|r: PgRow| read_row(table, &r))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows)
    }

    async fn import_rows(&self, table: &'static Table, rows: Vec<TransferRow>) -> StoreResult<()> {
        let placeholders: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, k))| placeholder(i + 1, *k))
            .collect();
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
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {conflict}",
            table.name,
            table.column_list(),
            placeholders.join(", "),
            table.key
        );
        let mut tx = self.pool.begin().await?;
        for row in rows {
            let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
            for ((_, kind), value) in table.columns.iter().zip(row) {
                q = bind(q, *kind, value);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn count_rows(&self, table: &'static Table) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.name
        )))
        .fetch_one(&self.pool)
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
            .fetch_optional(&self.pool)
            .await?)
    }
}
