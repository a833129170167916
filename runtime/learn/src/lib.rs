//! Training building blocks for npdec that do not depend on the IR: data sets and mini-batches,
//! losses and metrics, optimizers, binomial checkpointing of the reverse sweep, checkpoint files
//! and training reports.
//!
//! A training loop built on this crate reads a model's data source with
//! [`data::load_data_source`] and draws each epoch's order from a [`data::ShuffleRng`]. It steps
//! a [`optim::StepOptimizer`], or runs [`optim::minimize`] for L-BFGS, or
//! [`optim::fit_linear_readout`] for a closed-form readout. It reverses its time steps with
//! [`revolve::reverse_with_checkpoints`], saves a [`checkpoint::Checkpoint`] after each epoch and
//! reports with [`report::EpochProgress`] and the plots in [`report`].

pub mod checkpoint;
pub mod data;
pub mod loss;
pub mod optim;
pub mod report;
pub mod revolve;

/// Formats a count with its noun, singular for one: `1 parameter`, `2 parameters`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
