//! The HTTP API: operators create sellers, products and shows; an operator or the show's
//! seller takes a show live and closes it. Reads are public (a show page is public).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use nightmarket_domain::book::MAX_STOCK;
use nightmarket_domain::ocop::text;
use nightmarket_domain::{
    Dong, Product, ProductGroup, ProductId, SellerId, ShowId, ShowStatus, Stars,
};
use nightmarket_inventory::Command;
use nightmarket_store::{LineupRow, SellerRow, ShowRow};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::http::{
    CreateProduct, CreateSeller, CreateShow, Product as WireProduct, Seller, Show, ShowLineupItem,
};
use nightmarket_wire::http::{body_field_error, strip_position};

use crate::auth::{Claims, Role};
use crate::convert;
use crate::http::error::HttpError;
use crate::state::{AppState, now_ms};

pub(crate) type ApiResult<T> = Result<T, HttpError>;

/// The bearer token of a request, verified.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> ApiResult<Claims> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = header.or(query_token).unwrap_or("");
    state
        .key
        .verify(token.trim(), now_ms() / 1000)
        .map_err(|e| unauthorized(e.reason(), e.to_string()))
}

/// A 401 that says what is wrong: `details.reason` is one of `missing`, `malformed`,
/// `bad_signature`, `expired`, `issued_in_future`, `signed_out`, `bad_subject`.
pub(crate) fn unauthorized(reason: &'static str, message: impl Into<String>) -> HttpError {
    HttpError::new(ErrorCode::Unauthorized, message)
        .with_details(serde_json::json!({ "reason": reason }))
}

pub(crate) fn require(claims: &Claims, role: Role) -> ApiResult<()> {
    if claims.role == role {
        Ok(())
    } else {
        Err(HttpError::forbidden(format!(
            "this needs the {} role; the token's role is {}",
            role.as_str(),
            claims.role.as_str()
        ))
        .with_details(serde_json::json!({
            "needed_role": role.as_str(),
            "role": claims.role.as_str(),
        })))
    }
}

pub(crate) fn body<T>(payload: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    payload.map(|Json(v)| v).map_err(|e| {
        // The body was cut at `limits.max_body_bytes` while it was read (no Content-Length, or
        // one that lied): the same refusal as a declared length past the limit.
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return HttpError::new(
                ErrorCode::BodyTooLarge,
                "body: longer than this server accepts (limits.max_body_bytes)",
            );
        }
        let message = match &e {
            JsonRejection::JsonDataError(_) => body_field_error(&e.body_text()),
            JsonRejection::JsonSyntaxError(_) => {
                format!("body: not valid JSON ({})", strip_position(&e.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => {
                "Content-Type: expected application/json".to_owned()
            }
            _ => format!("body: {}", e.body_text()),
        };
        HttpError::bad_request(message)
    })
}

pub(crate) fn field<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> ApiResult<T> {
    r.map_err(|e| HttpError::bad_request(format!("{name}: {e}")))
}

pub(crate) fn new_id() -> String {
    // Time-ordered ids sort by creation in indexes and listings.
    uuid::Uuid::now_v7().to_string()
}

pub async fn create_seller(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateSeller>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Seller>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let kind = req.kind.unwrap_or_else(|| "cooperative".into());
    if !["cooperative", "enterprise", "household"].contains(&kind.as_str()) {
        return Err(HttpError::bad_request(
            "kind: expected cooperative, enterprise or household",
        ));
    }
    let row = SellerRow {
        id: field("id", SellerId::parse(new_id()))?,
        name: field("name", text("name", &req.name))?,
        kind,
        district: match req.district {
            Some(d) => field("district", text("district", &d))?,
            None => String::new(),
        },
        created_at: now_ms(),
    };
    state.catalog.create_seller(&row).await?;
    Ok((StatusCode::CREATED, Json(seller_json(&row))))
}

fn seller_json(row: &SellerRow) -> Seller {
    Seller {
        id: row.id.to_string(),
        name: row.name.clone(),
        kind: row.kind.clone(),
        district: row.district.clone(),
        created_at: row.created_at,
    }
}

pub async fn get_seller(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Seller>> {
    let id = SellerId::parse(id).map_err(|_| HttpError::not_found("seller"))?;
    let row = state
        .catalog
        .seller(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("seller {id}")))?;
    Ok(Json(seller_json(&row)))
}

/// `GET /api/sellers` (operators): every seller, oldest first.
pub async fn list_sellers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<Seller>>> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let rows = state.catalog.sellers().await?;
    Ok(Json(rows.iter().map(seller_json).collect()))
}

#[derive(Debug, serde::Deserialize)]
pub struct ProductsQuery {
    seller_id: Option<String>,
}

/// `GET /api/products?seller_id=`: a seller's products with their proof, for the operator
/// (any seller) or that seller.
pub async fn list_products(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ProductsQuery>,
) -> ApiResult<Json<Vec<WireProduct>>> {
    let claims = authenticate(&state, &headers, None)?;
    let raw = match (q.seller_id, claims.role) {
        (Some(id), Role::Operator) => id,
        (Some(id), Role::Seller) if id == claims.sub => id,
        (None, Role::Seller) => claims.sub.clone(),
        (None, Role::Operator) => {
            return Err(HttpError::bad_request("seller_id: required"));
        }
        _ => return Err(HttpError::forbidden("a seller sees only its own products")),
    };
    let seller_id = existing_seller(&state, raw).await?;
    let rows = state.catalog.products_of(&seller_id).await?;
    Ok(Json(
        rows.iter().map(|(p, at)| product_json(p, *at)).collect(),
    ))
}

/// The `seller_id` of a request body, parsed and known to the catalog.
async fn existing_seller(state: &AppState, raw: String) -> ApiResult<SellerId> {
    let seller_id = field("seller_id", SellerId::parse(raw))?;
    if state.catalog.seller(&seller_id).await?.is_none() {
        return Err(HttpError::bad_request(format!(
            "seller_id: seller {seller_id} does not exist"
        )));
    }
    Ok(seller_id)
}

pub async fn create_product(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateProduct>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<WireProduct>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let seller_id = existing_seller(&state, req.seller_id).await?;
    let product = Product {
        id: field("id", ProductId::parse(new_id()))?,
        seller_id,
        name: field("name", text("name", &req.name))?,
        group: field("group", ProductGroup::parse(&req.group))?,
        stars: field("stars", Stars::parse(req.stars))?,
        district: field("district", text("district", &req.district))?,
        commune: field("commune", text("commune", &req.commune))?,
        producer: field("producer", text("producer", &req.producer))?,
        list_price: field("list_price", Dong::parse(req.list_price))?,
        origin_document: field(
            "origin_document",
            text("origin_document", &req.origin_document),
        )?,
        quality_label: field("quality_label", text("quality_label", &req.quality_label))?,
        documents: documents(&req.documents)?,
    };
    let created_at = now_ms();
    state.catalog.create_product(&product, created_at).await?;
    Ok((
        StatusCode::CREATED,
        Json(product_json(&product, created_at)),
    ))
}

fn product_json(p: &Product, created_at: i64) -> WireProduct {
    WireProduct {
        view: convert::product_view(p),
        seller_id: p.seller_id.to_string(),
        created_at,
    }
}

pub async fn get_product(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<WireProduct>> {
    let id = ProductId::parse(id).map_err(|_| HttpError::not_found("product"))?;
    let (p, at) = state
        .catalog
        .product(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("product {id}")))?;
    Ok(Json(product_json(&p, at)))
}

pub async fn create_show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateShow>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Show>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let seller_id = existing_seller(&state, req.seller_id).await?;
    let title = field("title", text("title", &req.title))?;
    let lineup = build_lineup(&state, &seller_id, req.lineup).await?;
    let row = ShowRow {
        id: field("id", ShowId::parse(new_id()))?,
        seller_id,
        title,
        status: ShowStatus::Scheduled,
        created_at: now_ms(),
        lineup,
        schedule: None,
        live_at: None,
        closed_at: None,
    };
    state.catalog.create_show(&row).await?;
    state.load_show(&row).await?;
    Ok((StatusCode::CREATED, Json(show_json(&state, &row).await?)))
}

pub(crate) async fn show_json(state: &AppState, row: &ShowRow) -> ApiResult<Show> {
    let (status, stock, seq) = match state.show(&row.id) {
        Some(_) => {
            let view = state.inventory.view(&row.id, None, now_ms()).await?;
            let stock = (view.status != ShowStatus::Scheduled).then(|| {
                let levels: Vec<_> = view
                    .lineup
                    .iter()
                    .map(|e| (e.product.id.clone(), e.left))
                    .collect();
                convert::stock_levels(&levels)
            });
            (view.status, stock, view.seq)
        }
        None => (row.status, None, 0),
    };
    Ok(Show {
        stock,
        seq,
        ..show_body(row, status)
    })
}

pub async fn list_shows(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<Show>>> {
    let rows = state.catalog.shows().await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(show_json(&state, row).await?);
    }
    Ok(Json(out))
}

pub(crate) async fn show_row(state: &AppState, id: String) -> ApiResult<ShowRow> {
    let id = ShowId::parse(id).map_err(|_| HttpError::not_found("show"))?;
    state
        .catalog
        .show(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("show {id}")))
}

pub async fn get_show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Show>> {
    let row = show_row(&state, id).await?;
    Ok(Json(show_json(&state, &row).await?))
}

async fn transition(
    state: Arc<AppState>,
    headers: HeaderMap,
    id: String,
    cmd: Command,
) -> ApiResult<Json<Show>> {
    let claims = authenticate(&state, &headers, None)?;
    let row = show_row(&state, id).await?;
    let allowed = match claims.role {
        Role::Operator => true,
        Role::Seller => claims.sub == row.seller_id.as_str(),
        Role::Viewer => false,
    };
    if !allowed {
        return Err(HttpError::forbidden(
            "only an operator or this show's seller may do this",
        ));
    }
    if matches!(cmd, Command::GoLive) {
        may_go_live(&state, &claims, &row).await?;
    }
    let rt = state.load_show(&row).await?;
    let actor = format!("{}:{}", claims.role.as_str(), claims.sub);
    state.command(&rt, cmd, &actor).await?;
    let row = show_row(&state, row.id.to_string()).await?;
    Ok(Json(show_json(&state, &row).await?))
}

pub async fn go_live(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Show>> {
    transition(state, headers, id, Command::GoLive).await
}

pub async fn close(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Show>> {
    transition(state, headers, id, Command::Close).await
}

/// Parses the proof documents of a product body; the error names the document by index.
pub(crate) fn documents(
    bodies: &[nightmarket_wire::server::DocumentBody],
) -> ApiResult<Vec<nightmarket_domain::Document>> {
    use nightmarket_domain::market::parse_date;
    use nightmarket_domain::{Document, DocumentKind};
    if bodies.len() > nightmarket_domain::admission::MAX_DOCUMENTS {
        return Err(HttpError::bad_request(format!(
            "documents: at most {} documents",
            nightmarket_domain::admission::MAX_DOCUMENTS
        )));
    }
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let bad =
                |e: &dyn std::fmt::Display| HttpError::bad_request(format!("documents[{i}]: {e}"));
            let kind = DocumentKind::parse(&b.kind).map_err(|e| bad(&e))?;
            let from = parse_date("valid_from", &b.valid_from).map_err(|e| bad(&e))?;
            let until = parse_date("valid_until", &b.valid_until).map_err(|e| bad(&e))?;
            Document::new(kind, &b.reference, from, until).map_err(|e| bad(&e))
        })
        .collect()
}

/// Checks a requested lineup (size, duplicates, ownership, stock and limit bounds) and
/// snapshots each product with its proof.
pub(crate) async fn build_lineup(
    state: &AppState,
    seller: &SellerId,
    items: Vec<nightmarket_wire::http::CreateLineupItem>,
) -> ApiResult<Vec<LineupRow>> {
    let max_lineup = state.config.limits.max_lineup;
    if items.is_empty() || items.len() > max_lineup {
        return Err(HttpError::bad_request(format!(
            "lineup: 1 to {max_lineup} products"
        )));
    }
    let mut lineup = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = |f: &str| format!("lineup[{i}].{f}");
        let pid = field(&at("product_id"), ProductId::parse(item.product_id))?;
        if lineup.iter().any(|l: &LineupRow| l.product.id == pid) {
            return Err(HttpError::bad_request(format!(
                "{}: product {pid} is listed twice",
                at("product_id")
            )));
        }
        let (product, _) = state.catalog.product(&pid).await?.ok_or_else(|| {
            HttpError::new(
                ErrorCode::UnknownProduct,
                format!("{}: product {pid} does not exist", at("product_id")),
            )
        })?;
        if product.seller_id != *seller {
            return Err(HttpError::bad_request(format!(
                "{}: product {pid} belongs to another seller",
                at("product_id")
            )));
        }
        let bound = i64::from(MAX_STOCK);
        if !(0..=bound).contains(&item.stock) {
            return Err(HttpError::bad_request(format!(
                "{}: 0 to {bound}, got {}",
                at("stock"),
                item.stock
            )));
        }
        if !(1..=bound).contains(&item.buyer_limit) {
            return Err(HttpError::bad_request(format!(
                "{}: 1 to {bound}, got {}",
                at("buyer_limit"),
                item.buyer_limit
            )));
        }
        lineup.push(LineupRow {
            product,
            stock: item.stock as u32,
            buyer_limit: item.buyer_limit as u32,
        });
    }
    Ok(lineup)
}

/// A show's body from its stored row alone (no inventory): for webhook payloads.
pub(crate) fn show_body(row: &ShowRow, status: ShowStatus) -> Show {
    Show {
        id: row.id.to_string(),
        seller_id: row.seller_id.to_string(),
        title: row.title.clone(),
        status: status.as_str().to_owned(),
        lineup: row
            .lineup
            .iter()
            .map(|l| ShowLineupItem {
                product_id: l.product.id.to_string(),
                stock: l.stock,
                buyer_limit: l.buyer_limit,
                product: Some(convert::product_view(&l.product)),
            })
            .collect(),
        created_at: row.created_at,
        stock: None,
        seq: 0,
        schedule: row.schedule.as_ref().map(convert::show_slot),
        live_at: row.live_at,
        closed_at: row.closed_at,
    }
}

/// The rules of a scheduled show going live by hand: every product still admitted on the
/// night (documents valid, decision standing, commitment signed), and for the seller, not more
/// than `early_start_ms` before the slot nor after the slot is over. An operator may open it
/// at any time, but never with an unadmitted product.
async fn may_go_live(state: &AppState, claims: &Claims, row: &ShowRow) -> ApiResult<()> {
    let Some(sched) = &row.schedule else {
        return Ok(());
    };
    if row.status != ShowStatus::Scheduled {
        return Ok(());
    }
    let min_stars = state
        .catalog
        .market(&sched.market_id)
        .await?
        .map_or(nightmarket_domain::market::DEFAULT_MIN_STARS, |m| {
            m.min_stars
        });
    let issues = crate::http::market::admission_issues(state, row, min_stars).await?;
    if !issues.is_empty() {
        return Err(crate::http::market::not_admitted(issues));
    }
    if claims.role == Role::Seller {
        let timing = nightmarket_domain::ShowTiming {
            slot: nightmarket_domain::Slot {
                starts_at: sched.slot_start,
                ends_at: sched.slot_end,
            },
            live_grace_ms: state.config.market.early_start_ms as i64,
            close_grace_ms: state.config.market.close_grace_ms as i64,
        };
        if !timing.may_go_live(state.clock.now()) {
            return Err(HttpError::new(
                ErrorCode::InvalidState,
                format!(
                    "the slot is {} to {}; a seller may go live from {} ms before its start until it is over",
                    convert::rfc3339(sched.slot_start),
                    convert::rfc3339(sched.slot_end),
                    state.config.market.early_start_ms
                ),
            ));
        }
    }
    Ok(())
}
