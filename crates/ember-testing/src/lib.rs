//! Test support shared by ember's crates (a dev-dependency only; nothing here ships).
//!
//! - [`close`]: tolerance checks that treat NaN and infinity as failures, naming the index.
//! - [`env`]: what a test needs from its machine (`../shared`, the fixture Python) and how it skips
//!   when that is absent: a reason on stderr, or a failure where the run requires it (CI).
//! - [`fuzz`]: bounded fuzzing of the parsers of user files (mutations of valid inputs).
//! - [`hub_server`]: a Hugging Face Hub on 127.0.0.1 serving test directories.
//! - [`backends`]: the backends the parity tests run on, and the check that they ran on all of them.

pub mod backends;
pub mod close;
pub mod env;
pub mod fuzz;
pub mod hub_server;

pub use backends::{Needs, assert_backend_coverage, for_each_backend, for_each_backend_with};
pub use close::{assert_finite, l2_diff, max_abs, max_abs_diff, max_rel_diff, rel};
pub use env::{fixture_python, note, shared_dir, skip_or_fail};
