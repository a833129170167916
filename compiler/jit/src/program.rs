//! JIT compilation of a [`Plan`] and its execution: buffers, kernel calls split across threads,
//! reductions and matrix products.

use crate::blocking::{Blocking, Runner};
use crate::codegen::{define_kernel, math_functions, CodegenOptions, KernelSpec, Precision};
use crate::kexpr::{Kexpr, MathFunction};
use crate::plan::{Instant, Op, Plan};
use crate::Unsupported;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::Module;
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn, Slice};
use npdec_ir::graph::{Graph, NodeId};
use npdec_runtime::evaluate::Evaluator;
use npdec_runtime::train::gemm::{self, ProductPrecision};
use npdec_runtime::{Real, Value};
use npdec_symbolic::{AxisId, AxisKind, ReduceOp};
use std::time::{Duration, Instant as Clock};

/// Kernels smaller than this many points run on the calling thread: below it, waking the pool
/// costs more than the sweep.
pub const PARALLEL_MIN_POINTS: usize = 1 << 15;

/// Cranelift's optimization level for kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OptLevel {
    /// No mid-end optimization. On memory-bound sweeps this was as fast as `Speed` or faster, and
    /// it compiles sooner.
    #[default]
    None,
    Speed,
}

/// Options of JIT compilation and execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitOptions {
    /// Worker threads for sweeps; 1 runs everything on the calling thread.
    pub threads: usize,
    /// Use F32X4/F64X2 lanes in the innermost loops.
    pub simd: bool,
    /// Rows of axis 0 per iteration of the innermost loops where a kernel never reads its output
    /// ([`crate::codegen::CodegenOptions::row_block`]).
    pub row_block: usize,
    pub opt_level: OptLevel,
    /// Run explicit Euler steps with temporal blocking where the plan allows it.
    pub temporal_blocking: bool,
    /// Steps per blocked pass; `None` picks the most whose rows fit `cache_bytes`.
    pub block_steps: Option<usize>,
    /// The cache a blocked pass should fit, in bytes.
    pub cache_bytes: usize,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions {
            threads: 1,
            simd: true,
            row_block: crate::codegen::ROW_BLOCK,
            opt_level: OptLevel::None,
            temporal_blocking: true,
            block_steps: None,
            cache_bytes: crate::blocking::default_cache_bytes(),
        }
    }
}

/// A floating-point type the JIT generates code for: `f32` or `f64`.
pub trait JitFloat: Real {
    const PRECISION: Precision;

    /// `values` as `f64` entries when `Self` is `f64`, so that buffers can be exchanged with the
    /// runtime's `f64` ones without a copy; `None` for `f32`.
    fn as_f64_vec(values: &mut Vec<Self>) -> Option<&mut Vec<f64>>;

    /// Writes `values` rounded to `Self` into `targets`, which has the same length.
    fn convert_from_f64(targets: &mut [Self], values: &[f64]);

    /// `c = a · b + beta · c` for strided matrices given by pointers, by the runtime's GEMM
    /// module (`npdec_runtime::train::gemm`). With `beta = 0` the old entries of `c` are not read.
    ///
    /// # Safety
    ///
    /// Every strided index must lie inside the allocation of its pointer, the entries of `c`
    /// must be distinct and overlap neither operand, and nothing else may access them meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        a_strides: (isize, isize),
        b: *const Self,
        b_strides: (isize, isize),
        beta: Self,
        c: *mut Self,
        c_strides: (isize, isize),
    );

    /// `c = a · b + beta · c` for strided matrices in slices that cover every strided index, as
    /// [`JitFloat::gemm_raw`] computes it.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        a_strides: (isize, isize),
        b: &[Self],
        b_strides: (isize, isize),
        beta: Self,
        c: &mut [Self],
        c_strides: (isize, isize),
    ) {
        // SAFETY: the callers pass slices whose lengths cover every strided index of the
        // matrices, and an output with distinct entries that overlaps neither operand.
        unsafe {
            Self::gemm_raw(
                m,
                k,
                n,
                a.as_ptr(),
                a_strides,
                b.as_ptr(),
                b_strides,
                beta,
                c.as_mut_ptr(),
                c_strides,
            )
        }
    }

    /// `c = a · b + beta · c` as [`JitFloat::gemm`] computes it, with the rows or the columns of
    /// `c` split into up to `parts` blocks that run as tasks on the current thread pool. Each task
    /// packs its block of one operand and all of the other, so the dimension of the larger
    /// operand is split. Each entry of `c` is the same sum in the same order as in one call, so
    /// the result does not depend on `parts`.
    #[allow(clippy::too_many_arguments)]
    fn gemm_split(
        parts: usize,
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        a_strides: (isize, isize),
        b: &[Self],
        b_strides: (isize, isize),
        beta: Self,
        c: &mut [Self],
        c_strides: (isize, isize),
    ) {
        let split_rows = m >= n;
        let len = if split_rows { m } else { n };
        if parts <= 1 || len < 2 || m == 0 || n == 0 {
            Self::gemm(m, k, n, a, a_strides, b, b_strides, beta, c, c_strides);
            return;
        }
        let last = (m as isize - 1) * c_strides.0 + (n as isize - 1) * c_strides.1;
        assert!(
            c_strides.0 > 0 && c_strides.1 > 0 && (last as usize) < c.len(),
            "a split product needs an output with positive strides inside its buffer"
        );
        let block = len.div_ceil(parts.min(len));
        let output = OutputPointer(c.as_mut_ptr());
        use rayon::prelude::*;
        (0..len.div_ceil(block)).into_par_iter().for_each(|index| {
            let first = (index * block) as isize;
            let count = block.min(len - index * block);
            let c = output.get();
            // SAFETY: the blocks cover disjoint rows (or columns) of `c`, whose entries are
            // distinct because its strides are positive, every strided index lies inside the
            // buffers as the callers of `gemm` guarantee, and `c` stays borrowed until every task
            // ends.
            unsafe {
                if split_rows {
                    Self::gemm_raw(
                        count,
                        k,
                        n,
                        a.as_ptr().offset(first * a_strides.0),
                        a_strides,
                        b.as_ptr(),
                        b_strides,
                        beta,
                        c.offset(first * c_strides.0),
                        c_strides,
                    );
                } else {
                    Self::gemm_raw(
                        m,
                        k,
                        count,
                        a.as_ptr(),
                        a_strides,
                        b.as_ptr().offset(first * b_strides.1),
                        b_strides,
                        beta,
                        c.offset(first * c_strides.1),
                        c_strides,
                    );
                }
            }
        });
    }

    /// `c = a · b + beta · c` as [`JitFloat::gemm_split`] computes it, except that with
    /// [`ProductPrecision::F32`] the operands are rounded to `f32` and the product is summed in
    /// `f32` before it is widened, as the training tape's dense products do.
    #[allow(clippy::too_many_arguments)]
    fn product(
        precision: ProductPrecision,
        parts: usize,
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        a_strides: (isize, isize),
        b: &[Self],
        b_strides: (isize, isize),
        beta: Self,
        c: &mut [Self],
        c_strides: (isize, isize),
    ) {
        if precision == ProductPrecision::F64 || Self::PRECISION == Precision::F32 {
            Self::gemm_split(
                parts, m, k, n, a, a_strides, b, b_strides, beta, c, c_strides,
            );
            return;
        }
        let round = |matrix: &[Self], rows: usize, columns: usize, strides: (isize, isize)| {
            let mut rounded = Vec::with_capacity(rows * columns);
            for i in 0..rows as isize {
                for j in 0..columns as isize {
                    let at = (i * strides.0 + j * strides.1) as usize;
                    rounded.push(matrix[at].to_f64_lossy() as f32);
                }
            }
            rounded
        };
        let (a, b) = (round(a, m, k, a_strides), round(b, k, n, b_strides));
        let mut product = vec![0.0f32; m * n];
        f32::gemm(
            m,
            k,
            n,
            &a,
            (k as isize, 1),
            &b,
            (n as isize, 1),
            0.0,
            &mut product,
            (n as isize, 1),
        );
        for i in 0..m {
            for j in 0..n {
                let at = (i as isize * c_strides.0 + j as isize * c_strides.1) as usize;
                let value = Self::of(product[i * n + j] as f64);
                c[at] = if beta == Self::zero() {
                    value
                } else {
                    value + beta * c[at]
                };
            }
        }
    }
}

impl JitFloat for f32 {
    const PRECISION: Precision = Precision::F32;

    fn as_f64_vec(_values: &mut Vec<f32>) -> Option<&mut Vec<f64>> {
        None
    }

    fn convert_from_f64(targets: &mut [f32], values: &[f64]) {
        for (target, value) in targets.iter_mut().zip(values) {
            *target = *value as f32;
        }
    }

    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        a: *const f32,
        a_strides: (isize, isize),
        b: *const f32,
        b_strides: (isize, isize),
        beta: f32,
        c: *mut f32,
        c_strides: (isize, isize),
    ) {
        // SAFETY: the caller upholds the contract of `gemm_f32`, which `gemm_raw` states.
        unsafe {
            gemm::gemm_f32(
                m,
                k,
                n,
                1.0,
                a,
                a_strides.0,
                a_strides.1,
                b,
                b_strides.0,
                b_strides.1,
                beta,
                c,
                c_strides.0,
                c_strides.1,
            )
        }
    }
}

impl JitFloat for f64 {
    const PRECISION: Precision = Precision::F64;

    fn as_f64_vec(values: &mut Vec<f64>) -> Option<&mut Vec<f64>> {
        Some(values)
    }

    /// Copies the values as one slice (`memcpy`), which moves large parameters faster than an
    /// entry-by-entry loop compiled for baseline x86-64.
    fn convert_from_f64(targets: &mut [f64], values: &[f64]) {
        targets.copy_from_slice(values);
    }

    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        a: *const f64,
        a_strides: (isize, isize),
        b: *const f64,
        b_strides: (isize, isize),
        beta: f64,
        c: *mut f64,
        c_strides: (isize, isize),
    ) {
        // SAFEf64: the caller upholds the contract of `gemm_f64`, which `gemm_raw` states.
        unsafe {
            gemm::gemm_f64(
                m,
                k,
                n,
                1.0,
                a,
                a_strides.0,
                a_strides.1,
                b,
                b_strides.0,
                b_strides.1,
                beta,
                c,
                c_strides.0,
                c_strides.1,
            )
        }
    }
}

extern "C" fn tanh_f64(x: f64) -> f64 {
    x.tanh()
}
extern "C" fn exp_f64(x: f64) -> f64 {
    x.exp()
}
extern "C" fn log_f64(x: f64) -> f64 {
    x.ln()
}
extern "C" fn sin_f64(x: f64) -> f64 {
    x.sin()
}
extern "C" fn cos_f64(x: f64) -> f64 {
    x.cos()
}
extern "C" fn pow_f64(x: f64, y: f64) -> f64 {
    x.powf(y)
}
extern "C" fn tanh_f32(x: f32) -> f32 {
    x.tanh()
}
extern "C" fn exp_f32(x: f32) -> f32 {
    x.exp()
}
extern "C" fn log_f32(x: f32) -> f32 {
    x.ln()
}
extern "C" fn sin_f32(x: f32) -> f32 {
    x.sin()
}
extern "C" fn cos_f32(x: f32) -> f32 {
    x.cos()
}
extern "C" fn pow_f32(x: f32, y: f32) -> f32 {
    x.powf(y)
}

/// Returns the Rust implementation registered for a math function, the same `std` function the
/// interpreter calls, so results agree bit for bit.
pub fn registered_math(function: MathFunction, precision: Precision) -> Option<*const u8> {
    let address = match (function, precision) {
        (MathFunction::Tanh, Precision::F64) => tanh_f64 as *const u8,
        (MathFunction::Exp, Precision::F64) => exp_f64 as *const u8,
        (MathFunction::Log, Precision::F64) => log_f64 as *const u8,
        (MathFunction::Sin, Precision::F64) => sin_f64 as *const u8,
        (MathFunction::Cos, Precision::F64) => cos_f64 as *const u8,
        (MathFunction::Pow, Precision::F64) => pow_f64 as *const u8,
        (MathFunction::Tanh, Precision::F32) => tanh_f32 as *const u8,
        (MathFunction::Exp, Precision::F32) => exp_f32 as *const u8,
        (MathFunction::Log, Precision::F32) => log_f32 as *const u8,
        (MathFunction::Sin, Precision::F32) => sin_f32 as *const u8,
        (MathFunction::Cos, Precision::F32) => cos_f32 as *const u8,
        (MathFunction::Pow, Precision::F32) => pow_f32 as *const u8,
    };
    Some(address)
}

/// Returns Cranelift's shared settings for kernels.
pub fn flag_builder(opt_level: OptLevel, position_independent: bool) -> settings::Builder {
    let mut flags = settings::builder();
    let level = match opt_level {
        OptLevel::None => "none",
        OptLevel::Speed => "speed",
    };
    // These names and values are Cranelift's own settings, so setting them cannot fail.
    flags
        .set("opt_level", level)
        .expect("opt_level is a Cranelift setting");
    flags
        .set(
            "is_pic",
            if position_independent {
                "true"
            } else {
                "false"
            },
        )
        .expect("is_pic is a Cranelift setting");
    flags
        .set("use_colocated_libcalls", "false")
        .expect("use_colocated_libcalls is a Cranelift setting");
    // Cranelift's IR verifier takes about a third of the compile time of a kernel. It checks the
    // code generator, not the model, so it runs in debug builds and whenever
    // `NPDEC_VERIFY_JIT` is set (the CI script sets it for the release-mode tests).
    let verify = cfg!(debug_assertions) || std::env::var_os("NPDEC_VERIFY_JIT").is_some();
    flags
        .set("enable_verifier", if verify { "true" } else { "false" })
        .expect("enable_verifier is a Cranelift setting");
    flags
}

pub(crate) type KernelFn = unsafe extern "C" fn(*const *mut u8, f64, i64, i64);

/// Buffer base pointers handed to kernels on other threads.
#[derive(Clone, Copy)]
struct Pointers(*const *mut u8);

// SAFETY: kernels running in parallel write disjoint row ranges of their output buffer and only
// read buffers that no kernel writes at the same time.
unsafe impl Send for Pointers {}
unsafe impl Sync for Pointers {}

/// A plan compiled to native code, with its buffers.
pub struct CompiledPlan<T: JitFloat> {
    /// Keeps the kernels' code alive.
    _module: JITModule,
    kernels: Vec<KernelFn>,
    pub plan: Plan,
    pub buffers: Vec<Vec<T>>,
    pool: Option<rayon::ThreadPool>,
    threads: usize,
    /// The time spent generating and finalizing the kernels.
    pub compile_time: Duration,
}

impl<T: JitFloat> CompiledPlan<T> {
    /// Generates the kernels of a plan and allocates its buffers; parameter buffers get the
    /// interpreter's initial values.
    pub fn new(graph: &Graph, plan: Plan, options: &JitOptions) -> Result<Self, Unsupported> {
        let started = Clock::now();
        let root = plan
            .roots
            .first()
            .map(|(id, _)| *id)
            .or_else(|| plan.params.first().map(|(id, _)| *id));
        let failure = |reason: String| Unsupported {
            node: root.unwrap_or(NodeId(petgraph::stable_graph::NodeIndex::new(0))),
            kind: "kernel",
            reason,
        };
        let precision = T::PRECISION;

        // An unknown symbol panics at finalize, so check every imported function first.
        let mut builder = jit_builder(options.opt_level).map_err(failure)?;
        for function in math_functions(plan.kernels.iter().flat_map(|k| k.exprs())) {
            let address = registered_math(function, precision).ok_or_else(|| {
                failure(format!("no implementation of {function:?} is registered"))
            })?;
            builder.symbol(function.symbol(precision == Precision::F32), address);
        }
        let mut module = JITModule::new(builder);
        let mut context = module.make_context();
        let mut builder_context = FunctionBuilderContext::new();
        let codegen = CodegenOptions {
            simd: options.simd,
            row_block: options.row_block,
            export: true,
        };
        let mut ids = Vec::with_capacity(plan.kernels.len());
        for spec in &plan.kernels {
            ids.push(
                define_kernel(
                    &mut module,
                    &mut context,
                    &mut builder_context,
                    spec,
                    &plan.layouts,
                    precision,
                    codegen,
                )
                .map_err(failure)?,
            );
        }
        module
            .finalize_definitions()
            .map_err(|e| failure(e.to_string()))?;
        let kernels = ids
            .into_iter()
            .map(|id| {
                let code = module.get_finalized_function(id);
                // SAFETY: every kernel was defined with the signature of `KernelFn`.
                unsafe { std::mem::transmute::<*const u8, KernelFn>(code) }
            })
            .collect();
        let compile_time = started.elapsed();

        let mut buffers: Vec<Vec<T>> = plan
            .layouts
            .iter()
            .map(|l| {
                let buffer = vec![T::zero(); l.len()];
                advise_huge_pages(&buffer);
                buffer
            })
            .collect();
        for (node, buffer) in &plan.params {
            let values = Evaluator::<T>::new(graph, &[*node]).evaluate(&[], T::zero());
            if let Some(Some(Value::Real(array))) = values.get(node.index()) {
                buffers[*buffer] = array.iter().copied().collect();
            }
        }
        let pool = if options.threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(options.threads)
                    .build()
                    .map_err(|e| failure(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(CompiledPlan {
            _module: module,
            kernels,
            plan,
            buffers,
            pool,
            threads: options.threads.max(1),
            compile_time,
        })
    }

    fn pointers(&mut self) -> Vec<*mut u8> {
        self.buffers
            .iter_mut()
            .map(|b| b.as_mut_ptr().cast::<u8>())
            .collect()
    }

    /// Runs every operation, with `now` and `next` as the times of the two instants.
    pub fn run(&mut self, states: &[Option<Value<T>>], now: f64, next: f64) {
        for index in 0..self.plan.ops.len() {
            match self.plan.ops[index].clone() {
                Op::CopyState { field, view } => {
                    if let Some(Some(state)) = states.get(field.0) {
                        let layout = self.plan.layouts[view.buffer].clone();
                        let mut shape = vec![layout.channels];
                        shape.extend(&layout.extents);
                        let buffer = &mut self.buffers[view.buffer];
                        if let Ok(mut target) = ArrayViewMutD::from_shape(IxDyn(&shape), buffer) {
                            let mut window = target.slice_each_axis_mut(|d| {
                                let i = d.axis.index();
                                if i == 0 {
                                    Slice::from(..)
                                } else {
                                    let start = view.shift[i - 1] as usize;
                                    Slice::from(start..start + state.shape()[i])
                                }
                            });
                            window.assign(&state.real_part());
                        }
                    }
                }
                Op::Kernel { kernel, instant } => {
                    let time = match instant {
                        Instant::Now => now,
                        Instant::Next => next,
                    };
                    self.call(kernel, time);
                }
                Op::Reduce {
                    op,
                    input,
                    output,
                    weights,
                    cell,
                } => {
                    let value = reduce(
                        &weights,
                        cell,
                        op,
                        &self.buffers[input],
                        self.plan.layouts[input].channels,
                    );
                    self.buffers[output][0] = value;
                }
                Op::Dense {
                    matrix,
                    operand,
                    output,
                    rows,
                    channels,
                } => {
                    let (m, o) = (
                        std::mem::take(&mut self.buffers[matrix]),
                        std::mem::take(&mut self.buffers[operand]),
                    );
                    let columns = rows;
                    T::gemm(
                        channels,
                        columns,
                        rows,
                        &o,
                        (columns as isize, 1),
                        &m,
                        (1, columns as isize),
                        T::zero(),
                        &mut self.buffers[output],
                        (rows as isize, 1),
                    );
                    self.buffers[matrix] = m;
                    self.buffers[operand] = o;
                }
            }
        }
    }

    /// Writes one element of every 4 KiB page of a buffer back unchanged, so that the operating
    /// system commits the buffer's memory now, not in the first steps that write to it.
    pub fn commit_memory(&mut self, buffer: usize) {
        let stride = (4096 / std::mem::size_of::<T>()).max(1);
        let values = &mut self.buffers[buffer];
        for i in (0..values.len()).step_by(stride) {
            // `black_box` keeps the store of an unchanged value from being optimized away.
            values[i] = std::hint::black_box(values[i]);
        }
    }

    /// Returns the number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `steps` explicit Euler steps from time `t0` as one blocked pass (see
    /// [`crate::blocking`]), leaving the new states in the current buffers.
    pub fn run_blocked(&mut self, blocking: &Blocking, steps: usize, t0: f64, dt: f64) {
        let even = self.pointers();
        let mut odd = even.clone();
        for (current, next) in &blocking.swaps {
            odd.swap(*current, *next);
        }
        let pointers = [Pointers(even.as_ptr()), Pointers(odd.as_ptr())];
        let kernels = &self.kernels;
        let call = move |kernel: usize, step: usize, time: f64, start: i64, end: i64| {
            let buffers = pointers[step % 2];
            // SAFETY: the buffers match the layouts the kernels were generated for, the pointer
            // arrays outlive the pass, and the schedule keeps concurrent kernels on disjoint rows.
            unsafe { kernels[kernel](buffers.0, time, start, end) }
        };
        let runner = Runner {
            blocking,
            steps,
            t0,
            dt,
        };
        let rows = blocking.rows;
        let slabs = match &self.pool {
            Some(_) => blocking.slabs(self.threads, steps),
            None => 1,
        };
        match (&self.pool, slabs) {
            (Some(pool), slabs) if slabs > 1 => {
                let edges: Vec<i64> = (1..slabs as i64).map(|s| rows * s / slabs as i64).collect();
                let runner = &runner;
                pool.scope(|scope| {
                    for s in 0..slabs {
                        let low = if s == 0 { 0 } else { edges[s - 1] };
                        let high = if s + 1 == slabs { rows } else { edges[s] };
                        let mut call = call;
                        scope.spawn(move |_| {
                            runner.slab(low, high, s > 0, s + 1 < slabs, &mut call);
                        });
                    }
                });
                let mut call = call;
                runner.seams(&edges, &mut call);
            }
            _ => {
                let mut call = call;
                runner.slab(0, rows, false, false, &mut call);
            }
        }
        if steps % 2 == 1 {
            for (current, next) in &blocking.swaps {
                self.buffers.swap(*current, *next);
            }
        }
    }

    /// Calls one kernel over its whole region, split by rows across the pool when it is large.
    pub(crate) fn call(&mut self, kernel: usize, time: f64) {
        let spec = &self.plan.kernels[kernel];
        let (lo, hi) = spec
            .region
            .first()
            .map_or((0, 0), |(lo, hi)| (*lo as i64, *hi as i64));
        let parallel = spec.work() >= PARALLEL_MIN_POINTS && rows_independent(spec);
        let function = self.kernels[kernel];
        let pointers = self.pointers();
        let shared = Pointers(pointers.as_ptr());
        match (&self.pool, parallel) {
            (Some(pool), true) => {
                let chunks = self.threads as i64;
                let rows = hi - lo;
                pool.scope(|scope| {
                    for c in 0..chunks {
                        let start = lo + rows * c / chunks;
                        let end = lo + rows * (c + 1) / chunks;
                        scope.spawn(move |_| {
                            let shared = shared;
                            // SAFETY: the pointers stay valid while `pointers` lives, which spans
                            // the scope, and the chunks write disjoint rows.
                            unsafe { function(shared.0, time, start, end) }
                        });
                    }
                });
            }
            _ => {
                // SAFETY: the buffers match the layouts the kernel was generated for.
                unsafe { function(shared.0, time, lo, hi) }
            }
        }
    }

    /// Returns the value of a grid or scalar view as an array of the node's shape.
    pub fn read(&self, buffer: usize, shift: &[isize], shape: &[usize]) -> ArrayD<T> {
        let layout = &self.plan.layouts[buffer];
        let mut full = vec![layout.channels];
        full.extend(&layout.extents);
        let Ok(array) = ArrayViewD::from_shape(IxDyn(&full), &self.buffers[buffer]) else {
            return ArrayD::from_elem(IxDyn(shape), T::nan());
        };
        array
            .slice_each_axis(|d| {
                let i = d.axis.index();
                if i == 0 {
                    Slice::from(..)
                } else {
                    let start = shift[i - 1] as usize;
                    Slice::from(start..start + shape[i])
                }
            })
            .to_owned()
    }
}

/// Returns true when the rows of a kernel's axis 0 can be split across threads. That holds when
/// the kernel never reads its output or reads it only in the row of axis 0 it writes, as the
/// ghost layers of the inner axes do. Threads that take disjoint ranges of rows then touch
/// disjoint elements of the output, because a row prologue or epilogue only writes elements that
/// no other row reads.
pub(crate) fn rows_independent(spec: &KernelSpec) -> bool {
    if spec.readonly_inputs {
        return true;
    }
    let Some(row) = spec.output_shift.first() else {
        return false;
    };
    let mut same_row = true;
    for expr in spec.exprs() {
        expr.walk(&mut |e| {
            if let Kexpr::Load { buffer, offset, .. } = e {
                if *buffer == spec.output && offset.first() != Some(row) {
                    same_row = false;
                }
            }
        });
    }
    same_row
}

/// Returns a JIT builder for the host with the registered settings.
pub(crate) fn jit_builder(opt_level: OptLevel) -> Result<JITBuilder, String> {
    let isa_builder = cranelift_native::builder()
        .map_err(|e| format!("the host machine is not supported: {e}"))?;
    let isa = isa_builder
        .finish(settings::Flags::new(flag_builder(opt_level, false)))
        .map_err(|e| e.to_string())?;
    Ok(JITBuilder::with_isa(
        isa,
        cranelift_module::default_libcall_names(),
    ))
}

/// Returns the trapezoidal quadrature weights of one axis, spacing included, as the interpreter
/// computes them.
pub fn quadrature_weights(graph: &Graph, axis: AxisId) -> Vec<f64> {
    let declaration = graph.axis(axis);
    let interval = matches!(declaration.kind, AxisKind::Interval { .. });
    (0..declaration.points)
        .map(|i| {
            let end = i == 0 || i + 1 == declaration.points;
            if end && interval && !declaration.periodic {
                0.5 * declaration.spacing()
            } else {
                declaration.spacing()
            }
        })
        .collect()
}

/// Reduces a halo-0 buffer with the interpreter's summation order and NaN rules. `weights` contains
// the quadrature weights of each axis.
fn reduce<T: JitFloat>(
    weights: &[Vec<f64>],
    cell: f64,
    op: ReduceOp,
    values: &[T],
    channels: usize,
) -> T {
    let count = values.len().max(1);
    match op {
        ReduceOp::Max => values.iter().fold(T::neg_infinity(), |m, x| {
            if x.is_nan() || m.is_nan() {
                T::nan()
            } else {
                m.max(*x)
            }
        }),
        ReduceOp::Min => values.iter().fold(T::infinity(), |m, x| {
            if x.is_nan() || m.is_nan() {
                T::nan()
            } else {
                m.min(*x)
            }
        }),
        ReduceOp::Norm => {
            let squares = values.iter().fold(T::zero(), |s, x| s + *x * *x);
            (squares * T::of(cell)).sqrt()
        }
        ReduceOp::Sum | ReduceOp::Mean => {
            let total = values.iter().fold(T::zero(), |s, x| s + *x * T::one());
            if op == ReduceOp::Mean {
                total / T::of(count as f64)
            } else {
                total
            }
        }
        ReduceOp::Integral => {
            let plane = values.len() / channels.max(1);
            let mut total = T::zero();
            for (flat, x) in values.iter().enumerate() {
                let mut rest = flat % plane.max(1);
                let mut weight = 1.0;
                let mut factors = vec![1.0; weights.len()];
                for (a, w) in weights.iter().enumerate().rev() {
                    factors[a] = w[rest % w.len()];
                    rest /= w.len();
                }
                for f in &factors {
                    weight *= f;
                }
                total += *x * T::of(weight);
            }
            total
        }
    }
}

/// The output pointer of a split product, shared by its tasks, which write disjoint blocks.
struct OutputPointer<T>(*mut T);

impl<T> OutputPointer<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

// SAFETY: the tasks of `gemm_split` write disjoint entries through the pointer while the
// buffer it points into stays borrowed by the caller.
unsafe impl<T> Send for OutputPointer<T> {}
unsafe impl<T> Sync for OutputPointer<T> {}

/// The size of a transparent huge page on x86-64 and on 4 KiB-page aarch64 Linux.
const HUGE_PAGE: usize = 2 << 20;

/// Returns the whole huge pages inside the byte range `[start, start + bytes)`, as a start
/// address and a length, or `None` when it contains none.
fn huge_page_span(start: usize, bytes: usize) -> Option<(usize, usize)> {
    let first = start.div_ceil(HUGE_PAGE) * HUGE_PAGE;
    let last = (start + bytes) / HUGE_PAGE * HUGE_PAGE;
    (last > first).then(|| (first, last - first))
}

/// Asks Linux to back the whole huge pages inside a buffer with transparent huge pages, before
/// its memory is first written. A sweep over a large grid then misses the TLB less often. Where
/// the system keeps huge pages off, or on other systems, nothing changes.
fn advise_huge_pages<T>(buffer: &[T]) {
    #[cfg(target_os = "linux")]
    if let Some((first, bytes)) =
        huge_page_span(buffer.as_ptr() as usize, std::mem::size_of_val(buffer))
    {
        // SAFETY: the range lies inside the buffer's allocation, and the advice never changes
        // the contents of memory.
        unsafe {
            libc::madvise(first as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_span_keeps_whole_pages() {
        // A range inside one huge page, or across a boundary without a whole page, has none.
        assert_eq!(huge_page_span(4096, HUGE_PAGE), None);
        assert_eq!(huge_page_span(HUGE_PAGE - 8, 16), None);
        // An aligned range keeps every page, and an unaligned one drops its partial ends.
        assert_eq!(
            huge_page_span(HUGE_PAGE, 3 * HUGE_PAGE),
            Some((HUGE_PAGE, 3 * HUGE_PAGE))
        );
        assert_eq!(
            huge_page_span(HUGE_PAGE + 64, 3 * HUGE_PAGE),
            Some((2 * HUGE_PAGE, 2 * HUGE_PAGE))
        );
        assert_eq!(huge_page_span(0, 0), None);
    }
}
