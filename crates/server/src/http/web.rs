//! The consoles: pages and their scripts, styles and language files, compiled into the binary
//! from the repository's `web/` folder (in debug builds read from that folder, so a page can
//! be edited and reloaded). Tests and Node packages under `web/` are never served.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use utoipa::openapi::{RefOr, ResponseBuilder};

use crate::http::error::HttpError;
use crate::http::refusal;

#[derive(RustEmbed)]
#[folder = "../../web/"]
#[include = "pages/*.html"]
#[include = "assets/**/*"]
#[include = "client/*"]
#[exclude = "**/test/**"]
#[exclude = "**/node_modules/**"]
struct Web;

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ts") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// One embedded file, with an ETag so a browser revalidates instead of downloading again.
fn file(path: &str, headers: &HeaderMap) -> Response {
    let Some(f) = Web::get(path) else {
        return HttpError::not_found(format!("/{path}")).into_response();
    };
    let tag: String = f.metadata.sha256_hash()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let etag = format!("\"{tag}\"");
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        f.data.into_owned().into_response()
    };
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    // no-cache: always revalidate (cheap with the ETag), so a new release shows at once.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    resp
}

/// 304: a console file revalidated by its ETag (`If-None-Match`) has not changed.
pub struct NotModified;

impl utoipa::IntoResponses for NotModified {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        BTreeMap::from([(
            "304".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("Not modified: If-None-Match names the file's current ETag")
                    .build(),
            ),
        )])
    }
}

/// `/`: the viewer page (tonight's shows, joining one).
#[utoipa::path(
    get,
    path = "/",
    tag = "Consoles",
    summary = "Viewer page (HTML): tonight's shows; join one as a guest or with a partner token, watch and claim",
    description = "Who: public.",
    responses(
        (status = 200, description = "Success", content((String = "text/html"))),
        NotModified,
    ),
)]
pub async fn viewer(headers: HeaderMap) -> Response {
    file("pages/viewer.html", &headers)
}

/// `/seller`: the seller's show console.
#[utoipa::path(
    get,
    path = "/seller",
    tag = "Consoles",
    summary = "Seller console (HTML): tonight's show in one screen: go live, pin, flash prices, live figures, close, report",
    description = "Who: public (the page asks for sign-in where it needs one).",
    responses(
        (status = 200, description = "Success", content((String = "text/html"))),
        NotModified,
    ),
)]
pub async fn seller(headers: HeaderMap) -> Response {
    file("pages/seller.html", &headers)
}

/// `/operator`: the market office's console.
#[utoipa::path(
    get,
    path = "/operator",
    tag = "Consoles",
    summary = "Operator console (HTML): markets, nights, sellers and invites, admissions, live board, reports, webhooks",
    description = "Who: public (the page asks for sign-in where it needs one).",
    responses(
        (status = 200, description = "Success", content((String = "text/html"))),
        NotModified,
    ),
)]
pub async fn operator(headers: HeaderMap) -> Response {
    file("pages/operator.html", &headers)
}

/// `/signin`: spends a one-time sign-in link (`#code=`) and goes on to the console.
#[utoipa::path(
    get,
    path = "/signin",
    tag = "Consoles",
    summary = "Sign-in page (HTML): spends the one-time link's #code and opens the console",
    description = "Who: public (the page asks for sign-in where it needs one).",
    responses(
        (status = 200, description = "Success", content((String = "text/html"))),
        NotModified,
    ),
)]
pub async fn signin(headers: HeaderMap) -> Response {
    file("pages/signin.html", &headers)
}

/// `/web/{path}`: scripts, styles, language files and the protocol client.
#[utoipa::path(
    get,
    path = "/web/{path}",
    tag = "Consoles",
    summary = "Console assets: scripts, styles, language files and the protocol client module (web/client/nightmarket.js)",
    description = "Who: public. Files under web/assets/ and web/client/; revalidated with an ETag.",
    params(("path" = String, Path, description = "assets/... or client/...")),
    responses(
        (status = 200, description = "Success: the file, its type from its extension", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> = "application/json", example = json!({"common": {"brand": "Chợ đêm trên mây", "loading": "Đang tải…"}})),
            (String = "text/plain"),
        )),
        NotModified,
        refusal::BadRequest, refusal::NotFound,
    ),
)]
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if !(path.starts_with("assets/") || path.starts_with("client/")) || path.contains("..") {
        return HttpError::not_found(format!("/web/{path}")).into_response();
    }
    file(&path, &headers)
}
