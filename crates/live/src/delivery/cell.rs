//! What a channel, its shards and its viewers all name, below the three: the kinds of a
//! channel's cells (values that only matter as "latest": the stock, the claim feed, the viewer
//! count), a sequenced frame, and the bridge that brings a lagging viewer to the newest state.

use crate::frame::Frame;

/// A value that only matters as "latest": a viewer is sent the newest one, never a backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    Stock,
    Feed,
    Viewers,
}

impl CellKind {
    pub(crate) const ALL: [CellKind; 3] = [CellKind::Stock, CellKind::Feed, CellKind::Viewers];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn bit(self) -> u8 {
        1 << self.index()
    }
}

/// A sequenced frame.
#[derive(Debug, Clone)]
pub struct Sequenced {
    pub seq: u64,
    pub frame: Frame,
}

/// A catch-up frame standing for every event up to `seq`, and the events after it up to the
/// point the viewer is brought to.
pub(crate) struct Bridge {
    pub(crate) seq: u64,
    pub(crate) frame: Frame,
    pub(crate) tail: Vec<Sequenced>,
}
