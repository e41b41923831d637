//! Fan-out to the connections of this node.

pub mod inbox;
