//! Webhooks and their delivery log. An event is enqueued in the same transaction as the change
//! it reports (a show's transition), once per subscribed webhook: the delivery id is derived
//! from the event id and the webhook id, so a second writer of the same event adds nothing.
//! Deliverers on any node lease due deliveries, so each attempt is made by one node; a lease
//! that expires (the node died mid-attempt) makes the delivery due again: at least once.

use nightmarket_domain::Millis;

use crate::catalog::{CREATED_ORDER, NEWEST_ORDER, conflict, created_key};
use crate::page::{Keyset, Paged};
use crate::params;
use crate::sql::{Row, Step};
use crate::{Store, StoreError, corrupt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    /// The HMAC-SHA256 key the receiver verifies signatures with.
    pub secret: String,
    /// Event names subscribed to (`show.scheduled`, `show.live`, ...); `*` is every event.
    pub events: Vec<String>,
    pub active: bool,
    pub created_by: String,
    pub created_at: Millis,
}

/// An event to deliver: `id` is unique per occurrence (e.g. `show.live:<show id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub id: String,
    pub name: String,
    /// The JSON body POSTed.
    pub payload: String,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event: String,
    pub payload: String,
    /// `pending`, `delivered` or `failed` (attempts exhausted).
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        status: u16,
        at: Millis,
    },
    /// Try again at `next_at`.
    Retry {
        status: Option<u16>,
        error: String,
        next_at: Millis,
    },
    /// No more attempts.
    Failed {
        status: Option<u16>,
        error: String,
    },
}

/// The statement that enqueues `ev` for every active webhook subscribed to it.
pub(crate) fn enqueue_step(ev: &WebhookEvent) -> Step {
    Step::new(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event, payload, state, attempts,
             next_attempt_at, created_at)
         SELECT CAST($1 AS TEXT) || '/' || id, id, CAST($1 AS TEXT), CAST($2 AS TEXT),
             CAST($3 AS TEXT), 'pending', 0, CAST($4 AS BIGINT), CAST($4 AS BIGINT)
         FROM webhooks
         WHERE active = 1 AND (events = '*' OR ',' || events || ',' LIKE CAST($5 AS TEXT))
         ON CONFLICT (id) DO NOTHING",
        params![
            &ev.id,
            &ev.name,
            &ev.payload,
            ev.at,
            format!("%,{},%", ev.name)
        ],
    )
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event, payload, state, attempts, \
     next_attempt_at, last_status, last_error, created_at, delivered_at";

fn delivery_from(r: &Row) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        id: r.text(0)?,
        webhook_id: r.text(1)?,
        event_id: r.text(2)?,
        event: r.text(3)?,
        payload: r.text(4)?,
        state: r.text(5)?,
        attempts: r.u32(6)?,
        next_attempt_at: r.int(7)?,
        last_status: r.opt_int(8)?,
        last_error: r.opt_text(9)?,
        created_at: r.int(10)?,
        delivered_at: r.opt_int(11)?,
    })
}

fn webhook_from(r: &Row) -> Result<WebhookRow, StoreError> {
    Ok(WebhookRow {
        id: r.text(0)?,
        url: r.text(1)?,
        secret: r.text(2)?,
        events: r.text(3)?.split(',').map(str::to_owned).collect(),
        active: r.bool(4)?,
        created_by: r.text(5)?,
        created_at: r.int(6)?,
    })
}

impl Store {
    pub async fn create_webhook(&self, w: &WebhookRow) -> Result<(), StoreError> {
        if w.events.iter().any(|e| e.contains(',') || e.is_empty()) {
            return Err(corrupt(
                "webhook event names must be non-empty and contain no comma",
            ));
        }
        self.engine
            .execute(
                "INSERT INTO webhooks (id, url, secret, events, active, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                params![
                    &w.id,
                    &w.url,
                    &w.secret,
                    w.events.join(","),
                    w.active,
                    &w.created_by,
                    w.created_at,
                ],
            )
            .await
            .map_err(|e| conflict(e, format!("webhook {}", w.id)))?;
        Ok(())
    }

    /// A page of the webhooks, oldest first.
    pub async fn webhooks(&self, page: &Keyset) -> Result<Paged<WebhookRow>, StoreError> {
        self.query_page(
            "SELECT id, url, secret, events, active, created_by, created_at FROM webhooks",
            None,
            params![],
            CREATED_ORDER,
            page,
            webhook_from,
            |w| created_key(w.created_at, &w.id),
        )
        .await
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<WebhookRow>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT id, url, secret, events, active, created_by, created_at FROM webhooks WHERE id = $1",
                params![id],
            )
            .await?;
        rows.first().map(webhook_from).transpose()
    }

    /// Turns a webhook on or off; returns whether it exists.
    pub async fn set_webhook_active(&self, id: &str, active: bool) -> Result<bool, StoreError> {
        let n = self
            .engine
            .execute(
                "UPDATE webhooks SET active = $2 WHERE id = $1",
                params![id, active],
            )
            .await?;
        Ok(n == 1)
    }

    /// Enqueues an event outside any other change (e.g. `show.settled`).
    pub async fn enqueue_event(&self, ev: &WebhookEvent) -> Result<(), StoreError> {
        self.engine.transaction(vec![enqueue_step(ev)]).await?;
        Ok(())
    }

    /// Leases up to `limit` due deliveries until `now + lease_ms` and counts the attempt.
    /// Concurrent callers never receive the same delivery while its lease runs.
    pub async fn lease_deliveries(
        &self,
        now: Millis,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<(DeliveryRow, WebhookRow)>, StoreError> {
        let out = self
            .engine
            .transaction(vec![Step::new(
                format!(
                    "UPDATE webhook_deliveries SET lease_until = $1, attempts = attempts + 1
                     WHERE id IN (
                         SELECT id FROM webhook_deliveries
                         WHERE state = 'pending' AND next_attempt_at <= $2
                           AND (lease_until IS NULL OR lease_until <= $2)
                         ORDER BY next_attempt_at, id LIMIT $3)
                       AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $2)
                     RETURNING {DELIVERY_COLUMNS}"
                ),
                params![now + lease_ms, now, limit],
            )])
            .await?;
        let mut leased = Vec::new();
        for r in out.into_iter().flat_map(|o| o.rows) {
            let d = delivery_from(&r)?;
            let Some(w) = self.webhook(&d.webhook_id).await? else {
                return Err(corrupt(format!("delivery {} of a missing webhook", d.id)));
            };
            leased.push((d, w));
        }
        leased.sort_by(|a, b| (a.0.next_attempt_at, &a.0.id).cmp(&(b.0.next_attempt_at, &b.0.id)));
        Ok(leased)
    }

    /// Records what an attempt came to and releases the lease.
    pub async fn record_attempt(
        &self,
        id: &str,
        outcome: &DeliveryOutcome,
    ) -> Result<(), StoreError> {
        let (sql, params) = match outcome {
            DeliveryOutcome::Delivered { status, at } => (
                "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = $2, last_status = $3,
                     last_error = NULL, lease_until = NULL WHERE id = $1",
                params![id, *at, i64::from(*status)],
            ),
            DeliveryOutcome::Retry { status, error, next_at } => (
                "UPDATE webhook_deliveries SET next_attempt_at = $2, last_status = $3, last_error = $4,
                     lease_until = NULL WHERE id = $1",
                params![id, *next_at, status.map(i64::from), error.as_str()],
            ),
            DeliveryOutcome::Failed { status, error } => (
                "UPDATE webhook_deliveries SET state = 'failed', last_status = $2, last_error = $3,
                     lease_until = NULL WHERE id = $1",
                params![id, status.map(i64::from), error.as_str()],
            ),
        };
        self.engine.execute(sql, params).await?;
        Ok(())
    }

    /// Makes delivery `id` of `webhook` due again now (an operator's manual redelivery);
    /// returns whether that webhook has that delivery.
    pub async fn redeliver(
        &self,
        webhook: &str,
        id: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let n = self
            .engine
            .execute(
                "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $2, lease_until = NULL
                 WHERE id = $1 AND webhook_id = $3",
                params![id, now, webhook],
            )
            .await?;
        Ok(n == 1)
    }

    /// The delivery log of one webhook (or of all when `None`), newest first.
    pub async fn deliveries(
        &self,
        webhook: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let rows = match webhook {
            Some(w) => {
                self.engine
                    .query(
                        &format!(
                            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1
                             ORDER BY created_at DESC, id DESC LIMIT $2"
                        ),
                        params![w, limit],
                    )
                    .await?
            }
            None => {
                self.engine
                    .query(
                        &format!(
                            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                             ORDER BY created_at DESC, id DESC LIMIT $1"
                        ),
                        params![limit],
                    )
                    .await?
            }
        };
        rows.iter().map(delivery_from).collect()
    }

    /// A page of one webhook's delivery log, newest first.
    pub async fn webhook_deliveries(
        &self,
        webhook: &str,
        page: &Keyset,
    ) -> Result<Paged<DeliveryRow>, StoreError> {
        self.query_page(
            &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries"),
            Some("webhook_id = $1"),
            params![webhook],
            NEWEST_ORDER,
            page,
            delivery_from,
            |d| created_key(d.created_at, &d.id),
        )
        .await
    }
}
