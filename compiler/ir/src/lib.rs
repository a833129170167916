//! Finite-difference discretization of checked models and the dataflow IR.
//!
//! The pipeline of this crate, in order:
//! 1. [`simplify`] folds constants in the model's expressions;
//! 2. [`discretize_model`] expands derivative operators into stencils ([`fornberg`]), boundary
//!    conditions into ghost-cell rules ([`ghost_cells`]) and builds one [`Graph`] per solve task;
//! 3. [`verify`] checks the graph's invariants;
//! 4. [`analyze_stability`] computes the largest stable step of explicit schemes;
//! 5. [`dump_graph`] prints a graph for golden tests and `npdec explain`.
//!
//! The graphs are executed by the reference interpreter in `npdec-runtime`.

pub mod discretize;
pub mod dump;
pub mod fornberg;
pub mod ghost_cells;
pub mod graph;
pub mod model_builder;
pub mod pointwise;
pub mod simplify;
pub mod stability;
pub mod verify;

pub use discretize::{discretize_expects, discretize_model, discretize_solve, SPACE_ORDERS};
pub use dump::dump_graph;
pub use graph::*;
pub use simplify::simplify;
pub use stability::{analyze_stability, StabilityLimit};
pub use verify::{verify, VerifyError};
