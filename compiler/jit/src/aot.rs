//! Ahead-of-time compilation: an object file (cranelift-object) holding a model's explicit Euler
//! step, and a C header describing how to call it.
//!
//! The object exports `PREFIX_run(void **buffers, int64_t first_step, int64_t steps)`, which takes
//! `steps` steps starting at step number `first_step` (time `first_step · dt`). `buffers` contains one
//! pointer per buffer of the header's `PREFIX_buffer_lengths`, zero-initialized by the caller. The
//! state of each field lives in its buffer with the ghost layers around it. After every step the
//! current and next buffers of each field trade places in `buffers`, and after an odd number of
//! steps the call copies each state back and restores the pointers, so the caller finds the state
//! in the buffer it passed. Every field the step reads must evolve. The math functions come
//! from the C library, so link with `-lm`.
//!
//! NOTE: the code targets the host's CPU features (it is built with `cranelift-native`), so the
//! object may not run on an older CPU of the same architecture.

use crate::codegen::{define_kernel, CodegenOptions, KernelSpec, Precision};
use crate::plan::{build_plan, Instant, Mode, Op, Plan};
use crate::program::{flag_builder, OptLevel};
use crate::Unsupported;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, BlockArg, InstBuilder, MemFlagsData};
use cranelift_codegen::settings;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};
use npdec_ir::graph::{Graph, NodeId, NodeKind};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The files [`write_step_object`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct AotArtifacts {
    pub object: PathBuf,
    pub header: PathBuf,
    /// The C symbol of the step function.
    pub run_symbol: String,
    /// The plan the object implements, for callers that lay out buffers themselves.
    pub plan: Plan,
}

/// An error writing an object file.
#[derive(Debug)]
pub enum AotError {
    Unsupported(Unsupported),
    Codegen(String),
    /// Writing a file failed; the message names the file.
    Io(String),
}

impl std::fmt::Display for AotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AotError::Unsupported(u) => write!(f, "{u}"),
            AotError::Codegen(message) => write!(f, "code generation failed: {message}"),
            AotError::Io(message) => write!(f, "failed to write {message}"),
        }
    }
}

impl std::error::Error for AotError {}

/// Returns a C identifier made of the model name: letters, digits and underscores.
fn c_identifier(name: &str) -> String {
    let mut identifier: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    // C reserves names that start with an underscore at file scope.
    if identifier
        .chars()
        .next()
        .is_none_or(|c| c.is_ascii_digit() || c == '_')
    {
        identifier.insert(0, 'm');
    }
    identifier
}

/// Writes `DIR/PREFIX.o` and `DIR/PREFIX.h` for the explicit Euler step of a solve graph, where
/// `PREFIX` is the model name made into a C identifier. The graph goes through the optimization
/// passes and its plan through the same step passes as the JIT's, so the object runs the kernels
/// `npdec run` runs.
pub fn write_step_object(
    graph: &Graph,
    precision: Precision,
    dir: &Path,
) -> Result<AotArtifacts, AotError> {
    let prefix = c_identifier(graph.name.split('.').next().unwrap_or("model"));
    write_step_object_named(graph, precision, dir, &prefix)
}

/// Returns the prefix of the files and symbols of solve task number `index` (from 0) of a model with
/// several: the model name made into a C identifier, then `_solve` and the number, as the snapshot
/// files of `npdec run` are named.
pub fn task_prefix(graph: &Graph, index: usize) -> String {
    let model = c_identifier(graph.name.split('.').next().unwrap_or("model"));
    format!("{model}_solve{index}")
}

/// Writes `DIR/PREFIX.o` and `DIR/PREFIX.h` as [`write_step_object`] does, with a given prefix (a C
/// identifier).
pub fn write_step_object_named(
    graph: &Graph,
    precision: Precision,
    dir: &Path,
    prefix: &str,
) -> Result<AotArtifacts, AotError> {
    let prefix = prefix.to_string();
    let optimized = crate::passes::optimize(graph);
    let graph = &optimized;
    let failure = |reason: String| {
        AotError::Unsupported(Unsupported {
            node: NodeId(petgraph::stable_graph::NodeIndex::new(0)),
            kind: "time_step",
            reason,
        })
    };
    let Some((step_id, step)) = graph.time_step() else {
        return Err(failure("the graph has no time step".into()));
    };
    let dt = step.dt;
    // Every field the step reads must evolve: the object has no way to set the others.
    for id in graph.find(|k| matches!(k, NodeKind::State { .. })) {
        if let NodeKind::State { field } = graph.node(id).kind {
            if !step.updates.iter().any(|u| u.field == field) {
                return Err(failure(format!(
                    "the field `{}` is read but has no equation, and object files hold fields that evolve only",
                    graph.field(field).name
                )));
            }
        }
    }
    let mut plan = build_plan(graph, &graph.inputs(step_id), Mode::EulerStep { dt })
        .map_err(AotError::Unsupported)?;
    let (_, start_faces) = crate::optimize_step_plan(graph, &mut plan);
    if let Some((node, _)) = plan.params.first() {
        return Err(AotError::Unsupported(Unsupported {
            node: *node,
            kind: "param",
            reason: "object files do not carry parameter values yet".into(),
        }));
    }
    for op in &plan.ops {
        match op {
            Op::Kernel { .. } => {}
            Op::CopyState { .. } | Op::Reduce { .. } | Op::Dense { .. } => {
                return Err(failure(
                    "object files hold sweeps only, not reductions or matrix products".into(),
                ));
            }
        }
    }
    for spec in &mut plan.kernels {
        spec.name = format!("{prefix}_{}", spec.name);
    }

    let isa = cranelift_native::builder()
        .map_err(|e| AotError::Codegen(format!("the host machine is not supported: {e}")))?
        .finish(settings::Flags::new(flag_builder(OptLevel::None, true)))
        .map_err(|e| AotError::Codegen(e.to_string()))?;
    let builder = ObjectBuilder::new(
        isa,
        prefix.clone(),
        cranelift_module::default_libcall_names(),
    )
    .map_err(|e| AotError::Codegen(e.to_string()))?;
    let mut module = ObjectModule::new(builder);
    let mut context = module.make_context();
    let mut builder_context = FunctionBuilderContext::new();
    let mut kernels = Vec::new();
    for spec in &plan.kernels {
        let id = define_kernel(
            &mut module,
            &mut context,
            &mut builder_context,
            spec,
            &plan.layouts,
            precision,
            CodegenOptions {
                export: false,
                ..CodegenOptions::default()
            },
        )
        .map_err(AotError::Codegen)?;
        kernels.push(id);
    }

    let run_symbol = format!("{prefix}_run");
    define_driver(
        &mut module,
        &mut context,
        &mut builder_context,
        &StepFunction {
            plan: &plan,
            kernels: &kernels,
            start_faces: &start_faces,
            dt,
            precision,
            name: &run_symbol,
        },
    )
    .map_err(AotError::Codegen)?;
    let bytes = module
        .finish()
        .emit()
        .map_err(|e| AotError::Codegen(e.to_string()))?;

    std::fs::create_dir_all(dir)
        .map_err(|e| AotError::Io(format!("the folder {}: {e}", dir.display())))?;
    let object = dir.join(format!("{prefix}.o"));
    let header = dir.join(format!("{prefix}.h"));
    // Each file is renamed into place once complete, so a failed build never leaves half a file.
    npdec_runtime::output::write_atomically(&object, |temporary| std::fs::write(temporary, bytes))
        .map_err(AotError::Io)?;
    let header_text = header_text(graph, &plan, precision, &prefix, dt);
    npdec_runtime::output::write_atomically(&header, |temporary| {
        std::fs::write(temporary, header_text)
    })
    .map_err(AotError::Io)?;
    Ok(AotArtifacts {
        object,
        header,
        run_symbol,
        plan,
    })
}

/// The step function of an object file and what it calls.
struct StepFunction<'a> {
    plan: &'a Plan,
    /// The compiled kernels, by kernel number of the plan.
    kernels: &'a [cranelift_module::FuncId],
    /// Kernels to run once at the start of a call that takes a step.
    start_faces: &'a [usize],
    dt: f64,
    precision: Precision,
    /// The exported symbol.
    name: &'a str,
}

/// Generates `run(buffers, first_step, steps)`: the start faces if `steps > 0`, then per step every
/// kernel in plan order at `t` or `t + dt`, then the swaps of current and next state buffers, and
/// after an odd number of steps the copy of each state back into the caller's buffer.
fn define_driver(
    module: &mut ObjectModule,
    context: &mut cranelift_codegen::Context,
    builder_context: &mut FunctionBuilderContext,
    function: &StepFunction,
) -> Result<(), String> {
    let StepFunction {
        plan,
        kernels,
        start_faces,
        dt,
        precision,
        name,
    } = *function;
    let pointer = module.target_config().pointer_type();
    let mut signature = module.make_signature();
    signature.params.push(AbiParam::new(pointer));
    signature.params.push(AbiParam::new(types::I64));
    signature.params.push(AbiParam::new(types::I64));
    let id = module
        .declare_function(name, Linkage::Export, &signature)
        .map_err(|e| e.to_string())?;
    let frontend_config = module.isa().frontend_config();
    context.func.signature = signature;
    {
        let mut builder = FunctionBuilder::new(&mut context.func, builder_context);
        let references: Vec<_> = kernels
            .iter()
            .map(|k| module.declare_func_in_func(*k, builder.func))
            .collect();
        let entry = builder.create_block();
        let header = builder.create_block();
        let body = builder.create_block();
        let exit = builder.create_block();
        builder.append_block_params_for_function_params(entry);
        let counter = builder.append_block_param(header, types::I64);
        builder.switch_to_block(entry);
        let [buffers, first, steps] = builder.block_params(entry)[..] else {
            return Err("driver signature".into());
        };
        // The caller may have set the states since the last call, so every call that takes a
        // step first writes the Dirichlet faces the previous step would have left there.
        let zero = builder.ins().iconst(types::I64, 0);
        if !start_faces.is_empty() {
            let faces = builder.create_block();
            let any = builder.ins().icmp(IntCC::SignedGreaterThan, steps, zero);
            builder
                .ins()
                .brif(any, faces, &[], header, &[BlockArg::Value(zero)]);
            builder.switch_to_block(faces);
            let first_float = builder.ins().fcvt_from_sint(types::F64, first);
            let dt_value = builder.ins().f64const(dt);
            let now = builder.ins().fmul(first_float, dt_value);
            for kernel in start_faces {
                let (lo, hi) = axis_zero_range(&plan.kernels[*kernel]);
                let lo = builder.ins().iconst(types::I64, lo);
                let hi = builder.ins().iconst(types::I64, hi);
                builder
                    .ins()
                    .call(references[*kernel], &[buffers, now, lo, hi]);
            }
        }
        builder.ins().jump(header, &[BlockArg::Value(zero)]);

        builder.switch_to_block(header);
        let more = builder.ins().icmp(IntCC::SignedLessThan, counter, steps);
        builder.ins().brif(more, body, &[], exit, &[]);

        builder.switch_to_block(body);
        let step = builder.ins().iadd(first, counter);
        let step_float = builder.ins().fcvt_from_sint(types::F64, step);
        let dt_value = builder.ins().f64const(dt);
        let now = builder.ins().fmul(step_float, dt_value);
        let next = builder.ins().fadd(now, dt_value);
        for op in &plan.ops {
            let Op::Kernel { kernel, instant } = op else {
                continue;
            };
            let (lo, hi) = axis_zero_range(&plan.kernels[*kernel]);
            let time = match instant {
                Instant::Now => now,
                Instant::Next => next,
            };
            let lo = builder.ins().iconst(types::I64, lo);
            let hi = builder.ins().iconst(types::I64, hi);
            builder
                .ins()
                .call(references[*kernel], &[buffers, time, lo, hi]);
        }
        let flags = MemFlagsData::new().with_notrap();
        for update in &plan.updates {
            let (current, next) = ((update.current * 8) as i32, (update.next * 8) as i32);
            let a = builder.ins().load(pointer, flags, buffers, current);
            let b = builder.ins().load(pointer, flags, buffers, next);
            builder.ins().store(flags, b, buffers, current);
            builder.ins().store(flags, a, buffers, next);
        }
        let one = builder.ins().iconst(types::I64, 1);
        let following = builder.ins().iadd(counter, one);
        builder.ins().jump(header, &[BlockArg::Value(following)]);

        // After an odd number of steps the current state is in the other buffer of each pair:
        // copy it back and restore the pointers, so the state stays where the caller put it.
        builder.switch_to_block(exit);
        let restore = builder.create_block();
        let done = builder.create_block();
        let flags = MemFlagsData::new().with_notrap();
        let odd = builder.ins().band_imm_u(steps, 1);
        let positive = builder.ins().icmp(IntCC::SignedGreaterThan, steps, zero);
        let odd = builder.ins().icmp_imm_u(IntCC::NotEqual, odd, 0);
        let restores = builder.ins().band(odd, positive);
        builder.ins().brif(restores, restore, &[], done, &[]);
        builder.switch_to_block(restore);
        for update in &plan.updates {
            let (current, next) = ((update.current * 8) as i32, (update.next * 8) as i32);
            let state = builder.ins().load(pointer, flags, buffers, current);
            let original = builder.ins().load(pointer, flags, buffers, next);
            let bytes = plan.layouts[update.current].len() as i64 * precision.bytes();
            let size = builder.ins().iconst(pointer, bytes);
            builder.call_memcpy(frontend_config, original, state, size);
            builder.ins().store(flags, original, buffers, current);
            builder.ins().store(flags, state, buffers, next);
        }
        builder.ins().jump(done, &[]);
        builder.switch_to_block(done);
        builder.ins().return_(&[]);
        builder.seal_all_blocks();
        builder.finalize(frontend_config);
    }
    module
        .define_function(id, context)
        .map_err(|e| format!("{e:?}"))?;
    module.clear_context(context);
    Ok(())
}

/// Returns the rows of axis 0 a kernel covers, its default `start..end`.
fn axis_zero_range(spec: &KernelSpec) -> (i64, i64) {
    spec.region
        .first()
        .map_or((0, 0), |(lo, hi)| (*lo as i64, *hi as i64))
}

/// Returns the C header of a step object.
fn header_text(graph: &Graph, plan: &Plan, precision: Precision, prefix: &str, dt: f64) -> String {
    let upper = prefix.to_uppercase();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "/* Explicit Euler steps of the solve task `{}`, generated by npdec for the processor features\n   of the machine that built it. */",
        graph.name
    );
    let _ = writeln!(
        text,
        "#ifndef {upper}_H\n#define {upper}_H\n\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n"
    );
    let _ = writeln!(text, "typedef {} {prefix}_real;", precision.name());
    let _ = writeln!(text, "#define {upper}_DT {dt:e}");
    let _ = writeln!(text, "#define {upper}_BUFFER_COUNT {}", plan.layouts.len());
    let lengths: Vec<String> = plan.layouts.iter().map(|l| l.len().to_string()).collect();
    let _ = writeln!(
        text,
        "/* Elements per buffer; allocate each zeroed and pass them in this order. */"
    );
    let _ = writeln!(
        text,
        "static const int64_t {prefix}_buffer_lengths[{}] = {{{}}};\n",
        plan.layouts.len(),
        lengths.join(", ")
    );
    for update in &plan.updates {
        let field = graph.field(update.field);
        let layout = &plan.layouts[update.current];
        let name = c_identifier(&field.name).to_uppercase();
        let extents: Vec<String> = layout.extents.iter().map(ToString::to_string).collect();
        let shift: Vec<String> = update.shift.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            text,
            "/* Field `{}`: {} channel(s) of a row-major array of extents ({}), the grid starting at\n   index ({}) of each axis. buffers[{}] holds the state: set it before a call and read it after. */",
            field.name,
            layout.channels,
            extents.join(", "),
            shift.join(", "),
            update.current
        );
        let _ = writeln!(text, "#define {upper}_{name}_BUFFER {}", update.current);
    }
    let _ = writeln!(
        text,
        "\n/* Takes `steps` steps, the first at time first_step * {upper}_DT. Each state is in the buffer\n   the caller passed when the call returns (the pointers in `buffers` trade places during the\n   call and are restored). */"
    );
    let _ = writeln!(
        text,
        "void {prefix}_run(void **buffers, int64_t first_step, int64_t steps);\n\n#ifdef __cplusplus\n}}\n#endif\n\n#endif"
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_become_unreserved_c_identifiers() {
        assert_eq!(c_identifier("heat1d"), "heat1d");
        assert_eq!(c_identifier("My-Heat 1d"), "my_heat_1d");
        assert_eq!(c_identifier("2d"), "m2d");
        assert_eq!(c_identifier("ßheat"), "m_heat");
        assert_eq!(c_identifier(""), "m");
    }
}
