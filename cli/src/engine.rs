//! The Cranelift JIT as the runtime's compiler for solves (`npdec run --engine jit`, the default).

use npdec_ir::graph::{Graph, NodeId};
use npdec_jit::{JitEvaluator, JitFloat, JitOptions};
use npdec_runtime::engine::{CompiledRhs, Compiler};
use npdec_runtime::Value;

/// Compiles right-hand sides with `npdec-jit`.
#[derive(Debug)]
pub struct Jit {
    pub options: JitOptions,
}

struct Compiled<T: JitFloat>(JitEvaluator<T>);

impl<T: JitFloat> CompiledRhs<T> for Compiled<T> {
    fn evaluate(&self, states: &[Option<Value<T>>], time: T) -> Vec<Option<Value<T>>> {
        self.0.evaluate(states, time)
    }
}

impl Jit {
    fn compile<'g, T: JitFloat>(
        &self,
        graph: &'g Graph,
        roots: &[NodeId],
    ) -> Result<Box<dyn CompiledRhs<T> + 'g>, String> {
        let evaluator = JitEvaluator::<T>::new(graph, roots, &self.options)
            .map_err(|unsupported| unsupported.to_string())?;
        tracing::debug!(graph = %graph.name, ms = evaluator.compile_time().as_secs_f64() * 1e3, "compiled the right-hand sides");
        Ok(Box::new(Compiled(evaluator)))
    }
}

impl Compiler for Jit {
    fn name(&self) -> &str {
        "JIT"
    }

    fn compile_f64<'g>(
        &self,
        graph: &'g Graph,
        roots: &[NodeId],
    ) -> Result<Box<dyn CompiledRhs<f64> + 'g>, String> {
        self.compile(graph, roots)
    }

    fn compile_f32<'g>(
        &self,
        graph: &'g Graph,
        roots: &[NodeId],
    ) -> Result<Box<dyn CompiledRhs<f32> + 'g>, String> {
        self.compile(graph, roots)
    }
}
