//! The catalog in SQLite. Calls are rare (operator actions, show loads), so one connection
//! behind a mutex, used from the blocking pool, is enough.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nightmarket_domain::{
    Dong, Millis, Product, ProductGroup, ProductId, SellerId, ShowId, ShowStatus, Stars,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::catalog::{Catalog, LineupRow, SellerRow, ShowRow, StoreError};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sellers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    district    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    id              TEXT PRIMARY KEY,
    seller_id       TEXT NOT NULL REFERENCES sellers(id),
    name            TEXT NOT NULL,
    product_group   TEXT NOT NULL,
    stars           INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
    district        TEXT NOT NULL,
    commune         TEXT NOT NULL,
    producer        TEXT NOT NULL,
    list_price      INTEGER NOT NULL CHECK (list_price > 0),
    origin_document TEXT NOT NULL,
    quality_label   TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shows (
    id          TEXT PRIMARY KEY,
    seller_id   TEXT NOT NULL REFERENCES sellers(id),
    title       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('scheduled', 'live', 'closed')),
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS show_lineup (
    show_id      TEXT NOT NULL REFERENCES shows(id),
    position     INTEGER NOT NULL,
    product_id   TEXT NOT NULL REFERENCES products(id),
    stock        INTEGER NOT NULL CHECK (stock >= 0),
    buyer_limit  INTEGER NOT NULL CHECK (buyer_limit >= 1),
    proof        TEXT NOT NULL,
    PRIMARY KEY (show_id, position),
    UNIQUE (show_id, product_id)
);
"#;

/// The SQLite catalog (`catalog.sqlite` under the data directory).
#[derive(Clone)]
pub struct SqliteCatalog {
    conn: Arc<Mutex<Connection>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog file and its schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = super::open(path).map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| backend("catalog connection poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(backend)?
    }
}

fn conflict_or_backend(e: rusqlite::Error, what: &str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(err, _)
            if err.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(what.to_owned())
        }
        other => backend(other),
    }
}

fn parse_status(s: &str) -> Result<ShowStatus, StoreError> {
    match s {
        "scheduled" => Ok(ShowStatus::Scheduled),
        "live" => Ok(ShowStatus::Live),
        "closed" => Ok(ShowStatus::Closed),
        other => Err(corrupt(format!("unknown show status {other:?}"))),
    }
}

fn load_lineup(conn: &Connection, show_id: &str) -> Result<Vec<LineupRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT proof, stock, buyer_limit FROM show_lineup WHERE show_id = ?1 ORDER BY position",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![show_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
            ))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (proof, stock, buyer_limit) = row.map_err(backend)?;
        let product: Product = serde_json::from_str(&proof).map_err(corrupt)?;
        out.push(LineupRow {
            product,
            stock,
            buyer_limit,
        });
    }
    Ok(out)
}

type ShowHead = (String, String, String, String, i64);

fn show_from_head(conn: &Connection, head: ShowHead) -> Result<ShowRow, StoreError> {
    let (id, seller_id, title, status, created_at) = head;
    let lineup = load_lineup(conn, &id)?;
    Ok(ShowRow {
        id: ShowId::parse(id).map_err(corrupt)?,
        seller_id: SellerId::parse(seller_id).map_err(corrupt)?,
        title,
        status: parse_status(&status)?,
        created_at,
        lineup,
    })
}

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn create_seller(&self, seller: &SellerRow) -> Result<(), StoreError> {
        let s = seller.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO sellers (id, name, kind, district, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.id.as_str(), s.name, s.kind, s.district, s.created_at],
            )
            .map_err(|e| conflict_or_backend(e, &format!("seller {}", s.id)))?;
            Ok(())
        })
        .await
    }

    async fn seller(&self, id: &SellerId) -> Result<Option<SellerRow>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            c.query_row(
                "SELECT name, kind, district, created_at FROM sellers WHERE id = ?1",
                params![id.as_str()],
                |r| {
                    Ok(SellerRow {
                        id: id.clone(),
                        name: r.get(0)?,
                        kind: r.get(1)?,
                        district: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn create_product(&self, p: &Product, created_at: Millis) -> Result<(), StoreError> {
        let p = p.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO products (id, seller_id, name, product_group, stars, district, commune,
                     producer, list_price, origin_document, quality_label, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    p.id.as_str(),
                    p.seller_id.as_str(),
                    p.name,
                    p.group.as_str(),
                    p.stars.get(),
                    p.district,
                    p.commune,
                    p.producer,
                    p.list_price.get(),
                    p.origin_document,
                    p.quality_label,
                    created_at
                ],
            )
            .map_err(|e| conflict_or_backend(e, &format!("product {}", p.id)))?;
            Ok(())
        })
        .await
    }

    async fn product(&self, id: &ProductId) -> Result<Option<(Product, Millis)>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            let row = c
                .query_row(
                    "SELECT seller_id, name, product_group, stars, district, commune, producer,
                            list_price, origin_document, quality_label, created_at
                     FROM products WHERE id = ?1",
                    params![id.as_str()],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, i64>(7)?,
                            r.get::<_, String>(8)?,
                            r.get::<_, String>(9)?,
                            r.get::<_, i64>(10)?,
                        ))
                    },
                )
                .optional()
                .map_err(backend)?;
            let Some(r) = row else { return Ok(None) };
            let product = Product {
                id: id.clone(),
                seller_id: SellerId::parse(r.0).map_err(corrupt)?,
                name: r.1,
                group: ProductGroup::parse(&r.2).map_err(corrupt)?,
                stars: Stars::parse(r.3).map_err(corrupt)?,
                district: r.4,
                commune: r.5,
                producer: r.6,
                list_price: Dong::parse(r.7).map_err(corrupt)?,
                origin_document: r.8,
                quality_label: r.9,
            };
            Ok(Some((product, r.10)))
        })
        .await
    }

    async fn create_show(&self, show: &ShowRow) -> Result<(), StoreError> {
        let show = show.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            tx.execute(
                "INSERT INTO shows (id, seller_id, title, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    show.id.as_str(),
                    show.seller_id.as_str(),
                    show.title,
                    show.status.as_str(),
                    show.created_at
                ],
            )
            .map_err(|e| conflict_or_backend(e, &format!("show {}", show.id)))?;
            for (pos, item) in show.lineup.iter().enumerate() {
                let proof = serde_json::to_string(&item.product).map_err(backend)?;
                tx.execute(
                    "INSERT INTO show_lineup (show_id, position, product_id, stock, buyer_limit, proof)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        show.id.as_str(),
                        pos as i64,
                        item.product.id.as_str(),
                        item.stock,
                        item.buyer_limit,
                        proof
                    ],
                )
                .map_err(|e| {
                    conflict_or_backend(e, &format!("lineup entry for product {}", item.product.id))
                })?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn show(&self, id: &ShowId) -> Result<Option<ShowRow>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            let head: Option<ShowHead> = c
                .query_row(
                    "SELECT id, seller_id, title, status, created_at FROM shows WHERE id = ?1",
                    params![id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(backend)?;
            head.map(|h| show_from_head(c, h)).transpose()
        })
        .await
    }

    async fn shows(&self) -> Result<Vec<ShowRow>, StoreError> {
        self.with(move |c| {
            let heads: Vec<ShowHead> = {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, seller_id, title, status, created_at FROM shows
                         ORDER BY created_at DESC, id",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            heads.into_iter().map(|h| show_from_head(c, h)).collect()
        })
        .await
    }

    async fn set_show_status(
        &self,
        id: &ShowId,
        from: ShowStatus,
        to: ShowStatus,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE shows SET status = ?3 WHERE id = ?1 AND status = ?2",
                    params![id.as_str(), from.as_str(), to.as_str()],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }
}
