//! Sellers and their products over HTTP: operators create them, a seller reads its own; and a
//! seller's reusable lineups. A product or seller page is public.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use nightmarket_domain::ocop::text;
use nightmarket_domain::{Product, SellerId};
use nightmarket_store::{LineupSetRow, SellerRow};
use nightmarket_wire::http::{CreateProduct, CreateSeller, Product as WireProduct, Seller};
use nightmarket_wire::market::{CreateLineupSet, LineupSet, LineupSetItem};

use crate::auth::Role;
use crate::convert;
use crate::http::error::HttpError;
use crate::http::extract::{ApiResult, authenticate, body, field, may_act_for, require};
use crate::http::page::{Listed, PageQuery};
use crate::http::refusal;
use crate::services::catalog::{self, seller_kind};
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/api/sellers",
    tag = "Catalog",
    summary = "Create a seller",
    description = "Who: operator.",
    request_body(content = CreateSeller, example = json!({"name": "HTX Mật ong Ba Vì", "kind": "cooperative", "district": "Ba Vì"})),
    responses(
        (status = 201, description = "Success", body = Seller, example = json!({"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "HTX Mật ong Ba Vì", "kind": "cooperative", "district": "Ba Vì", "created_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn create_seller(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateSeller>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Seller>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let kind = seller_kind(req.kind)?;
    let name = field("name", text("name", &req.name))?;
    let district = match req.district {
        Some(d) => field("district", text("district", &d))?,
        None => String::new(),
    };
    let row = catalog::create_seller(state.store(), name, kind, district, state.now()).await?;
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

#[utoipa::path(
    get,
    path = "/api/sellers/{id}",
    tag = "Catalog",
    summary = "A seller",
    description = "Who: public.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Seller, example = json!({"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "HTX Mật ong Ba Vì", "kind": "cooperative", "district": "Ba Vì", "created_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::NotFound, refusal::Unavailable,
    ),
)]
pub async fn get_seller(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Seller>> {
    let row = catalog::seller(state.store(), id).await?;
    Ok(Json(seller_json(&row)))
}

/// `GET /api/sellers` (operators): every seller, oldest first.
#[utoipa::path(
    get,
    path = "/api/sellers",
    tag = "Catalog",
    summary = "Every seller, oldest first",
    description = "Who: operator.",
    responses(
        (status = 200, description = "Success", body = Vec<Seller>, example = json!([{"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "HTX Mật ong Ba Vì", "kind": "cooperative", "district": "Ba Vì", "created_at": 1795564800000_i64}])),
        refusal::Unauthorized, refusal::Forbidden,
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub async fn list_sellers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<Seller>> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let pager = page.open("sellers")?;
    let rows = catalog::sellers(state.store(), &pager.keyset).await?;
    Ok(pager.view(rows, seller_json))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductsQuery {
    /// The seller.
    seller_id: Option<String>,
}

/// `GET /api/products?seller_id=`: a seller's products with their proof, for the operator
/// (any seller) or that seller.
#[utoipa::path(
    get,
    path = "/api/products",
    tag = "Catalog",
    summary = "A seller's products with their OCOP proof",
    description = "Who: operator (any seller, `seller_id` required) or the seller (its own; `seller_id` optional).",
    params(ProductsQuery),
    responses(
        (status = 200, description = "Success", body = Vec<WireProduct>, example = json!([{"id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn", "group": "food", "stars": 4, "district": "Ba Vì", "commune": "Tản Lĩnh", "producer": "HTX Mật ong Ba Vì", "list_price": 250000, "origin_document": "TXNG-BV-000123", "quality_label": "TCCS 01:2024/MOBV", "documents": [{"kind": "ocop_certificate", "reference": "OCOP-HN-2024-0412", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}, {"kind": "origin_proof", "reference": "TXNG-BV-000123", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}, {"kind": "quality_label", "reference": "TCCS 01:2024/MOBV", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}], "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "created_at": 1795564800000_i64}])),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden,
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub async fn list_products(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ProductsQuery>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<WireProduct>> {
    let pager = page.open("products")?;
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
    let rows = catalog::products_of(state.store(), raw, &pager.keyset).await?;
    Ok(pager.view(rows, |(p, at)| product_json(p, *at)))
}

#[utoipa::path(
    post,
    path = "/api/products",
    tag = "Catalog",
    summary = "Create a product with its OCOP proof and documents",
    description = "Who: operator.",
    request_body(content = CreateProduct, example = json!({"seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn", "group": "food", "stars": 4, "district": "Ba Vì", "commune": "Tản Lĩnh", "producer": "HTX Mật ong Ba Vì", "list_price": 250000, "origin_document": "TXNG-BV-000123", "quality_label": "TCCS 01:2024/MOBV", "documents": [{"kind": "ocop_certificate", "reference": "OCOP-HN-2024-0412", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}, {"kind": "origin_proof", "reference": "TXNG-BV-000123", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}, {"kind": "quality_label", "reference": "TCCS 01:2024/MOBV", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}]})),
    responses(
        (status = 201, description = "Success", body = WireProduct, example = json!({"id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn", "group": "food", "stars": 4, "district": "Ba Vì", "commune": "Tản Lĩnh", "producer": "HTX Mật ong Ba Vì", "list_price": 250000, "origin_document": "TXNG-BV-000123", "quality_label": "TCCS 01:2024/MOBV", "documents": [{"kind": "ocop_certificate", "reference": "OCOP-HN-2024-0412", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}, {"kind": "origin_proof", "reference": "TXNG-BV-000123", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}, {"kind": "quality_label", "reference": "TCCS 01:2024/MOBV", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}], "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "created_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn create_product(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<CreateProduct>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<WireProduct>)> {
    let claims = authenticate(&state, &headers, None)?;
    require(&claims, Role::Operator)?;
    let req = body(payload)?;
    let created_at = state.now();
    let product = catalog::create_product(state.store(), req, created_at).await?;
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

#[utoipa::path(
    get,
    path = "/api/products/{id}",
    tag = "Catalog",
    summary = "A product",
    description = "Who: public.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = WireProduct, example = json!({"id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "name": "Mật ong hoa nhãn", "group": "food", "stars": 4, "district": "Ba Vì", "commune": "Tản Lĩnh", "producer": "HTX Mật ong Ba Vì", "list_price": 250000, "origin_document": "TXNG-BV-000123", "quality_label": "TCCS 01:2024/MOBV", "documents": [{"kind": "ocop_certificate", "reference": "OCOP-HN-2024-0412", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}, {"kind": "origin_proof", "reference": "TXNG-BV-000123", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}, {"kind": "quality_label", "reference": "TCCS 01:2024/MOBV", "valid_from": "2024-01-01", "valid_until": "2027-12-31"}], "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "created_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::NotFound, refusal::Unavailable,
    ),
)]
pub async fn get_product(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<WireProduct>> {
    let (p, at) = catalog::product(state.store(), id).await?;
    Ok(Json(product_json(&p, at)))
}

// --- lineup sets --------------------------------------------------------------------------

fn set_view(s: &LineupSetRow) -> LineupSet {
    LineupSet {
        id: s.id.clone(),
        seller_id: s.seller_id.to_string(),
        name: s.name.clone(),
        items: s
            .items
            .iter()
            .map(|i| LineupSetItem {
                product_id: i.product_id.to_string(),
                stock: i.stock,
                buyer_limit: i.buyer_limit,
            })
            .collect(),
        created_at: s.created_at,
    }
}

#[utoipa::path(
    post,
    path = "/api/sellers/{id}/lineup-sets",
    tag = "Schedule",
    summary = "Save a reusable lineup",
    description = "Who: operator or that seller.",
    params(("id" = String, Path, description = "Id")),
    request_body(content = CreateLineupSet, example = json!({"name": "Lineup thứ Sáu", "items": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}]})),
    responses(
        (status = 201, description = "Success", body = LineupSet, example = json!({"id": "0193a1b2-4444-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "Lineup thứ Sáu", "items": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64})),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn create_lineup_set(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(seller): Path<String>,
    payload: Result<Json<CreateLineupSet>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<LineupSet>)> {
    let claims = authenticate(&state, &headers, None)?;
    let seller = SellerId::parse(seller).map_err(|_| HttpError::not_found("seller"))?;
    if !may_act_for(&claims, &seller) {
        return Err(HttpError::forbidden("only an operator or this seller"));
    }
    catalog::known_seller(state.store(), &seller).await?;
    let req = body(payload)?;
    let max_lineup = state.config().limits.max_lineup;
    let row = catalog::create_lineup_set(
        state.store(),
        seller,
        req.items,
        &req.name,
        max_lineup,
        state.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(set_view(&row))))
}

#[utoipa::path(
    get,
    path = "/api/sellers/{id}/lineup-sets",
    tag = "Schedule",
    summary = "A seller's saved lineups",
    description = "Who: operator or that seller.",
    params(("id" = String, Path, description = "Id")),
    responses(
        (status = 200, description = "Success", body = Vec<LineupSet>, example = json!([{"id": "0193a1b2-4444-7e5f-8a9b-0c1d2e3f4a5b", "seller_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "Lineup thứ Sáu", "items": [{"product_id": "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b", "stock": 150, "buyer_limit": 2}], "created_at": 1795564800000_i64}])),
        refusal::BadRequest, refusal::Unauthorized, refusal::Forbidden, refusal::NotFound, refusal::Unavailable,
    ),
    security(("bearerAuth" = [])),
)]
pub async fn list_lineup_sets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(seller): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Listed<LineupSet>> {
    let pager = page.open("lineup_sets")?;
    let claims = authenticate(&state, &headers, None)?;
    let seller = SellerId::parse(seller).map_err(|_| HttpError::not_found("seller"))?;
    if !may_act_for(&claims, &seller) {
        return Err(HttpError::forbidden("only an operator or this seller"));
    }
    let rows = catalog::lineup_sets(state.store(), &seller, &pager.keyset).await?;
    Ok(pager.view(rows, set_view))
}
