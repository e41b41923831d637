//! Reconciliation: before a show's claims become orders, the recorded claim log must agree with
//! the inventory's own counters at the close and with the show's rules. Any disagreement stops
//! settlement of that show and is reported item by item.

use nightmarket_store::{CloseMarker, LogTally, ShowRow};
use serde::{Deserialize, Serialize};

/// One product's accounts: what was allotted and left at the close against the claim log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductAccount {
    pub product_id: String,
    pub allotted: u64,
    /// From the close marker; `None` when the marker does not name the product.
    pub left_at_close: Option<u64>,
    pub claims: u64,
    pub claimed_units: u64,
    pub cancels: u64,
    pub cancelled_units: u64,
    /// `allotted - left_at_close == claimed_units - cancelled_units`.
    pub balanced: bool,
}

/// A buyer holding more of a product than its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverLimit {
    pub buyer_id: String,
    pub product_id: String,
    pub units: u64,
    pub limit: u64,
}

/// The whole reconciliation, kept with the settlement (or the mismatch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub balanced: bool,
    /// Entries the close marker says the log holds.
    pub log_entries_expected: u64,
    /// Entries recorded in the store.
    pub log_entries_recorded: u64,
    pub products: Vec<ProductAccount>,
    pub over_limit: Vec<OverLimit>,
    pub unmatched_cancels: u64,
    pub double_cancels: u64,
    /// Every disagreement, one sentence each; empty when balanced.
    pub problems: Vec<String>,
}

/// Checks the recorded log of `show` against its close marker.
pub fn reconcile(show: &ShowRow, close: &CloseMarker, tally: &LogTally) -> Report {
    let mut problems = Vec::new();
    // The log: positions 0..close.pos, each recorded once.
    let contiguous = match tally.max_pos {
        None => close.pos == 0,
        Some(max) => max + 1 == close.pos,
    };
    if tally.entries != close.pos || !contiguous {
        problems.push(format!(
            "claim log: the close marker follows {} entries, the store recorded {} (highest position {})",
            close.pos,
            tally.entries,
            tally.max_pos.map_or("none".to_owned(), |p| p.to_string())
        ));
    }
    let mut products = Vec::with_capacity(show.lineup.len());
    for line in &show.lineup {
        let id = line.product.id.as_str();
        let left = close
            .final_stock
            .iter()
            .find(|(p, _)| p.as_str() == id)
            .map(|(_, l)| u64::from(*l));
        let t = tally
            .products
            .iter()
            .find(|t| t.product_id == id)
            .cloned()
            .unwrap_or_default();
        let allotted = u64::from(line.stock);
        let net = t.claimed_units.checked_sub(t.cancelled_units);
        let sold = left.and_then(|l| allotted.checked_sub(l));
        let balanced = sold.is_some() && net.is_some() && sold == net;
        if !balanced {
            problems.push(match (left, net) {
                (None, _) => format!("product {id}: the close marker has no stock for it"),
                (Some(l), Some(n)) => format!(
                    "product {id}: allotted {allotted} - left at close {l} = {} but the log holds {} claimed - {} cancelled = {n}",
                    allotted as i128 - l as i128,
                    t.claimed_units,
                    t.cancelled_units
                ),
                (Some(_), None) => format!(
                    "product {id}: {} units cancelled but only {} claimed",
                    t.cancelled_units, t.claimed_units
                ),
            });
        }
        products.push(ProductAccount {
            product_id: id.to_owned(),
            allotted,
            left_at_close: left,
            claims: t.claims,
            claimed_units: t.claimed_units,
            cancels: t.cancels,
            cancelled_units: t.cancelled_units,
            balanced,
        });
    }
    for t in &tally.products {
        if !show
            .lineup
            .iter()
            .any(|l| l.product.id.as_str() == t.product_id)
        {
            problems.push(format!(
                "product {}: {} claims in the log but not in the show's lineup",
                t.product_id, t.claims
            ));
        }
    }
    for (p, _) in &close.final_stock {
        if !show.lineup.iter().any(|l| &l.product.id == p) {
            problems.push(format!(
                "product {p}: in the close marker but not in the show's lineup"
            ));
        }
    }
    let over_limit: Vec<OverLimit> = tally
        .over_limit
        .iter()
        .map(|(buyer, product, units)| OverLimit {
            buyer_id: buyer.clone(),
            product_id: product.clone(),
            units: *units,
            limit: show
                .lineup
                .iter()
                .find(|l| l.product.id.as_str() == product)
                .map_or(0, |l| u64::from(l.buyer_limit)),
        })
        .collect();
    for o in &over_limit {
        problems.push(format!(
            "buyer {} holds {} of product {}, above the limit of {}",
            o.buyer_id, o.units, o.product_id, o.limit
        ));
    }
    if tally.unmatched_cancels > 0 {
        problems.push(format!(
            "{} cancellations name no earlier claim with the same buyer, product, quantity, price and flash",
            tally.unmatched_cancels
        ));
    }
    if tally.double_cancels > 0 {
        problems.push(format!(
            "{} claims are cancelled more than once",
            tally.double_cancels
        ));
    }
    Report {
        balanced: problems.is_empty(),
        log_entries_expected: close.pos,
        log_entries_recorded: tally.entries,
        products,
        over_limit,
        unmatched_cancels: tally.unmatched_cancels,
        double_cancels: tally.double_cancels,
        problems,
    }
}
