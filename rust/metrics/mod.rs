//! Metrics pillar: lock-free series storage and Prometheus/OpenMetrics text encoding.

pub mod float;
