//! Fan-out benchmark (placeholder until the measurement harness lands).

fn main() {}
