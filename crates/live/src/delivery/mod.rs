//! Delivery: the show's channel, the shards that walk its viewers, and each viewer's socket.
//! The three are one mechanism (a channel hands work to shards, shards write to viewers, a
//! viewer that falls behind reads back from its channel), so they live in one module; the
//! rest of the crate (frames, inbound reading, config, metrics) depends on it, never the
//! other way round. Inside, the three depend one way: the channel on its shards, a shard on
//! its viewers, a viewer on `inbox` and `cell` below all three; a viewer reads back from its
//! channel through [`viewer::Source`], which the channel implements.

pub(crate) mod cell;
pub mod channel;
pub(crate) mod inbox;
pub(crate) mod shard;
pub(crate) mod viewer;
