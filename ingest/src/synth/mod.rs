//! Synthetic workload (placeholder).
