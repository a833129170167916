//! The reference interpreter and time integration.
//!
//! Executes the dataflow graphs of `npdec-ir` on `ndarray` arrays, in `f32` or `f64`, with complex
//! fields through `num-complex`. This is the ground truth other backends are tested against, so it
//! favours plain array operations over speed.
//!
//! - [`evaluate`]: one array operation per graph node;
//! - [`padding`]: ghost cells and Dirichlet values;
//! - [`stepping`]: the time schemes, with [`krylov`] for implicit steps and [`spectral`] for split-step
//!   Fourier;
//! - [`train`]: the discrete adjoint and the training loop of `train` tasks;
//! - [`run`]: [`run_model`], the entry point of `npdec run`, and [`output`] for the files it writes.

pub mod engine;
pub mod evaluate;
pub mod krylov;
pub mod memory;
pub mod output;
pub mod padding;
pub mod pointwise;
pub mod run;
pub mod spectral;
pub mod stepping;
pub mod train;
pub mod value;
pub mod vtk;

pub use run::{
    run_model, ExpectResult, Precision, RunOptions, RunReport, StabilityPolicy, TaskMetrics,
};
pub use stepping::{SolveCounters, States, Stepper};
pub use value::{Real, Value};
