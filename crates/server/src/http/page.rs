//! The one paging contract of every list endpoint: `?limit=` (1 to [`MAX_PAGE_SIZE`], default
//! [`DEFAULT_PAGE_SIZE`]) and `?cursor=` (opaque), a JSON array as the body, and a
//! `Next-Cursor` header when another page follows (absent on the last page).
//!
//! A cursor is the base64url (unpadded) of `{"l": <list>, "k": <key>}`: the list it belongs to
//! and the store's keyset position of the page's last row. Clients pass it back untouched; one
//! that does not decode, or belongs to another list, is `400 bad_cursor`.

use axum::Json;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nightmarket_store::{Key, KeyPart, Keyset, Paged};
use nightmarket_wire::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::http::error::HttpError;
use crate::http::extract::ApiResult;

pub use nightmarket_store::MAX_PAGE_SIZE;

/// Items a page holds when the request names no `limit`.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The response header carrying the next page's cursor.
pub const NEXT_CURSOR: &str = "next-cursor";

/// Longest cursor accepted, in bytes: far above any key this server hands out, so a cursor
/// is decoded only when it could be one.
const MAX_CURSOR_BYTES: usize = 1024;

/// `?limit=&cursor=` of a list request. Both are read as text, so a limit that is not a number
/// gets the same answer as one out of range.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// What a cursor carries.
#[derive(Serialize, Deserialize)]
struct CursorBody {
    l: String,
    k: Key,
}

impl PageQuery {
    /// The page of `list` this request asks for.
    pub fn open(&self, list: &'static str) -> ApiResult<Pager> {
        self.open_or(list, DEFAULT_PAGE_SIZE)
    }

    /// [`PageQuery::open`] for a list whose page holds `default` items unless asked otherwise.
    pub fn open_or(&self, list: &'static str, default: usize) -> ApiResult<Pager> {
        let limit = match self.limit.as_deref() {
            None => default,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "limit: a whole number from 1 to {MAX_PAGE_SIZE}, got {text:?}"
                    ))
                })?,
        };
        let after = self
            .cursor
            .as_deref()
            .map(|c| decode(list, c).ok_or_else(bad_cursor))
            .transpose()?;
        Ok(Pager {
            list,
            keyset: Keyset { after, limit },
        })
    }
}

fn decode(list: &str, cursor: &str) -> Option<Key> {
    if cursor.len() > MAX_CURSOR_BYTES {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let body: CursorBody = serde_json::from_slice(&bytes).ok()?;
    (body.l == list).then_some(body.k)
}

fn encode(list: &str, key: Key) -> String {
    let body = CursorBody {
        l: list.to_owned(),
        k: key,
    };
    // A Vec of ints and strings always serializes.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap_or_default())
}

/// The answer to a cursor that is not one of this list's.
pub fn bad_cursor() -> HttpError {
    HttpError::new(
        ErrorCode::BadCursor,
        "cursor: not one this list handed out; start again without it",
    )
}

/// A request's page of one list: the store's keyset, and how to answer with what it found.
#[derive(Debug, Clone)]
pub struct Pager {
    list: &'static str,
    pub keyset: Keyset,
}

impl Pager {
    /// The page as the response: `items` as the body, `next` as the `Next-Cursor` header.
    pub fn respond<T>(&self, items: Vec<T>, next: Option<Key>) -> Listed<T> {
        Listed {
            items,
            next: next.map(|k| encode(self.list, k)),
        }
    }

    /// The position a single-column key holds, for listings keyed by one value (an id, an
    /// instant); another shape is `bad_cursor`.
    pub fn after_one(&self) -> ApiResult<Option<&KeyPart>> {
        match self.keyset.after.as_deref() {
            None => Ok(None),
            Some([one]) => Ok(Some(one)),
            Some(_) => Err(bad_cursor()),
        }
    }

    /// Cuts `rows`, read as one more than the page, to the page and answers with them as
    /// `view`s; `key` gives a row's position.
    pub fn cut<R, T>(
        &self,
        rows: Vec<R>,
        key: impl Fn(&R) -> Key,
        view: impl FnMut(&R) -> T,
    ) -> Listed<T> {
        self.view(
            nightmarket_store::page::paged(rows, &self.keyset, key),
            view,
        )
    }

    /// Rows to read for this page: one more than it holds, to learn whether another follows.
    pub fn read_limit(&self) -> usize {
        self.keyset.limit + 1
    }

    /// [`Pager::respond`] with a store page whose rows become `view`s.
    pub fn view<R, T>(&self, page: Paged<R>, view: impl FnMut(&R) -> T) -> Listed<T> {
        let items = page.items.iter().map(view).collect();
        self.respond(items, page.next)
    }
}

/// One page of a list endpoint's answer.
#[derive(Debug)]
pub struct Listed<T> {
    items: Vec<T>,
    next: Option<String>,
}

impl<T: Serialize> IntoResponse for Listed<T> {
    fn into_response(self) -> Response {
        let mut resp = Json(self.items).into_response();
        if let Some(v) = self.next.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(NEXT_CURSOR, v);
        }
        resp
    }
}
