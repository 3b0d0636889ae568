//! Placeholder replaced by the load tool.
fn main() {}
