//! Training: the discrete adjoint of explicit time stepping and the training loop of `train`
//! tasks.
//!
//! - [`tape`]: batched array operations with their vector–Jacobian products;
//! - [`gemm`]: the dense matrix products of the tape and of compiled code, in `f64` or `f32`;
//! - [`linear`]: stencils and padding composed with ghost-cell rules, as sparse matrices;
//! - [`lower`]: a train task's equations, initial values, readouts and loss as tapes;
//! - [`adjoint`]: Euler, RK4 and split-step Fourier forward and reverse steps with binomial
//!   checkpointing;
//! - [`compiled`]: the hook through which a compiler runs the rates and their adjoint inside the
//!   steps;
//! - [`spectral`]: the Fourier half step of split-step training on complex states;
//! - [`diffractive`]: the phase masks, distances and detectors of a trained split-step task;
//! - [`params`]: initial parameter values and the flat vector optimizers see;
//! - [`gradcheck`]: Taylor and dot tests of the adjoint gradient;
//! - [`training`]: mini-batches across threads, optimizers, checkpoints and reports.

pub mod adjoint;
pub mod compiled;
pub mod diffractive;
pub mod gemm;
pub mod gradcheck;
pub mod linear;
pub mod lower;
pub mod params;
pub mod spectral;
pub mod tape;
pub mod training;

pub use gradcheck::{
    check_gradients, check_gradients_compiled, GradientCheck, GradientCheckReport,
};
pub use training::{train_task, TrainError, TrainErrorSubject, TrainOptions, TrainReport};
