//! Pluggable evaluation of a solve's right-hand sides.
//!
//! The interpreter evaluates the right-hand sides of every time step by default. A backend that
//! compiles graphs implements [`Compiler`]: the Cranelift JIT of `npdec-jit` does, and because it
//! depends on this crate, the command line passes it in through `RunOptions::compiler`. `run_model`
//! requests a compiled evaluation for each solve and falls back to the interpreter, with one warning
//! that names the reason, when a graph cannot be compiled.

use crate::evaluate::NodeValues;
use crate::value::{Real, Value};
use npdec_ir::graph::{Graph, NodeId};

/// A compiled evaluation of a graph's right-hand sides: the values of the requested roots.
pub trait CompiledRhs<T: Real> {
    /// Returns the values of the roots it was compiled for, indexed by node like the interpreter's.
    fn evaluate(&self, states: &[Option<Value<T>>], time: T) -> NodeValues<T>;
}

/// Whole explicit Euler steps compiled into fused sweeps, with the right-hand sides, the update and
/// the Dirichlet faces in one pass (and several steps per pass where the compiler blocks them).
pub trait CompiledSteps<T: Real> {
    /// Sets the state of an evolved field.
    fn set_state(&mut self, field: npdec_symbolic::FieldId, value: &Value<T>);
    /// Returns the state of an evolved field.
    fn state(&self, field: npdec_symbolic::FieldId) -> Option<Value<T>>;
    /// Takes `steps` steps; step `n`, counted from the first call, runs at `t = n · dt`.
    fn run(&mut self, steps: usize);
}

/// A backend that compiles the right-hand sides of a solve graph.
pub trait Compiler: Send + Sync + std::fmt::Debug {
    /// Returns a short name for messages, such as `JIT`.
    fn name(&self) -> &str;
    /// Compiles the evaluation of `roots` in f64, or returns the reason a node could not be compiled.
    fn compile_f64<'g>(
        &self,
        graph: &'g Graph,
        roots: &[NodeId],
    ) -> Result<Box<dyn CompiledRhs<f64> + 'g>, String>;
    /// Compiles the evaluation of `roots` in f32.
    fn compile_f32<'g>(
        &self,
        graph: &'g Graph,
        roots: &[NodeId],
    ) -> Result<Box<dyn CompiledRhs<f32> + 'g>, String>;
    /// Compiles whole explicit Euler steps of a graph in f64, or returns why it cannot.
    fn compile_euler_f64(&self, _graph: &Graph) -> Result<Box<dyn CompiledSteps<f64>>, String> {
        Err(format!("the {} does not compile whole steps", self.name()))
    }
    /// Compiles whole explicit Euler steps of a graph in f32, or returns why it cannot.
    fn compile_euler_f32(&self, _graph: &Graph) -> Result<Box<dyn CompiledSteps<f32>>, String> {
        Err(format!("the {} does not compile whole steps", self.name()))
    }
    /// Compiles the rates of a lowered train task and their vector–Jacobian products, which
    /// training and gradient checks then use inside the Euler and RK4 steps, or returns the reason
    /// (naming the operation) why it cannot. With `precision` `F32` the compiled code may compute
    /// in `f32` throughout (rates, adjoints and products); with `F64` it computes in `f64`.
    fn compile_rates(
        &self,
        _task: &crate::train::lower::LoweredTask,
        _precision: crate::train::gemm::ProductPrecision,
    ) -> Result<Box<dyn crate::train::compiled::CompiledRates>, String> {
        Err(format!(
            "the {} does not compile the adjoint of train tasks",
            self.name()
        ))
    }
}
