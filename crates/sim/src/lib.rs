//! Discord simulator.
