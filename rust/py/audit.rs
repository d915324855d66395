//! Python bindings of the audit core.
