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
    let tag = hex(&f.metadata.sha256_hash()[..12]);
    revalidated(f.data.into_owned(), &tag, content_type(path), headers)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `body` with the ETag `tag`, or 304 when the request's `If-None-Match` names it already.
fn revalidated(
    body: Vec<u8>,
    tag: &str,
    content_type: &'static str,
    headers: &HeaderMap,
) -> Response {
    let etag = format!("\"{tag}\"");
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // no-cache: always revalidate (cheap with the ETag), so a new release shows at once.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    resp
}

/// The template every console page is made from.
const CONSOLE: &str = "pages/console.html";

/// A console page: the pages share their head and frame, so they are one template
/// (`web/pages/console.html`) with the page's name filled in where it picks the script
/// (`/web/assets/{page}.js`) and the body's `data-page`, and the main column's class.
fn console(page: &str, main_class: &str, headers: &HeaderMap) -> Response {
    let Some(f) = Web::get(CONSOLE) else {
        return HttpError::not_found(format!("/{CONSOLE}")).into_response();
    };
    let html = String::from_utf8_lossy(&f.data)
        .replace("{{page}}", page)
        .replace("{{main_class}}", main_class);
    // The template's hash and the page's name: a new template, a new tag on every page.
    let tag = format!("{}-{page}", hex(&f.metadata.sha256_hash()[..12]));
    revalidated(html.into_bytes(), &tag, content_type(CONSOLE), headers)
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

/// One console page's handler and its OpenAPI operation, which differ only in these words.
macro_rules! console_page {
    ($(#[doc = $doc:tt])* $name:ident, $path:tt, $main_class:tt, $summary:tt, $who:tt) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            get,
            path = $path,
            tag = "Consoles",
            summary = $summary,
            description = $who,
            responses(
                (status = 200, description = "Success", content((String = "text/html"))),
                NotModified,
            ),
        )]
        pub async fn $name(headers: HeaderMap) -> Response {
            console(stringify!($name), $main_class, &headers)
        }
    };
}

console_page!(
    /// `/`: the viewer page (tonight's shows, joining one).
    viewer, "/", "",
    "Viewer page (HTML): tonight's shows; join one as a guest or with a partner token, watch and claim",
    "Who: public."
);
console_page!(
    /// `/seller`: the seller's show console.
    seller, "/seller", "",
    "Seller console (HTML): tonight's show in one screen: go live, pin, flash prices, live figures, close, report",
    "Who: public (the page asks for sign-in where it needs one)."
);
console_page!(
    /// `/operator`: the market office's console, the only one with a wide main column.
    operator, "/operator", "wide",
    "Operator console (HTML): markets, nights, sellers and invites, admissions, live board, reports, webhooks",
    "Who: public (the page asks for sign-in where it needs one)."
);
console_page!(
    /// `/signin`: spends a one-time sign-in link (`#code=`) and goes on to the console.
    signin, "/signin", "",
    "Sign-in page (HTML): spends the one-time link's #code and opens the console",
    "Who: public (the page asks for sign-in where it needs one)."
);

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
