//! Domain values to wire messages, and domain refusals to stable codes. Kept in one place so
//! the protocol document has one source to check against.

use nightmarket_domain::{
    ClaimAccepted, ClaimRecord, CommandError, Flash, LineupEntry, Product, Refusal, RefusalReason,
    SequencedEvent, ShowEvent, SkipReason, WaitlistEntry, WaitlistRefusal,
};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::server::{
    ClaimOutcomeKind, ClaimResult, EventFrame, FlashView, LineupView, MyClaim, MyWaitlistEntry,
    ProductView, ShowEvent as WireEvent, StockLevel,
};

pub fn product_view(p: &Product) -> ProductView {
    ProductView {
        id: p.id.to_string(),
        name: p.name.clone(),
        group: p.group.as_str().to_owned(),
        stars: p.stars.get(),
        district: p.district.clone(),
        commune: p.commune.clone(),
        producer: p.producer.clone(),
        list_price: p.list_price.get(),
        origin_document: p.origin_document.clone(),
        quality_label: p.quality_label.clone(),
        documents: p.documents.iter().map(document_body).collect(),
    }
}

pub fn flash_view(f: &Flash) -> FlashView {
    FlashView {
        flash_id: f.id,
        product_id: f.product_id.to_string(),
        price: f.price.get(),
        list_price: f.list_price.get(),
        starts_at: f.starts_at,
        ends_at: f.ends_at,
        quantity_cap: f.quantity_cap,
        sold: f.sold,
    }
}

pub fn lineup_view(e: &LineupEntry) -> LineupView {
    LineupView {
        product: product_view(&e.product),
        allotted: e.allotted,
        left: e.left,
        buyer_limit: e.buyer_limit,
    }
}

pub fn stock_levels<'a>(
    levels: impl IntoIterator<Item = &'a (nightmarket_domain::ProductId, u32)>,
) -> Vec<StockLevel> {
    levels
        .into_iter()
        .map(|(p, left)| StockLevel {
            product_id: p.to_string(),
            left: *left,
        })
        .collect()
}

pub fn my_claim(c: &ClaimRecord) -> MyClaim {
    MyClaim {
        claim_id: c.claim_id.to_string(),
        product_id: c.product_id.to_string(),
        quantity: c.quantity,
        unit_price: c.unit_price.get(),
        status: if c.cancelled_at.is_some() {
            "cancelled"
        } else {
            "accepted"
        }
        .to_owned(),
        at: c.at,
    }
}

pub fn event_frame(ev: &SequencedEvent) -> EventFrame {
    let event = match &ev.event {
        ShowEvent::ShowLive => WireEvent::ShowLive,
        ShowEvent::ShowClosed { final_stock } => WireEvent::ShowClosed {
            final_stock: stock_levels(final_stock),
        },
        ShowEvent::Pinned { product_id, price } => WireEvent::Pinned {
            product_id: product_id.to_string(),
            price: price.get(),
        },
        ShowEvent::Unpinned { product_id } => WireEvent::Unpinned {
            product_id: product_id.to_string(),
        },
        ShowEvent::FlashStarted { flash } => WireEvent::FlashStarted(flash_view(flash)),
        ShowEvent::FlashEnded {
            flash_id,
            product_id,
            reason,
            list_price,
        } => WireEvent::FlashEnded {
            flash_id: *flash_id,
            product_id: product_id.to_string(),
            reason: reason.as_str().to_owned(),
            list_price: list_price.get(),
        },
    };
    EventFrame {
        seq: ev.seq,
        at: ev.at,
        event,
    }
}

pub fn refusal_code(reason: RefusalReason) -> ErrorCode {
    match reason {
        RefusalReason::ShowNotLive => ErrorCode::ShowNotLive,
        RefusalReason::UnknownProduct => ErrorCode::UnknownProduct,
        RefusalReason::NotPinned => ErrorCode::NotPinned,
        RefusalReason::StalePrice => ErrorCode::StalePrice,
        RefusalReason::LimitExceeded => ErrorCode::LimitExceeded,
        RefusalReason::SoldOut => ErrorCode::SoldOut,
        RefusalReason::ClaimIdTaken => ErrorCode::BadRequest,
    }
}

pub fn waitlist_refusal_code(r: WaitlistRefusal) -> ErrorCode {
    match r {
        WaitlistRefusal::ShowNotLive => ErrorCode::ShowNotLive,
        WaitlistRefusal::UnknownProduct => ErrorCode::UnknownProduct,
        WaitlistRefusal::NotSoldOut => ErrorCode::NotSoldOut,
        WaitlistRefusal::LimitExceeded => ErrorCode::LimitExceeded,
        WaitlistRefusal::WaitlistFull => ErrorCode::WaitlistFull,
    }
}

pub fn skip_code(r: SkipReason) -> ErrorCode {
    match r {
        SkipReason::PriceRose => ErrorCode::PriceRose,
        SkipReason::LimitExceeded => ErrorCode::LimitExceeded,
    }
}

pub fn my_waitlist_entry(entry: &WaitlistEntry, position: u32) -> MyWaitlistEntry {
    MyWaitlistEntry {
        product_id: entry.product_id.to_string(),
        position,
        quantity: entry.quantity,
    }
}

pub fn command_error_code(e: &CommandError) -> ErrorCode {
    match e {
        CommandError::NotLive(_) => ErrorCode::ShowNotLive,
        CommandError::BadTransition { .. } => ErrorCode::InvalidState,
        CommandError::UnknownProduct(_) => ErrorCode::UnknownProduct,
        CommandError::NotPinned(_) | CommandError::NothingPinned => ErrorCode::NotPinned,
        CommandError::PriceAboveList { .. } => ErrorCode::PriceAboveList,
        CommandError::FlashActive => ErrorCode::FlashActive,
        CommandError::NoFlash => ErrorCode::NoFlash,
        CommandError::OutOfRange(_) => ErrorCode::BadRequest,
    }
}

fn blank(claim_id: &str, outcome: ClaimOutcomeKind) -> ClaimResult {
    ClaimResult {
        claim_id: claim_id.to_owned(),
        outcome,
        reason: None,
        product_id: None,
        quantity: None,
        unit_price: None,
        stock_left: None,
        available: None,
        limit_left: None,
        current_price: None,
        message: None,
    }
}

pub fn claim_accepted(a: &ClaimAccepted, outcome: ClaimOutcomeKind) -> ClaimResult {
    // A retry of a claim that was cancelled since says so; the rest is the original acceptance.
    let message = a
        .record
        .cancelled_at
        .map(|_| "this claim was cancelled".to_owned());
    ClaimResult {
        message,
        product_id: Some(a.record.product_id.to_string()),
        quantity: Some(a.record.quantity),
        unit_price: Some(a.record.unit_price.get()),
        stock_left: Some(a.stock_left),
        ..blank(a.record.claim_id.as_str(), outcome)
    }
}

pub fn claim_refused(claim_id: &str, r: &Refusal) -> ClaimResult {
    let code = refusal_code(r.reason);
    let message = match r.reason {
        RefusalReason::ClaimIdTaken => {
            "this claim id is already used; generate a new one".to_owned()
        }
        RefusalReason::SoldOut => format!("only {} left", r.available.unwrap_or(0)),
        RefusalReason::LimitExceeded => format!("you may claim {} more", r.limit_left.unwrap_or(0)),
        RefusalReason::StalePrice => "the price changed; claim again at current_price".to_owned(),
        RefusalReason::NotPinned => "this product is not on screen now".to_owned(),
        RefusalReason::UnknownProduct => "this product is not in the show".to_owned(),
        RefusalReason::ShowNotLive => "the show is not live".to_owned(),
    };
    ClaimResult {
        reason: Some(code),
        available: r.available,
        limit_left: r.limit_left,
        current_price: r.current_price.map(|p| p.get()),
        message: Some(message),
        ..blank(claim_id, ClaimOutcomeKind::Refused)
    }
}

/// The claim's outcome is not known by its deadline; the real answer follows.
pub fn claim_pending(claim_id: &str, deadline_ms: u64) -> ClaimResult {
    ClaimResult {
        message: Some(format!(
            "not answered within {deadline_ms} ms; the result for this claim id follows"
        )),
        ..blank(claim_id, ClaimOutcomeKind::Pending)
    }
}

pub fn claim_error(claim_id: &str, code: ErrorCode, message: impl Into<String>) -> ClaimResult {
    ClaimResult {
        reason: Some(code),
        message: Some(message.into()),
        ..blank(claim_id, ClaimOutcomeKind::Refused)
    }
}

pub fn document_body(d: &nightmarket_domain::Document) -> nightmarket_wire::server::DocumentBody {
    nightmarket_wire::server::DocumentBody {
        kind: d.kind.as_str().to_owned(),
        reference: d.reference.clone(),
        valid_from: d.valid_from.to_string(),
        valid_until: d.valid_until.to_string(),
    }
}

/// An instant as RFC 3339 UTC text.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

pub fn show_slot(s: &nightmarket_store::ShowSchedule) -> nightmarket_wire::http::ShowSlot {
    nightmarket_wire::http::ShowSlot {
        market_id: s.market_id.to_string(),
        night_date: s.night_date.to_string(),
        slot_start: rfc3339(s.slot_start),
        slot_end: rfc3339(s.slot_end),
        slot_start_ms: s.slot_start,
        slot_end_ms: s.slot_end,
        stream_url: s.stream_url.clone(),
    }
}

/// A show's body from its stored row alone (no inventory): webhook payloads, and the base of
/// every show the API returns.
pub fn show_body(
    row: &nightmarket_store::ShowRow,
    status: nightmarket_domain::ShowStatus,
) -> nightmarket_wire::http::Show {
    nightmarket_wire::http::Show {
        id: row.id.to_string(),
        seller_id: row.seller_id.to_string(),
        title: row.title.clone(),
        status: status.as_str().to_owned(),
        lineup: row
            .lineup
            .iter()
            .map(|l| nightmarket_wire::http::ShowLineupItem {
                product_id: l.product.id.to_string(),
                stock: l.stock,
                buyer_limit: l.buyer_limit,
                product: Some(product_view(&l.product)),
            })
            .collect(),
        created_at: row.created_at,
        stock: None,
        seq: 0,
        schedule: row.schedule.as_ref().map(show_slot),
        live_at: row.live_at,
        closed_at: row.closed_at,
    }
}
