//! Delivery: the show's channel, the shards that walk its viewers, and each viewer's socket.
//! The three are one mechanism (a channel hands work to shards, shards write to viewers, a
//! viewer that falls behind reads back from its channel), so they live in one module; the
//! rest of the crate (frames, inbound reading, config, metrics) depends on it, never the
//! other way round.

pub(crate) mod cell;
pub mod channel;
pub(crate) mod shard;
pub(crate) mod viewer;
