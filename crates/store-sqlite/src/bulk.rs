//! Multi-row `INSERT … VALUES (row), (row), …`: many rows in few statements, each statement
//! size prepared once and cached by the connection.

use crate::error::db;
use assay_store::Result;
use sqlx::AssertSqlSafe;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection};
use std::sync::{Arc, OnceLock};

pub(crate) type Query = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

/// An INSERT of `N` statement sizes (rows per statement, largest first, the last 1): a run of
/// rows goes in as few statements as these sizes allow.
pub(crate) struct BulkInsert<const N: usize> {
    head: &'static str,
    row: &'static str,
    sizes: [usize; N],
    sql: [OnceLock<Arc<str>>; N],
}

impl<const N: usize> BulkInsert<N> {
    /// `head`: `INSERT INTO t (cols) VALUES`; `row`: one row's placeholders, `(?, ?, …)`.
    pub(crate) const fn new(head: &'static str, row: &'static str, sizes: [usize; N]) -> Self {
        assert!(
            N > 0 && sizes[N - 1] == 1,
            "the smallest statement inserts one row"
        );
        BulkInsert {
            head,
            row,
            sizes,
            sql: [const { OnceLock::new() }; N],
        }
    }

    fn sql(&self, i: usize) -> Arc<str> {
        self.sql[i]
            .get_or_init(|| {
                format!("{} {}", self.head, vec![self.row; self.sizes[i]].join(", ")).into()
            })
            .clone()
    }

    /// Inserts every item, binding each with `bind`.
    pub(crate) async fn run<T>(
        &self,
        conn: &mut SqliteConnection,
        mut items: &[T],
        bind: impl Fn(Query, &T) -> Query,
    ) -> Result<()> {
        while !items.is_empty() {
            let i = self
                .sizes
                .iter()
                .position(|&n| n <= items.len())
                .unwrap_or(N - 1);
            let (now, rest) = items.split_at(self.sizes[i]);
            let mut q = sqlx::query(AssertSqlSafe(self.sql(i)));
            for item in now {
                q = bind(q, item);
            }
            q.execute(&mut *conn).await.map_err(db)?;
            items = rest;
        }
        Ok(())
    }
}
