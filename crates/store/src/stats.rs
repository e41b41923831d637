//! Post-show statistics: claims refused per reason and peak viewers.
//!
//! Every node counts in memory and sends its own figures here now and then. Rows are keyed by
//! node, so nodes never write the same row; and every write keeps the larger of the stored and
//! the sent value, because what a node sends only ever grows (a refusal count is the node's
//! running total, a viewer figure the most seen in a minute so far). A batch sent twice, or an
//! older batch arriving after a newer one, therefore changes nothing. A show's figure adds the
//! nodes up when it is read.

use nightmarket_domain::{Millis, ShowId};

use crate::params;
use crate::sql::Step;
use crate::{Store, StoreError, corrupt};

/// A node's running total of claims refused in one show for one reason (a wire error code,
/// e.g. `sold_out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalTotal {
    pub show: ShowId,
    pub reason: String,
    pub count: u64,
}

/// The most viewers a node saw watching one show within one minute; `minute` counts whole
/// minutes since the Unix epoch (UTC milliseconds / 60 000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerSample {
    pub show: ShowId,
    pub minute: i64,
    pub viewers: u64,
}

/// What one node sends in one flush.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowStatsBatch {
    pub refusals: Vec<RefusalTotal>,
    pub viewers: Vec<ViewerSample>,
}

impl ShowStatsBatch {
    pub fn is_empty(&self) -> bool {
        self.refusals.is_empty() && self.viewers.is_empty()
    }
}

/// The store's integers are signed 64-bit; a count beyond that is not reachable in practice,
/// and saturating keeps the "larger wins" rule meaningful if it ever were.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn count(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative show statistic {v}")))
}

// CASE rather than GREATEST (PostgreSQL) or MAX(a, b) (SQLite): the one spelling both accept.
const UPSERT_REFUSALS: &str = "INSERT INTO show_refusals (show_id, node_id, reason, count)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (show_id, node_id, reason) DO UPDATE SET count =
         CASE WHEN excluded.count > show_refusals.count THEN excluded.count
              ELSE show_refusals.count END";

const UPSERT_VIEWERS: &str = "INSERT INTO show_viewers (show_id, node_id, minute, viewers)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (show_id, node_id, minute) DO UPDATE SET viewers =
         CASE WHEN excluded.viewers > show_viewers.viewers THEN excluded.viewers
              ELSE show_viewers.viewers END";

impl Store {
    /// Records what `node` counted, in one transaction: for each row the larger of the stored
    /// and the sent value is kept, so re-sending a batch is harmless.
    pub async fn record_show_stats(
        &self,
        node: &str,
        batch: &ShowStatsBatch,
    ) -> Result<(), StoreError> {
        self.record_show_stats_of(&[(node, node, batch)]).await
    }

    /// [`Store::record_show_stats`] for several batches at once, in one transaction: each
    /// batch's refusals under the first id, its viewers under the second. A node flushing the
    /// statistics of 50 shows commits (and syncs) once, not twice per show.
    pub async fn record_show_stats_of(
        &self,
        parts: &[(&str, &str, &ShowStatsBatch)],
    ) -> Result<(), StoreError> {
        // One statement per row, the same text each time: PostgreSQL prepares it once per
        // connection, and a key repeated within a batch cannot trip a multi-row upsert.
        let mut steps = Vec::new();
        for &(refusals_by, viewers_by, batch) in parts {
            steps.extend(batch.refusals.iter().map(|r| {
                Step::new(
                    UPSERT_REFUSALS,
                    params![
                        r.show.as_str(),
                        refusals_by,
                        r.reason.as_str(),
                        int(r.count)
                    ],
                )
            }));
            steps.extend(batch.viewers.iter().map(|v| {
                Step::new(
                    UPSERT_VIEWERS,
                    params![v.show.as_str(), viewers_by, v.minute, int(v.viewers)],
                )
            }));
        }
        if steps.is_empty() {
            return Ok(());
        }
        self.engine.transaction(steps).await?;
        Ok(())
    }

    /// Claims refused in `show`, per reason, summed over every node; ordered by reason.
    pub async fn show_refusals(&self, show: &ShowId) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT reason, CAST(SUM(count) AS BIGINT) FROM show_refusals WHERE show_id = $1
                 GROUP BY reason",
                params![show.as_str()],
            )
            .await?;
        let mut out = rows
            .iter()
            .map(|r| Ok((r.text(0)?, count(r.int(1)?)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Sorted here rather than by ORDER BY: PostgreSQL orders text by the database's
        // collation, SQLite by bytes; reasons must come out the same on both.
        out.sort();
        Ok(out)
    }

    /// The most viewers `show` had at once: per minute the nodes' figures add up, and the
    /// largest minute wins. 0 when nothing was recorded.
    pub async fn show_peak_viewers(&self, show: &ShowId) -> Result<u64, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT CAST(COALESCE(MAX(total), 0) AS BIGINT) FROM (
                     SELECT SUM(viewers) AS total FROM show_viewers WHERE show_id = $1
                     GROUP BY minute) AS per_minute",
                params![show.as_str()],
            )
            .await?;
        match rows.first() {
            Some(r) => count(r.int(0)?),
            None => Ok(0),
        }
    }

    /// Viewers of `show` in the newest minute any node reported at or after `since_minute`,
    /// summed over nodes; 0 when none did (the show is not being watched).
    pub async fn show_recent_viewers(
        &self,
        show: &ShowId,
        since_minute: i64,
    ) -> Result<u64, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT CAST(COALESCE(SUM(viewers), 0) AS BIGINT) FROM show_viewers
                 WHERE show_id = $1 AND minute = (
                     SELECT MAX(minute) FROM show_viewers WHERE show_id = $1 AND minute >= $2)",
                params![show.as_str(), since_minute],
            )
            .await?;
        match rows.first() {
            Some(r) => count(r.int(0)?),
            None => Ok(0),
        }
    }

    /// What the recorded claim log of `show` says so far, for the live panels: per product the
    /// value of units held (claims minus the cancellations that repeat them), the claims
    /// accepted at or after `since`, and how many entries are recorded.
    pub async fn live_sales(&self, show: &ShowId, since: Millis) -> Result<LiveSales, StoreError> {
        let rows = self
            .engine
            .query(
                "SELECT product_id,
                     CAST(SUM(CASE WHEN kind = 'claim' THEN quantity * unit_price
                                   ELSE -(quantity * unit_price) END) AS BIGINT),
                     CAST(SUM(CASE WHEN kind = 'claim' AND at >= $2 THEN 1 ELSE 0 END) AS BIGINT),
                     CAST(COUNT(*) AS BIGINT)
                 FROM claim_log_entries WHERE show_id = $1 GROUP BY product_id",
                params![show.as_str(), since],
            )
            .await?;
        let mut out = LiveSales::default();
        for r in &rows {
            out.gmv.push((r.text(0)?, r.int(1)?));
            out.claims_since += count(r.int(2)?)?;
            out.entries += count(r.int(3)?)?;
        }
        out.gmv.sort();
        Ok(out)
    }
}

/// See [`Store::live_sales`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSales {
    /// Per product id: đồng held by buyers now.
    pub gmv: Vec<(String, i64)>,
    pub claims_since: u64,
    pub entries: u64,
}
