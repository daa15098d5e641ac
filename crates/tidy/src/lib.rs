//! Holds no code: its tests check the architecture invariants of ARCHITECTURE.md against the
//! workspace as it is (the dependency graph from `cargo metadata`, and the pure crates' sources).
