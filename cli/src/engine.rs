//! The Cranelift JIT as the runtime's compiler for solves and for the adjoint of training
//! (`npdec run --engine jit`, the default).

use npdec_ir::graph::{Graph, NodeId, NodeKind};
use npdec_jit::adjoint::CompiledTape;
use npdec_jit::{EulerStepper, JitEvaluator, JitFloat, JitOptions};
use npdec_runtime::engine::{CompiledRhs, CompiledSteps, Compiler};
use npdec_runtime::train::compiled::CompiledRates;
use npdec_runtime::train::gemm::ProductPrecision;
use npdec_runtime::train::lower::LoweredTask;
use npdec_runtime::Value;
use npdec_symbolic::FieldId;

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

struct Steps<T: JitFloat>(EulerStepper<T>);

impl<T: JitFloat> CompiledSteps<T> for Steps<T> {
    fn set_state(&mut self, field: FieldId, value: &Value<T>) {
        self.0.set_state(field, value);
    }

    fn state(&self, field: FieldId) -> Option<Value<T>> {
        self.0.state(field)
    }

    fn run(&mut self, steps: usize) {
        self.0.run(steps);
    }
}

impl Jit {
    /// Compiles whole Euler steps of the optimized graph, when every field the step reads evolves.
    fn compile_steps<T: JitFloat>(
        &self,
        graph: &Graph,
    ) -> Result<Box<dyn CompiledSteps<T>>, String> {
        let Some((_, step)) = graph.time_step() else {
            return Err("the graph has no time step".into());
        };
        for id in graph.find(|k| matches!(k, NodeKind::State { .. })) {
            if let NodeKind::State { field } = graph.node(id).kind {
                if !step.updates.iter().any(|u| u.field == field) {
                    return Err(format!("field {} does not evolve", field.0));
                }
            }
        }
        let started = std::time::Instant::now();
        let optimized = npdec_jit::passes::optimize(graph);
        let stepper = EulerStepper::<T>::new(&optimized, None, &self.options)
            .map_err(|unsupported| unsupported.to_string())?;
        // From the discretized graph: passes, plan, code generation and the blocked schedule.
        tracing::info!(
            graph = %graph.name,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            codegen_ms = stepper.compile_time().as_secs_f64() * 1e3,
            steps_per_pass = %match stepper.blocking() {
                Ok(steps) => steps.to_string(),
                Err(reason) => format!("1 ({reason})"),
            },
            "compiled whole Euler steps"
        );
        Ok(Box::new(Steps(stepper)))
    }

    fn compile<'g, T: JitFloat>(
        &self,
        graph: &'g Graph,
        roots: &[NodeId],
    ) -> Result<Box<dyn CompiledRhs<T> + 'g>, String> {
        let evaluator = JitEvaluator::<T>::new(graph, roots, &self.options)
            .map_err(|unsupported| unsupported.to_string())?;
        tracing::info!(graph = %graph.name, codegen_ms = evaluator.compile_time().as_secs_f64() * 1e3, "compiled the right-hand sides");
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

    fn compile_euler_f64(&self, graph: &Graph) -> Result<Box<dyn CompiledSteps<f64>>, String> {
        self.compile_steps(graph)
    }

    fn compile_euler_f32(&self, graph: &Graph) -> Result<Box<dyn CompiledSteps<f32>>, String> {
        self.compile_steps(graph)
    }

    fn compile_rates(
        &self,
        task: &LoweredTask,
        precision: ProductPrecision,
    ) -> Result<Box<dyn CompiledRates>, String> {
        fn compile<T: JitFloat>(
            task: &LoweredTask,
            options: &JitOptions,
        ) -> Result<Box<dyn CompiledRates>, String> {
            let compiled = CompiledTape::<T>::new(task, options)
                .map_err(|unsupported| unsupported.to_string())?;
            tracing::info!(
                kernels = compiled.kernel_count(),
                codegen_ms = compiled.compile_time().as_secs_f64() * 1e3,
                precision = ?T::PRECISION,
                "compiled the rates of a train task and their adjoint"
            );
            Ok(Box::new(compiled))
        }
        match precision {
            ProductPrecision::F64 => compile::<f64>(task, &self.options),
            ProductPrecision::F32 => compile::<f32>(task, &self.options),
        }
    }
}
