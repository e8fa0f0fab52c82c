//! `migrate`'s reads and writes of whole tables on SQLite.

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{OptionalExtension, ToSql, params_from_iter};

use super::SqliteStore;
use crate::StoreResult;
use crate::transfer::{Kind, Row, Table, Transfer, Value};
use domain::from_millis;

fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Uuid(u) => SqlValue::Blob(u.as_bytes().to_vec()),
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Bytes(b) => SqlValue::Blob(b.clone()),
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Time(t) => SqlValue::Integer(t.timestamp_millis()),
    }
}

struct Param(SqlValue);

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::from(&self.0)))
    }
}

fn from_sql(kind: Kind, v: ValueRef<'_>) -> rusqlite::Result<Value> {
    let bad = || rusqlite::Error::InvalidColumnType(0, format!("{kind:?}"), v.data_type());
    Ok(match (kind, v) {
        (_, ValueRef::Null) => Value::Null,
        (Kind::Uuid, ValueRef::Blob(b)) => {
            Value::Uuid(uuid::Uuid::from_slice(b).map_err(|_| bad())?)
        }
        (Kind::Text | Kind::Json, ValueRef::Text(t)) => {
            Value::Text(String::from_utf8_lossy(t).into_owned())
        }
        (Kind::Bytes, ValueRef::Blob(b)) => Value::Bytes(b.to_vec()),
        (Kind::Int(_), ValueRef::Integer(i)) => Value::Int(i),
        (Kind::Time, ValueRef::Integer(i)) => Value::Time(from_millis(i)),
        _ => return Err(bad()),
    })
}

fn read_row(table: &Table, row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| from_sql(*kind, row.get_ref(i)?))
        .collect()
}

#[async_trait]
impl Transfer for SqliteStore {
    async fn export_rows(
        &self,
        table: &'static Table,
        after: Option<Value>,
        limit: u32,
    ) -> StoreResult<Vec<Row>> {
        self.read(move |conn| {
            let cols = table.column_list();
            let (t, k) = (table.name, table.key);
            let rows = match after {
                Some(after) => conn
                    .prepare(&format!(
                        "SELECT {cols} FROM {t} WHERE {k} > ?1 ORDER BY {k} LIMIT ?2"
                    ))?
                    .query_map((Param(to_sql(&after)), limit), |r| read_row(table, r))?
                    .collect::<Result<Vec<_>, _>>()?,
                None => conn
                    .prepare(&format!("SELECT {cols} FROM {t} ORDER BY {k} LIMIT ?1"))?
                    .query_map([limit], |r| read_row(table, r))?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            Ok(rows)
        })
        .await
    }

    async fn import_rows(&self, table: &'static Table, rows: Vec<Row>) -> StoreResult<()> {
        self.write(move |tx| {
            let placeholders = (1..=table.columns.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let verb = if table.replace {
                "INSERT OR REPLACE"
            } else {
                "INSERT OR IGNORE"
            };
            let sql = format!(
                "{verb} INTO {} ({}) VALUES ({placeholders})",
                table.name,
                table.column_list()
            );
            let mut stmt = tx.prepare(&sql)?;
            for row in rows {
                stmt.execute(params_from_iter(row.iter().map(|v| Param(to_sql(v)))))?;
            }
            Ok(())
        })
        .await
    }

    async fn count_rows(&self, table: &'static Table) -> StoreResult<u64> {
        self.read(move |conn| {
            let n: i64 =
                conn.query_row(&format!("SELECT count(*) FROM {}", table.name), [], |r| {
                    r.get(0)
                })?;
            Ok(n as u64)
        })
        .await
    }

    async fn last_key(&self, table: &'static Table) -> StoreResult<Option<Value>> {
        self.read(move |conn| {
            let kind = table.columns[table.key_index()].1;
            let sql = format!(
                "SELECT {k} FROM {t} ORDER BY {k} DESC LIMIT 1",
                k = table.key,
                t = table.name
            );
            Ok(conn
                .query_row(&sql, [], |r| from_sql(kind, r.get_ref(0)?))
                .optional()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rusqlite_migration::{M, Migrations};

    use crate::transfer::TABLES;

    /// `migrate` copies what TABLES lists; a column added by a migration but not
    /// listed there is silently lost in every copy (as `users.event_seq` once was).
    #[test]
    fn the_copy_covers_every_table_and_column_of_the_schema() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        Migrations::new(super::super::MIGRATIONS.iter().map(|s| M::up(s)).collect())
            .to_latest(&mut conn)
            .unwrap();
        let names: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let listed: BTreeSet<&str> = TABLES.iter().map(|t| t.name).collect();
        assert_eq!(
            names.iter().map(String::as_str).collect::<BTreeSet<_>>(),
            listed,
            "tables in the schema vs. tables migrate copies"
        );
        for table in TABLES {
            let columns: BTreeSet<String> = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{}')",
                    table.name
                ))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let copied: BTreeSet<String> =
                table.columns.iter().map(|(c, _)| (*c).to_owned()).collect();
            assert_eq!(columns, copied, "columns of {}", table.name);
        }
    }
}
