//! The crate's integration tests as one binary, a module per file: each test binary compiles its
//! own copy of the generic model code for every backend (docs/performance.md, "CI time").
//! `cargo test --test it parity::` runs one file's tests.

mod bad_input;
mod chat;
mod demo_wgpu;
mod llamafactory;
mod no_unwrap;
