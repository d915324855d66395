//! The PyO3 binding layer: converts Python arguments to owned Rust values, calls the core, and
//! converts results and errors back. No observability logic lives here.

pub mod audit;
pub mod errors;
pub mod metrics;
pub mod tracing;
