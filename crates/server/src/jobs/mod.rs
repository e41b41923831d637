//! Background work every node runs, each loop stopping with the shutdown flag: shows opened and
//! closed on their slots, unpaid orders cancelled, webhooks delivered, the order service, the
//! dependency probers, and the upkeep of the node's statistics and metrics.

pub mod deadline;
pub mod health;
pub mod lifecycle;
pub mod order_service;
pub mod stats;
pub mod webhooks;
