//! The claim log as the order service reads it, and the checks settlement makes before a show's
//! claims become orders.
//!
//! The log is the show's decisions in order: every accepted claim, every cancellation, and, once
//! the show has closed, one close marker carrying the stock left at that instant. Nothing follows
//! the marker, so a reader that has seen it has seen everything the show will ever accept.

use serde::{Deserialize, Serialize};

use crate::{ClaimRecord, Millis, ProductId};

/// One claim-log entry. `pos` numbers claims and cancellations from 0 without gaps; the close
/// marker's `pos` is the count of entries before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogEntry {
    Claim {
        pos: u64,
        record: ClaimRecord,
    },
    /// The cancellation of an earlier claim, with that claim's terms.
    Cancel {
        pos: u64,
        record: ClaimRecord,
        at: Millis,
    },
    Close {
        pos: u64,
        at: Millis,
        final_stock: Vec<(ProductId, u32)>,
    },
}

impl LogEntry {
    pub fn pos(&self) -> u64 {
        match self {
            Self::Claim { pos, .. } | Self::Cancel { pos, .. } | Self::Close { pos, .. } => *pos,
        }
    }
}

/// Where a reader of the claim log stands: the position of the next entry, plus the backend's
/// own resume token (a Redis stream id; empty for the embedded journal, which pages by position).
/// Stored with each recorded batch, so a restarted order service resumes where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    pub next_pos: u64,
    pub token: String,
}

/// One page of the claim log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    /// Pass back to read on; equal to the cursor given when nothing new was there.
    pub next: LogCursor,
}

impl LogPage {
    /// The close marker, when this page reached it.
    pub fn close(&self) -> Option<&LogEntry> {
        self.entries
            .iter()
            .find(|e| matches!(e, LogEntry::Close { .. }))
    }
}

/// A claim or cancellation as the store records it (the close marker is kept apart): a
/// [`LogEntry::Claim`] or [`LogEntry::Cancel`] in one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEntry {
    pub pos: u64,
    pub cancel: bool,
    /// When the entry was decided: the claim's own instant, or its cancellation's.
    pub at: Millis,
    /// The claim; for a cancellation, the claim it cancels, whose terms it records.
    pub record: ClaimRecord,
}

impl RecordedEntry {
    /// The claim or cancellation an entry records; `None` for the close marker.
    pub fn from_entry(e: &LogEntry) -> Option<Self> {
        let (pos, record, cancel, at) = match e {
            LogEntry::Claim { pos, record } => (*pos, record, false, record.at),
            LogEntry::Cancel { pos, record, at } => (*pos, record, true, *at),
            LogEntry::Close { .. } => return None,
        };
        Some(Self {
            pos,
            cancel,
            at,
            record: record.clone(),
        })
    }
}
