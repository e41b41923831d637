//! Keyset paging of the store's listings: a listing is ordered by a stable, unique key (a few
//! columns ending in the row's id), and a page is the rows past the last key of the previous
//! one. Unlike `OFFSET`, a row inserted or removed between two page reads neither shifts an
//! existing row onto a second page nor past both.
//!
//! The key travels to the client and back (inside the HTTP layer's opaque cursor), so it is
//! checked against the listing's key columns before it reaches SQL: a key of another shape is
//! [`StoreError::Refused`] with [`BAD_CURSOR`].

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::sql::Value;

/// Most rows one page holds, whatever the caller asks for.
pub const MAX_PAGE_SIZE: usize = 1_000;

/// The refusal code of a key that does not fit the listing (see [`StoreError::Refused`]).
pub const BAD_CURSOR: &str = "bad_cursor";

/// One column's value in a row's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyPart {
    Int(i64),
    Text(String),
}

/// A row's position in its listing: its key columns' values, in order.
pub type Key = Vec<KeyPart>;

/// Which page of a listing: the rows after `after` (from the start when none), at most `limit`
/// (clamped to 1..=[`MAX_PAGE_SIZE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    pub after: Option<Key>,
    pub limit: usize,
}

impl Keyset {
    /// The first page of up to `limit` rows.
    pub fn first(limit: usize) -> Self {
        Self { after: None, limit }
    }

    /// The whole listing in one page, for callers inside the server that need every row of a
    /// listing whose size is bounded elsewhere.
    pub fn everything() -> Self {
        Self::first(MAX_PAGE_SIZE)
    }

    fn limit(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_SIZE)
    }
}

/// One page of rows, and the key to pass as `after` for the next page (none on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<Key>,
}

impl<T> Paged<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// Every row of a listing, read page after page of [`MAX_PAGE_SIZE`] by `read`: for callers
/// that need a whole listing whose size is bounded elsewhere (a night's commitments, a
/// market's exceptions).
pub async fn every<T, F, Fut>(mut read: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(Keyset) -> Fut,
    Fut: std::future::Future<Output = Result<Paged<T>, StoreError>>,
{
    let mut all = Vec::new();
    let mut page = Keyset::everything();
    loop {
        let got = read(page.clone()).await?;
        all.extend(got.items);
        match got.next {
            Some(next) => page.after = Some(next),
            None => return Ok(all),
        }
    }
}

/// What a key column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Text,
}

/// A listing's order: its key columns (the last one unique), all ascending or all descending,
/// so that one row-value comparison, supported alike by SQLite and PostgreSQL, finds the rows
/// after a key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Order {
    pub columns: &'static [(&'static str, Kind)],
    pub descending: bool,
}

impl Order {
    pub const fn asc(columns: &'static [(&'static str, Kind)]) -> Self {
        Self {
            columns,
            descending: false,
        }
    }

    pub const fn desc(columns: &'static [(&'static str, Kind)]) -> Self {
        Self {
            columns,
            descending: true,
        }
    }

    /// The condition that keeps the rows after `page.after` (`None` for the first page), its
    /// parameters numbered from `$first`, and the `ORDER BY .. LIMIT ..` to append, which asks
    /// for one row more than the page so the page knows whether another follows.
    pub fn clause(
        &self,
        page: &Keyset,
        first: usize,
    ) -> Result<(Option<String>, String, Vec<Value>), StoreError> {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        let dir = if self.descending { "DESC" } else { "ASC" };
        let mut params = Vec::new();
        let condition = match &page.after {
            None => None,
            Some(key) => {
                if key.len() != self.columns.len() {
                    return Err(bad_cursor());
                }
                for (part, (_, kind)) in key.iter().zip(self.columns) {
                    params.push(match (part, kind) {
                        (KeyPart::Int(v), Kind::Int) => Value::Int(*v),
                        (KeyPart::Text(v), Kind::Text) => Value::Text(v.clone()),
                        _ => return Err(bad_cursor()),
                    });
                }
                let marks: Vec<String> = (first..first + key.len())
                    .map(|i| format!("${i}"))
                    .collect();
                let op = if self.descending { "<" } else { ">" };
                Some(format!(
                    "({}) {op} ({})",
                    names.join(", "),
                    marks.join(", ")
                ))
            }
        };
        params.push(Value::Int(page.limit() as i64 + 1));
        let order = names
            .iter()
            .map(|n| format!("{n} {dir}"))
            .collect::<Vec<_>>()
            .join(", ");
        let tail = format!("ORDER BY {order} LIMIT ${}", first + params.len() - 1);
        Ok((condition, tail, params))
    }
}

/// Cuts the rows read with [`Order::clause`] (one more than the page) to the page, keyed by
/// `key` (the values of the listing's key columns).
pub fn paged<T>(mut rows: Vec<T>, page: &Keyset, key: impl Fn(&T) -> Key) -> Paged<T> {
    let limit = page.limit();
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(key)
    } else {
        None
    };
    Paged { items: rows, next }
}

pub(crate) fn bad_cursor() -> StoreError {
    StoreError::Refused {
        code: BAD_CURSOR,
        message: "cursor: not a position in this list".to_owned(),
    }
}

impl crate::Store {
    /// One page of `SELECT .. FROM ..` (`select`), filtered by `filter` (its parameters
    /// `params`, numbered from `$1`) and ordered by `order`; `row` reads a row, `key` gives a
    /// read row's position.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn query_page<T>(
        &self,
        select: &str,
        filter: Option<&str>,
        mut params: Vec<Value>,
        order: Order,
        page: &Keyset,
        row: impl Fn(&crate::sql::Row) -> Result<T, StoreError>,
        key: impl Fn(&T) -> Key,
    ) -> Result<Paged<T>, StoreError> {
        let (after, tail, more) = order.clause(page, params.len() + 1)?;
        params.extend(more);
        let conditions: Vec<&str> = filter.into_iter().chain(after.as_deref()).collect();
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let rows = self
            .engine
            .query(&format!("{select} {clause} {tail}"), params)
            .await?;
        let items = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
        Ok(paged(items, page, key))
    }
}
