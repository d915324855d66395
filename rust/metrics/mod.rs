//! Metrics pillar: lock-free series storage and Prometheus/OpenMetrics text encoding.
//!
//! - [`names`]: metric/label name rules and prefix joining.
//! - [`cells`]: the 64-bit atomic cells that hold every counter, gauge and histogram value.
//! - [`sketch`]: the sliding-window DDSketch behind summary quantiles.
//! - [`registry`]: families, series, the concurrent label-set map, the cardinality limit.
//! - [`encode`]: Prometheus text 0.0.4 and OpenMetrics 1.0 exposition.
//! - [`crate::fork`] (shared): the fork gate; no metrics lock is held across `fork()`.
//! - [`multiprocess`]: values in memory-mapped files shared by pre-fork workers.

pub mod cells;
pub mod encode;
pub mod exposition_text;
pub mod multiprocess;
pub mod names;
pub mod registry;
pub mod sketch;
