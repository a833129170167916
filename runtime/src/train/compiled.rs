//! Compiled right-hand sides of a lowered train task: the hook through which a compiler (the
//! Cranelift JIT of `npdec-jit`, which depends on this crate) replaces the tape's forward and
//! reverse sweeps of `F(u, θ)` inside the time steps.
//!
//! [`Network`](crate::train::adjoint::Network) keeps the time stepping, the Dirichlet rules, the
//! checkpointing, the initial values and the head on the tape, and calls a [`CompiledRates`] for
//! every evaluation of the rates and every vector–Jacobian product of the rates.

use crate::train::tape::ParamValues;
use ndarray::{Array2, ArrayView2};
use std::sync::atomic::{AtomicU64, Ordering};

/// One evaluation of a network on one chunk: a forward sweep and its reverse sweep. Calls of
/// [`CompiledRates`] that carry the same pass read the same parameter values, samples and labels,
/// so compiled code may reuse values computed from them without comparing those inputs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass(u64);

impl Pass {
    /// Returns a pass that no earlier call returned.
    pub fn fresh() -> Pass {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Pass(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// `F(u, θ)` of every state slot and its vector–Jacobian products, evaluated by compiled code.
///
/// Both methods take the states of a chunk as `[batch, slot.len()]` arrays in the tape's layout
/// (channels first, then the grid axes), the chunk's samples as `[batch, features]`, which the
/// `rhs` tape's `Input` and `Sequence` operations read, and its labels as `[batch, width]`, which
/// its `Label` operations read. Both must agree with the tape to rounding.
///
/// Under split-step Fourier, the rate of a split slot is the rate `a = re + i·im` of its pointwise
/// part ([`SplitSlot`](crate::train::lower::SplitSlot)): `re` in the first `points` entries of
/// each row, `im` in the next `points`.
pub trait CompiledRates: Send + Sync {
    /// Returns the rates `F(u, θ)` of every state slot at time step `step` and time `time`, as
    /// `[batch, slot.len()]` arrays (zero for a slot without an equation). `pass` is the pass of
    /// the chunk's evaluation when its caller keeps the inputs of one pass unchanged, else `None`.
    #[allow(clippy::too_many_arguments)]
    fn rates(
        &self,
        states: &[Array2<f64>],
        samples: ArrayView2<f64>,
        labels: ArrayView2<f64>,
        pass: Option<Pass>,
        params: &ParamValues,
        step: usize,
        time: f64,
    ) -> Vec<Array2<f64>>;

    /// Returns into how many chunks, one per thread, a batch of `samples` samples is split on
    /// `threads` threads (at most `threads`). Code that parallelizes inside one chunk returns
    /// fewer.
    fn chunks(&self, _samples: usize, threads: usize) -> usize {
        threads
    }

    /// Adds `F_uᵀ r̄` to `state_adjoints` and `F_θᵀ r̄` to `gradients` at step `step`, where `r̄`
    /// is `d_rates`, the cotangents of the rates, and the Jacobians are evaluated at `states`.
    /// With `state_adjoints` `None`, as in the last reverse step when the initial state depends on
    /// no parameter, only the parameter gradients are needed and work for `F_uᵀ r̄` may be skipped.
    #[allow(clippy::too_many_arguments)]
    fn rates_backward(
        &self,
        states: &[Array2<f64>],
        samples: ArrayView2<f64>,
        labels: ArrayView2<f64>,
        pass: Option<Pass>,
        params: &ParamValues,
        step: usize,
        time: f64,
        d_rates: &[Array2<f64>],
        state_adjoints: Option<&mut [Array2<f64>]>,
        gradients: &mut ParamValues,
    );
}
