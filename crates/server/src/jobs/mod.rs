//! Background work every node runs.

pub mod deadline;
pub mod health;
pub mod lifecycle;
pub mod order_service;
pub mod webhooks;
