//! The store's catalog: sellers, products (with their OCOP proof) and shows with their lineups.

use jiff::civil::Date;
use nightmarket_domain::{
    Dong, MarketId, Millis, Product, ProductGroup, ProductId, SellerId, ShowId, ShowStatus, Stars,
};

use std::collections::HashMap;

use crate::orders::{MAX_ORDERS_PER_QUERY, placeholders};
use crate::page::{Key, KeyPart, Keyset, Kind, Order, Paged};
use crate::params;
use crate::sql::{Row, SqlError, Step};
use crate::{Store, StoreError, corrupt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerRow {
    pub id: SellerId,
    pub name: String,
    /// `cooperative`, `enterprise` or `household`.
    pub kind: String,
    pub district: String,
    pub created_at: Millis,
}

/// One lineup entry as stored: the product's proof is a snapshot taken when the show was
/// scheduled, so the pin shows exactly what was admitted even if the catalog entry changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineupRow {
    pub product: Product,
    pub stock: u32,
    pub buyer_limit: u32,
}

/// Where a show sits in the market's calendar. Absent for ad-hoc shows (trials, the demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowSchedule {
    pub market_id: MarketId,
    /// The night's identity: its originally scheduled local date.
    pub night_date: Date,
    pub slot_start: Millis,
    pub slot_end: Millis,
    /// Where the stream plays: a Facebook or TikTok live link, or the platform's own player.
    pub stream_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowRow {
    pub id: ShowId,
    pub seller_id: SellerId,
    pub title: String,
    pub status: ShowStatus,
    pub created_at: Millis,
    pub lineup: Vec<LineupRow>,
    pub schedule: Option<ShowSchedule>,
    pub live_at: Option<Millis>,
    pub closed_at: Option<Millis>,
}

pub(crate) fn parse_status(s: &str) -> Result<ShowStatus, StoreError> {
    match s {
        "scheduled" => Ok(ShowStatus::Scheduled),
        "live" => Ok(ShowStatus::Live),
        "closed" => Ok(ShowStatus::Closed),
        other => Err(corrupt(format!("unknown show status {other:?}"))),
    }
}

pub(crate) fn parse_date(s: &str) -> Result<Date, StoreError> {
    s.parse::<Date>()
        .map_err(|e| corrupt(format!("date {s:?}: {e}")))
}

const PRODUCT_COLUMNS: &str = "id, seller_id, name, product_group, stars, district, commune, \
     producer, list_price, origin_document, quality_label, created_at, documents";

fn product_from(r: &Row) -> Result<(Product, Millis), StoreError> {
    let product = Product {
        id: ProductId::parse(r.text(0)?).map_err(corrupt)?,
        seller_id: SellerId::parse(r.text(1)?).map_err(corrupt)?,
        name: r.text(2)?,
        group: ProductGroup::parse(&r.text(3)?).map_err(corrupt)?,
        stars: Stars::parse(r.int(4)?).map_err(corrupt)?,
        district: r.text(5)?,
        commune: r.text(6)?,
        producer: r.text(7)?,
        list_price: Dong::parse(r.int(8)?).map_err(corrupt)?,
        origin_document: r.text(9)?,
        quality_label: r.text(10)?,
        documents: serde_json::from_str(&r.text(12)?).map_err(corrupt)?,
    };
    Ok((product, r.int(11)?))
}

const SHOW_COLUMNS: &str = "id, seller_id, title, status, created_at, market_id, night_date, \
     slot_start, slot_end, stream_url, live_at, closed_at";

impl Store {
    pub async fn create_seller(&self, s: &SellerRow) -> Result<(), StoreError> {
        self.engine
            .execute(
                "INSERT INTO sellers (id, name, kind, district, created_at) VALUES ($1, $2, $3, $4, $5)",
                params![s.id.as_str(), &s.name, &s.kind, &s.district, s.created_at],
            )
            .await
            .map_err(|e| conflict(e, format!("seller {}", s.id)))?;
        Ok(())
    }

    pub async fn seller(&self, id: &SellerId) -> Result<Option<SellerRow>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT name, kind, district, created_at FROM sellers WHERE id = $1",
                params![id.as_str()],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(SellerRow {
                    id: id.clone(),
                    name: r.text(0)?,
                    kind: r.text(1)?,
                    district: r.text(2)?,
                    created_at: r.int(3)?,
                })
            })
            .transpose()
    }

    /// A page of the sellers, oldest first (the operator console's list; a market has
    /// hundreds).
    pub async fn sellers(&self, page: &Keyset) -> Result<Paged<SellerRow>, StoreError> {
        self.query_page(
            "SELECT id, name, kind, district, created_at FROM sellers",
            None,
            params![],
            CREATED_ORDER,
            page,
            |r| {
                Ok(SellerRow {
                    id: SellerId::parse(r.text(0)?).map_err(corrupt)?,
                    name: r.text(1)?,
                    kind: r.text(2)?,
                    district: r.text(3)?,
                    created_at: r.int(4)?,
                })
            },
            |s| created_key(s.created_at, s.id.as_str()),
        )
        .await
    }

    pub async fn create_product(&self, p: &Product, created_at: Millis) -> Result<(), StoreError> {
        self.engine
            .execute(
                "INSERT INTO products (id, seller_id, name, product_group, stars, district, commune,
                     producer, list_price, origin_document, quality_label, created_at, documents)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                params![
                    p.id.as_str(),
                    p.seller_id.as_str(),
                    &p.name,
                    p.group.as_str(),
                    i64::from(p.stars.get()),
                    &p.district,
                    &p.commune,
                    &p.producer,
                    p.list_price.get(),
                    &p.origin_document,
                    &p.quality_label,
                    created_at,
                    serde_json::to_string(&p.documents).map_err(corrupt)?,
                ],
            )
            .await
            .map_err(|e| conflict(e, format!("product {}", p.id)))?;
        Ok(())
    }

    pub async fn product(&self, id: &ProductId) -> Result<Option<(Product, Millis)>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"),
                params![id.as_str()],
            )
            .await?;
        rows.first().map(product_from).transpose()
    }

    /// The products of `ids` that exist, by id, with their creation instants: one query per
    /// [`MAX_ORDERS_PER_QUERY`] ids, so a lineup is checked in one round trip, not one per
    /// product. Ids that name no product are absent from the answer.
    pub async fn products(
        &self,
        ids: &[ProductId],
    ) -> Result<HashMap<ProductId, (Product, Millis)>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_ORDERS_PER_QUERY) {
            let sql = format!(
                "SELECT {PRODUCT_COLUMNS} FROM products WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let params = chunk.iter().map(|p| crate::sql::Value::from(p.as_str()));
            for r in &self.engine.query(&sql, params.collect()).await? {
                let (product, at) = product_from(r)?;
                out.insert(product.id.clone(), (product, at));
            }
        }
        Ok(out)
    }

    /// A page of a seller's products, in id order.
    pub async fn products_of(
        &self,
        seller: &SellerId,
        page: &Keyset,
    ) -> Result<Paged<(Product, Millis)>, StoreError> {
        self.query_page(
            &format!("SELECT {PRODUCT_COLUMNS} FROM products"),
            Some("seller_id = $1"),
            params![seller.as_str()],
            ID_ORDER,
            page,
            product_from,
            |(p, _)| vec![KeyPart::Text(p.id.to_string())],
        )
        .await
    }

    /// Creates an ad-hoc show (no market, no slot) with its lineup, in one transaction.
    pub async fn create_show(&self, show: &ShowRow) -> Result<(), StoreError> {
        let steps = show_insert_steps(show)?;
        self.engine
            .transaction(steps)
            .await
            .map_err(|e| conflict(e, format!("show {}", show.id)))?;
        Ok(())
    }

    pub async fn show(&self, id: &ShowId) -> Result<Option<ShowRow>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!("SELECT {SHOW_COLUMNS} FROM shows WHERE id = $1"),
                params![id.as_str()],
            )
            .await?;
        Ok(self.with_lineups(rows).await?.pop())
    }

    /// A page of every show, newest first.
    pub async fn shows(&self, page: &Keyset) -> Result<Paged<ShowRow>, StoreError> {
        self.shows_page(None, params![], NEWEST_ORDER, page).await
    }

    /// A page of the shows matching `filter` in `order`, with their lineups (read for the whole
    /// page at once).
    pub(crate) async fn shows_page(
        &self,
        filter: Option<&str>,
        params: Vec<crate::sql::Value>,
        order: Order,
        page: &Keyset,
    ) -> Result<Paged<ShowRow>, StoreError> {
        let page = self
            .query_page(
                &format!("SELECT {SHOW_COLUMNS} FROM shows"),
                filter,
                params,
                order,
                page,
                |r| Ok(r.clone()),
                |r| show_key(order, r),
            )
            .await?;
        Ok(Paged {
            items: self.with_lineups(page.items).await?,
            next: page.next,
        })
    }

    pub(crate) async fn shows_where(
        &self,
        filter: &str,
        params: Vec<crate::sql::Value>,
        order: &str,
    ) -> Result<Vec<ShowRow>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!("SELECT {SHOW_COLUMNS} FROM shows WHERE {filter} ORDER BY {order}"),
                params,
            )
            .await?;
        self.with_lineups(rows).await
    }

    /// Shows read with [`SHOW_COLUMNS`], with their lineups: one query per
    /// [`MAX_ORDERS_PER_QUERY`] shows, not one per show.
    async fn with_lineups(&self, rows: Vec<Row>) -> Result<Vec<ShowRow>, StoreError> {
        let mut shows = rows.iter().map(show_from).collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<String> = shows.iter().map(|s| s.id.to_string()).collect();
        let mut lineups: HashMap<String, Vec<LineupRow>> = HashMap::new();
        for chunk in ids.chunks(MAX_ORDERS_PER_QUERY) {
            let sql = format!(
                "SELECT show_id, proof, stock, buyer_limit FROM show_lineup
                 WHERE show_id IN ({}) ORDER BY show_id, position",
                placeholders(1, chunk.len())
            );
            let rows = self
                .engine
                .query(&sql, chunk.iter().map(crate::sql::Value::from).collect())
                .await?;
            for l in &rows {
                lineups.entry(l.text(0)?).or_default().push(LineupRow {
                    product: serde_json::from_str(&l.text(1)?).map_err(corrupt)?,
                    stock: l.u32(2)?,
                    buyer_limit: l.u32(3)?,
                });
            }
        }
        for show in &mut shows {
            show.lineup = lineups.remove(show.id.as_str()).unwrap_or_default();
        }
        Ok(shows)
    }

    /// Compare-and-set of a show's status, recording who moved it and when: changes it only if
    /// it is `from` now. Returns whether it changed, so concurrent callers (several nodes, a
    /// seller and the scheduler) agree on exactly one winner.
    pub async fn set_show_status(
        &self,
        id: &ShowId,
        from: ShowStatus,
        to: ShowStatus,
    ) -> Result<bool, StoreError> {
        self.transition(id, from, to, self.clock.now(), "system", None)
            .await
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.engine.query("SELECT 1", params![]).await?;
        Ok(())
    }
}

/// A show row read with [`SHOW_COLUMNS`], its lineup still empty (see `with_lineups`).
fn show_from(r: &Row) -> Result<ShowRow, StoreError> {
    let id = r.text(0)?;
    let schedule = match r.opt_text(5)? {
        Some(market) => Some(ShowSchedule {
            market_id: MarketId::parse(market).map_err(corrupt)?,
            night_date: parse_date(&r.text(6)?)?,
            slot_start: r.int(7)?,
            slot_end: r.int(8)?,
            stream_url: r.text(9)?,
        }),
        None => None,
    };
    Ok(ShowRow {
        id: ShowId::parse(id).map_err(corrupt)?,
        seller_id: SellerId::parse(r.text(1)?).map_err(corrupt)?,
        title: r.text(2)?,
        status: parse_status(&r.text(3)?)?,
        created_at: r.int(4)?,
        lineup: Vec::new(),
        schedule,
        live_at: r.opt_int(10)?,
        closed_at: r.opt_int(11)?,
    })
}

/// The position of a show row (read with [`SHOW_COLUMNS`]) in a listing ordered by `order`.
fn show_key(order: Order, r: &Row) -> Key {
    let columns: Vec<&str> = SHOW_COLUMNS.split(',').map(str::trim).collect();
    order
        .columns
        .iter()
        .map(|(name, _)| {
            match columns
                .iter()
                .position(|c| c == name)
                .and_then(|i| r.0.get(i))
            {
                Some(crate::sql::Value::Int(v)) => KeyPart::Int(*v),
                Some(crate::sql::Value::Text(v)) => KeyPart::Text(v.clone()),
                _ => KeyPart::Int(0),
            }
        })
        .collect()
}

/// Listings by creation time, oldest first (the id breaks ties).
pub(crate) const CREATED_ORDER: Order =
    Order::asc(&[("created_at", Kind::Int), ("id", Kind::Text)]);
/// Listings by creation time, newest first.
pub(crate) const NEWEST_ORDER: Order =
    Order::desc(&[("created_at", Kind::Int), ("id", Kind::Text)]);
/// Listings by id.
pub(crate) const ID_ORDER: Order = Order::asc(&[("id", Kind::Text)]);

/// The key of a row in a [`CREATED_ORDER`] or [`NEWEST_ORDER`] listing.
pub(crate) fn created_key(created_at: Millis, id: &str) -> Key {
    vec![KeyPart::Int(created_at), KeyPart::Text(id.to_owned())]
}

/// The statements that insert a show and its lineup.
pub(crate) fn show_insert_steps(show: &ShowRow) -> Result<Vec<Step>, StoreError> {
    let sched = show.schedule.as_ref();
    let mut steps = vec![Step::new(
        "INSERT INTO shows (id, seller_id, title, status, created_at, market_id, night_date,
             slot_start, slot_end, stream_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        params![
            show.id.as_str(),
            show.seller_id.as_str(),
            &show.title,
            show.status.as_str(),
            show.created_at,
            sched.map(|s| s.market_id.as_str()),
            sched.map(|s| s.night_date.to_string()),
            sched.map(|s| s.slot_start),
            sched.map(|s| s.slot_end),
            sched.map(|s| s.stream_url.as_str()),
        ],
    )];
    for (pos, item) in show.lineup.iter().enumerate() {
        let proof = serde_json::to_string(&item.product).map_err(corrupt)?;
        steps.push(Step::new(
            "INSERT INTO show_lineup (show_id, position, product_id, stock, buyer_limit, proof)
             VALUES ($1, $2, $3, $4, $5, $6)",
            params![
                show.id.as_str(),
                pos as i64,
                item.product.id.as_str(),
                item.stock,
                item.buyer_limit,
                proof,
            ],
        ));
    }
    Ok(steps)
}

/// Maps a unique-constraint refusal to a conflict naming `what`.
pub(crate) fn conflict(e: SqlError, what: String) -> StoreError {
    match e {
        SqlError::Unique(_) => StoreError::Conflict(what),
        other => other.into(),
    }
}
