//! Cranelift code generation of box kernels: loop nests that evaluate [`Kexpr`]s over a box of grid
//! points and store the results.
//!
//! Every kernel has the C signature
//! `void kernel(void *const *buffers, double time, int64_t start, int64_t end)`: `buffers` contains the
//! base pointer of every buffer of the plan, and `start..end` is the range of the outermost axis, so
//! callers split a sweep across threads by rows. The innermost axis runs on F32X4/F64X2 lanes where
//! the expression allows it, two vectors per iteration, then one more vector and single elements for
//! the remainder; its loops count the column in bytes and test at their end. Where a kernel never
//! reads its output, an iteration instead computes one vector in each of a block of rows of axis 0
//! ([`CodegenOptions::row_block`]), and the loop over axis 0 steps by the block. A kernel may store a
//! few scalar values at the start of every row, before that loop (a row prologue). Within one point a
//! load of the same buffer, channel and offset is emitted once. When the kernel never reads its
//! output, the two points of a pair also share their loads of the same address (the taps of the
//! innermost axis that overlap). Loads of a kernel whose output is a different buffer are marked
//! read-only: the plan never lets a sweep read the buffer it writes, and the flag lets Cranelift
//! move loads across stores.
//!
//! The same generator serves the JIT (`cranelift-jit`) and object files (`cranelift-object`), through
//! the [`Module`] trait.

use crate::kexpr::{Arithmetic, Intrinsic, Kexpr, MathFunction};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, BlockArg, InstBuilder, MemFlagsData, Signature, Type, Value,
};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncId, Linkage, Module};
use npdec_symbolic::CompareOp;
use std::collections::{BTreeSet, HashMap};

/// The floating-point type of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    F32,
    F64,
}

impl Precision {
    pub fn scalar(self) -> Type {
        match self {
            Precision::F32 => types::F32,
            Precision::F64 => types::F64,
        }
    }

    pub fn vector(self) -> Type {
        match self {
            Precision::F32 => types::F32X4,
            Precision::F64 => types::F64X2,
        }
    }

    /// Returns the number of lanes of a 128-bit vector.
    pub fn lanes(self) -> i64 {
        match self {
            Precision::F32 => 4,
            Precision::F64 => 2,
        }
    }

    /// Returns the size of one element in bytes.
    pub fn bytes(self) -> i64 {
        match self {
            Precision::F32 => 4,
            Precision::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "float",
            Precision::F64 => "double",
        }
    }
}

/// The layout of one buffer: `channels` planes of a row-major array with the given extents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferLayout {
    pub channels: usize,
    pub extents: Vec<usize>,
}

impl BufferLayout {
    /// Returns the number of elements.
    pub fn len(&self) -> usize {
        self.channels * self.extents.iter().product::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the distance in elements between channels and between neighbours along each axis.
    pub fn strides(&self) -> (i64, Vec<i64>) {
        let mut strides = vec![1i64; self.extents.len()];
        for a in (0..self.extents.len().saturating_sub(1)).rev() {
            strides[a] = strides[a + 1] * self.extents[a + 1] as i64;
        }
        let plane: i64 = self.extents.iter().map(|e| *e as i64).product();
        (plane, strides)
    }
}

/// A value a kernel stores once per row of its outer axes, before the innermost loop.
#[derive(Clone, Debug, PartialEq)]
pub struct RowStore {
    pub buffer: usize,
    pub channel: usize,
    /// The stored element relative to the row's point at innermost index 0, in the kernel frame.
    pub offset: Vec<isize>,
    /// The value, evaluated at innermost index 0: its loads carry the column in their offsets and
    /// it has no coordinate of the innermost axis.
    pub expr: Kexpr,
}

/// One kernel: for every point `i` of `region` and every `(channel, expr)`, store `expr(i)` into
/// `output[channel, i + output_shift]`.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpec {
    pub name: String,
    pub output: usize,
    pub output_shift: Vec<isize>,
    /// Per axis of the kernel frame, the half-open range of indices. The range of axis 0 is the
    /// default for the `start..end` arguments.
    pub region: Vec<(isize, isize)>,
    pub channels: Vec<(usize, Kexpr)>,
    /// True when the kernel never reads `output`. A kernel with a row prologue may still read
    /// the prologue's buffer.
    pub readonly_inputs: bool,
    /// Stores at the start of every row, in order, before the first channel's innermost loop.
    /// Each row's stores may only write elements that no other row of the kernel reads, so rows
    /// can still run on separate threads.
    pub row_prologue: Vec<RowStore>,
    /// Stores at the end of every row, in order, after the last channel's innermost loop, under
    /// the same rule as the prologue. They may overwrite what the loop stored.
    pub row_epilogue: Vec<RowStore>,
}

impl KernelSpec {
    pub fn rank(&self) -> usize {
        self.region.len()
    }

    /// Returns every expression of the kernel: its channels, then its row prologue and epilogue.
    pub fn exprs(&self) -> impl Iterator<Item = &Kexpr> {
        self.channels.iter().map(|(_, e)| e).chain(
            self.row_prologue
                .iter()
                .chain(&self.row_epilogue)
                .map(|store| &store.expr),
        )
    }

    /// Returns the number of points times channels the kernel writes.
    pub fn work(&self) -> usize {
        let points: usize = self
            .region
            .iter()
            .map(|(lo, hi)| (hi - lo).max(0) as usize)
            .product();
        points * self.channels.len()
    }
}

/// Options of code generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodegenOptions {
    /// Use 128-bit vectors in the innermost loop where the expression allows it.
    pub simd: bool,
    /// Rows of axis 0 that each iteration of the innermost loops computes, one vector of each,
    /// where the kernel has an outer axis, runs on vector lanes and never reads its output: the
    /// points of the rows share their loads of the same address (most taps of axis 0 of a
    /// stencil). With 1, an iteration computes two vectors of one row, which share the taps of
    /// the innermost axis that overlap.
    pub row_block: usize,
    /// Make the kernel's symbol visible outside its module. Object files export only their step
    /// function, so their kernels stay local.
    pub export: bool,
}

/// The default of [`CodegenOptions::row_block`]: on a processor with AVX-512 and two 128-bit loads
/// per cycle, four rows ran the 3-D order-8 update fastest (two, three, six and eight were slower).
pub const ROW_BLOCK: usize = 4;

impl Default for CodegenOptions {
    fn default() -> Self {
        CodegenOptions {
            simd: true,
            row_block: ROW_BLOCK,
            export: true,
        }
    }
}

/// Returns the signature every kernel has.
pub fn kernel_signature<M: Module>(module: &M) -> Signature {
    let pointer = module.target_config().pointer_type();
    let mut signature = module.make_signature();
    signature.params.push(AbiParam::new(pointer));
    signature.params.push(AbiParam::new(types::F64));
    signature.params.push(AbiParam::new(types::I64));
    signature.params.push(AbiParam::new(types::I64));
    signature
}

/// Returns the math functions a set of expressions calls.
pub fn math_functions<'a>(exprs: impl IntoIterator<Item = &'a Kexpr>) -> BTreeSet<MathFunction> {
    let mut functions = BTreeSet::new();
    for expr in exprs {
        expr.walk(&mut |e| {
            if let Kexpr::Call(f, _) = e {
                functions.insert(*f);
            }
        });
    }
    functions
}

/// Declares and defines one kernel in `module`.
pub fn define_kernel<M: Module>(
    module: &mut M,
    context: &mut Context,
    builder_context: &mut FunctionBuilderContext,
    spec: &KernelSpec,
    layouts: &[BufferLayout],
    precision: Precision,
    options: CodegenOptions,
) -> Result<FuncId, String> {
    let signature = kernel_signature(module);
    let id = module
        .declare_function(
            &spec.name,
            if options.export {
                Linkage::Export
            } else {
                Linkage::Local
            },
            &signature,
        )
        .map_err(|e| e.to_string())?;

    // Import the math functions before building, so the builder only borrows the function.
    let mut imports = HashMap::new();
    for function in math_functions(spec.exprs()) {
        let mut call_signature = module.make_signature();
        for _ in 0..function.arity() {
            call_signature
                .params
                .push(AbiParam::new(precision.scalar()));
        }
        call_signature
            .returns
            .push(AbiParam::new(precision.scalar()));
        let name = function.symbol(precision == Precision::F32);
        let import = module
            .declare_function(name, Linkage::Import, &call_signature)
            .map_err(|e| e.to_string())?;
        imports.insert(function, import);
    }

    let frontend_config = module.isa().frontend_config();
    context.func.signature = signature;
    context.func.name = cranelift_codegen::ir::UserFuncName::user(0, id.as_u32());
    {
        let mut builder = FunctionBuilder::new(&mut context.func, builder_context);
        let mut function_refs = HashMap::new();
        for (function, import) in &imports {
            function_refs.insert(
                *function,
                module.declare_func_in_func(*import, builder.func),
            );
        }
        let mut emitter = Emitter::new(
            &mut builder,
            spec,
            layouts,
            precision,
            options,
            function_refs,
        )?;
        emitter.body()?;
        builder.seal_all_blocks();
        builder.finalize(frontend_config);
    }
    module
        .define_function(id, context)
        .map_err(|e| format!("{e:?}"))?;
    module.clear_context(context);
    Ok(id)
}

/// Whether an expression is evaluated on one element or on a vector of lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lanes {
    One,
    Vector,
}

struct Emitter<'a, 'b> {
    builder: &'a mut FunctionBuilder<'b>,
    spec: &'a KernelSpec,
    layouts: &'a [BufferLayout],
    precision: Precision,
    options: CodegenOptions,
    functions: HashMap<MathFunction, cranelift_codegen::ir::FuncRef>,
    /// Base pointers of the buffers, loaded in the entry block.
    bases: HashMap<usize, Value>,
    /// Loop-invariant values hoisted into the entry block, by lanes: constants, uniforms, time.
    constants: HashMap<(u64, Lanes), Value>,
    uniforms: HashMap<(usize, usize, Lanes), Value>,
    time: HashMap<Lanes, Value>,
    /// Loop indices of the current point, one per enclosing axis.
    indices: Vec<Value>,
    /// Row pointers of `(buffer, channel)` at the current row, for offset 0 along every axis.
    rows: HashMap<(usize, usize), Value>,
    /// The byte offset of the innermost index.
    column_bytes: Option<Value>,
    /// Bytes added to every displacement: the column of the second point of an unrolled pair.
    unrolled: i32,
    /// Rows of axis 0 that each iteration of the current loop nest computes.
    row_block: isize,
    /// The row of axis 0 of the point being emitted, relative to the loop index of axis 0.
    row: isize,
    /// True for the first point of an iteration, which starts with no loads to share.
    first_point: bool,
    /// Loads already emitted for the current point, or pair of points, by buffer, channel and
    /// byte displacement.
    loaded: HashMap<(usize, usize, i32), Value>,
    /// True while emitting the loop nest of the first channel, which runs the row prologue.
    first_channel: bool,
    /// True while emitting the loop nest of the last channel, which runs the row epilogue.
    last_channel: bool,
    load_flags: MemFlagsData,
    store_flags: MemFlagsData,
    start: Value,
    end: Value,
}

impl<'a, 'b> Emitter<'a, 'b> {
    fn new(
        builder: &'a mut FunctionBuilder<'b>,
        spec: &'a KernelSpec,
        layouts: &'a [BufferLayout],
        precision: Precision,
        options: CodegenOptions,
        functions: HashMap<MathFunction, cranelift_codegen::ir::FuncRef>,
    ) -> Result<Self, String> {
        let mut load = MemFlagsData::new().with_notrap();
        // A row prologue stores into a buffer the loops then load from.
        if spec.readonly_inputs && spec.row_prologue.is_empty() {
            load = load.with_readonly();
        }
        let load_flags = load;
        let store_flags = MemFlagsData::new().with_notrap();
        let entry = builder.create_block();
        builder.append_block_params_for_function_params(entry);
        builder.switch_to_block(entry);
        let params = builder.block_params(entry).to_vec();
        let [buffers, time, start, end] = params[..] else {
            return Err("kernel signature has four parameters".into());
        };
        let mut emitter = Emitter {
            builder,
            spec,
            layouts,
            precision,
            options,
            functions,
            bases: HashMap::new(),
            constants: HashMap::new(),
            uniforms: HashMap::new(),
            time: HashMap::new(),
            indices: Vec::new(),
            rows: HashMap::new(),
            column_bytes: None,
            unrolled: 0,
            row_block: 1,
            row: 0,
            first_point: true,
            loaded: HashMap::new(),
            first_channel: false,
            last_channel: false,
            load_flags,
            store_flags,
            start,
            end,
        };
        emitter.hoist(buffers, time)?;
        Ok(emitter)
    }

    fn vectorized(&self) -> bool {
        let rank = self.spec.rank();
        self.options.simd
            && rank > 0
            && self
                .spec
                .channels
                .iter()
                .all(|(_, e)| e.vectorizable(rank - 1))
    }

    /// Returns true when the loops compute a block of several rows of axis 0 per iteration: the
    /// kernel has an outer axis, runs on vector lanes and never reads its output. The row prologues
    /// of all rows run before the loops and the epilogues after them, which the rule of
    /// [`KernelSpec::row_prologue`] allows: no row reads what another row's stores write.
    fn blocks_rows(&self) -> bool {
        self.options.row_block >= 2
            && self.spec.rank() >= 2
            && self.vectorized()
            && self.spec.readonly_inputs
    }

    /// Loads base pointers and evaluates every loop-invariant leaf in the entry block.
    fn hoist(&mut self, buffers: Value, time: Value) -> Result<(), String> {
        let mut used = BTreeSet::new();
        used.insert(self.spec.output);
        for store in self.spec.row_prologue.iter().chain(&self.spec.row_epilogue) {
            used.insert(store.buffer);
        }
        let mut constants = BTreeSet::new();
        let mut uniforms = BTreeSet::new();
        let mut uses_time = false;
        for expr in self.spec.exprs() {
            expr.walk(&mut |e| match e {
                Kexpr::Load { buffer, .. } => {
                    used.insert(*buffer);
                }
                Kexpr::Uniform { buffer, index } => {
                    used.insert(*buffer);
                    uniforms.insert((*buffer, *index));
                }
                Kexpr::Const(c) => {
                    constants.insert(c.to_bits());
                }
                Kexpr::Time => uses_time = true,
                Kexpr::Coordinate { .. }
                | Kexpr::Unary(..)
                | Kexpr::Binary(..)
                | Kexpr::Call(..)
                | Kexpr::Select { .. } => {}
            });
        }
        let pointer = types::I64;
        let plain = MemFlagsData::new().with_notrap().with_readonly();
        for buffer in used {
            if buffer >= self.layouts.len() {
                return Err(format!(
                    "kernel `{}` reads buffer {buffer}, which does not exist",
                    self.spec.name
                ));
            }
            let offset = i32::try_from(buffer * 8).map_err(|_| "too many buffers".to_string())?;
            let base = self.builder.ins().load(pointer, plain, buffers, offset);
            self.bases.insert(buffer, base);
        }
        let vector = self.vectorized();
        let lanes: &[Lanes] = if vector {
            &[Lanes::One, Lanes::Vector]
        } else {
            &[Lanes::One]
        };
        for bits in constants {
            let scalar = self.scalar_constant(f64::from_bits(bits));
            for l in lanes {
                let value = self.widen(scalar, *l);
                self.constants.insert((bits, *l), value);
            }
        }
        for (buffer, index) in uniforms {
            let offset = i32::try_from(index as i64 * self.precision.bytes())
                .map_err(|_| "tensor too large".to_string())?;
            let scalar = self.builder.ins().load(
                self.precision.scalar(),
                self.load_flags,
                self.bases[&buffer],
                offset,
            );
            for l in lanes {
                let value = self.widen(scalar, *l);
                self.uniforms.insert((buffer, index, *l), value);
            }
        }
        if uses_time {
            let scalar = self.round_to_precision(time);
            for l in lanes {
                let value = self.widen(scalar, *l);
                self.time.insert(*l, value);
            }
        }
        Ok(())
    }

    fn scalar_constant(&mut self, value: f64) -> Value {
        match self.precision {
            Precision::F32 => self.builder.ins().f32const(value as f32),
            Precision::F64 => self.builder.ins().f64const(value),
        }
    }

    fn round_to_precision(&mut self, value: Value) -> Value {
        match self.precision {
            Precision::F32 => self.builder.ins().fdemote(types::F32, value),
            Precision::F64 => value,
        }
    }

    fn widen(&mut self, scalar: Value, lanes: Lanes) -> Value {
        match lanes {
            Lanes::One => scalar,
            Lanes::Vector => self.builder.ins().splat(self.precision.vector(), scalar),
        }
    }

    fn iconst(&mut self, value: i64) -> Value {
        self.builder.ins().iconst(types::I64, value)
    }

    fn body(&mut self) -> Result<(), String> {
        let channels = self.spec.channels.clone();
        let row_stores = !self.spec.row_prologue.is_empty() || !self.spec.row_epilogue.is_empty();
        if row_stores && self.spec.rank() < 2 {
            return Err(format!(
                "kernel `{}` stores values per row but has no outer axis",
                self.spec.name
            ));
        }
        for (index, (channel, expr)) in channels.iter().enumerate() {
            self.first_channel = index == 0;
            self.last_channel = index + 1 == channels.len();
            if self.spec.rank() == 0 {
                self.rows.clear();
                self.first_point = true;
                self.point(*channel, expr, Lanes::One)?;
            } else {
                self.axis(0, *channel, expr)?;
            }
        }
        self.builder.ins().return_(&[]);
        Ok(())
    }

    /// Emits the loop over axis `a` and everything inside it.
    fn axis(&mut self, a: usize, channel: usize, expr: &Kexpr) -> Result<(), String> {
        let rank = self.spec.rank();
        let (lo, hi) = if a == 0 {
            (self.start, self.end)
        } else {
            let (lo, hi) = self.spec.region[a];
            (self.iconst(lo as i64), self.iconst(hi as i64))
        };
        if a + 1 == rank {
            return self.innermost(lo, hi, channel, expr);
        }
        if a == 0 && self.blocks_rows() {
            return self.row_blocks(lo, hi, channel, expr);
        }
        let header = self.builder.create_block();
        let body = self.builder.create_block();
        let exit = self.builder.create_block();
        let index = self.builder.append_block_param(header, types::I64);
        self.builder.ins().jump(header, &[BlockArg::Value(lo)]);
        self.builder.switch_to_block(header);
        let more = self.builder.ins().icmp(IntCC::SignedLessThan, index, hi);
        self.builder.ins().brif(more, body, &[], exit, &[]);
        self.builder.switch_to_block(body);
        self.indices.push(index);
        self.axis(a + 1, channel, expr)?;
        self.indices.pop();
        let one = self.iconst(1);
        let next = self.builder.ins().iadd(index, one);
        self.builder.ins().jump(header, &[BlockArg::Value(next)]);
        self.builder.switch_to_block(exit);
        Ok(())
    }

    /// Emits the loop over axis 0 in blocks of rows, with single rows at the end of the range when
    /// a whole block does not fit. The loops inside compute every row of the block per iteration.
    fn row_blocks(
        &mut self,
        lo: Value,
        hi: Value,
        channel: usize,
        expr: &Kexpr,
    ) -> Result<(), String> {
        let header = self.builder.create_block();
        let dispatch = self.builder.create_block();
        let whole = self.builder.create_block();
        let single = self.builder.create_block();
        let exit = self.builder.create_block();
        let index = self.builder.append_block_param(header, types::I64);
        self.builder.ins().jump(header, &[BlockArg::Value(lo)]);
        self.builder.switch_to_block(header);
        let more = self.builder.ins().icmp(IntCC::SignedLessThan, index, hi);
        self.builder.ins().brif(more, dispatch, &[], exit, &[]);
        self.builder.switch_to_block(dispatch);
        let block_rows = self.options.row_block as isize;
        let last = self.builder.ins().iadd_imm_s(index, block_rows as i64 - 1);
        let fits = self.builder.ins().icmp(IntCC::SignedLessThan, last, hi);
        self.builder.ins().brif(fits, whole, &[], single, &[]);
        for (block, rows) in [(whole, block_rows), (single, 1)] {
            self.builder.switch_to_block(block);
            self.indices.push(index);
            self.row_block = rows;
            let result = self.axis(1, channel, expr);
            self.row_block = 1;
            self.indices.pop();
            result?;
            let next = self.builder.ins().iadd_imm_s(index, rows as i64);
            self.builder.ins().jump(header, &[BlockArg::Value(next)]);
        }
        self.builder.switch_to_block(exit);
        Ok(())
    }

    /// Computes the row pointer of `(buffer, channel)` for the current outer indices.
    fn row(&mut self, buffer: usize, channel: usize) -> Value {
        if let Some(row) = self.rows.get(&(buffer, channel)) {
            return *row;
        }
        let (plane, strides) = self.layouts[buffer].strides();
        let rank = self.spec.rank();
        let mut elements = self.iconst(channel as i64 * plane);
        let outer = rank.saturating_sub(1);
        let outer_indices: Vec<Value> = self.indices[..outer].to_vec();
        for (index, stride) in outer_indices.iter().zip(&strides) {
            let stride = self.iconst(*stride);
            let term = self.builder.ins().imul(*index, stride);
            elements = self.builder.ins().iadd(elements, term);
        }
        let size = self.iconst(self.precision.bytes());
        let bytes = self.builder.ins().imul(elements, size);
        let row = self.builder.ins().iadd(self.bases[&buffer], bytes);
        self.rows.insert((buffer, channel), row);
        row
    }

    /// Returns the constant byte displacement of `offset` in `buffer`.
    fn displacement(&self, buffer: usize, offset: &[isize]) -> Result<i32, String> {
        let (_, strides) = self.layouts[buffer].strides();
        let mut elements: i64 = offset
            .iter()
            .zip(&strides)
            .map(|(o, s)| *o as i64 * s)
            .sum();
        if let Some(stride) = strides.first() {
            elements += self.row as i64 * stride;
        }
        i32::try_from(elements * self.precision.bytes() + i64::from(self.unrolled))
            .map_err(|_| format!("offset {offset:?} too large for a load"))
    }

    /// Emits the innermost loop: pairs of vectors while two whole vectors fit (one vector of each
    /// row in a block of rows), one more vector if it fits, then single elements. The loops count the column in bytes and test at their end,
    /// so an iteration spends one addition, one comparison and one branch.
    fn innermost(
        &mut self,
        lo: Value,
        hi: Value,
        channel: usize,
        expr: &Kexpr,
    ) -> Result<(), String> {
        self.rows.clear();
        let vector = self.vectorized();

        // The row pointers only depend on the outer indices: compute them before the loops.
        let mut buffers = BTreeSet::new();
        expr.walk(&mut |e| {
            if let Kexpr::Load {
                buffer, channel, ..
            } = e
            {
                buffers.insert((*buffer, *channel));
            }
        });
        buffers.insert((self.spec.output, channel));
        for (buffer, c) in buffers {
            self.row(buffer, c);
        }
        if self.first_channel {
            let stores = self.spec.row_prologue.clone();
            self.block_row_stores(&stores)?;
        }

        let bytes = self.precision.bytes();
        let shift = i64::from(bytes.trailing_zeros());
        let lo = self.builder.ins().ishl_imm_u(lo, shift);
        let hi = self.builder.ins().ishl_imm_u(hi, shift);
        let scalar_check = self.builder.create_block();
        let scalar_body = self.builder.create_block();
        let exit = self.builder.create_block();
        if vector {
            let width = self.precision.lanes() * bytes;
            let vector_body = self.builder.create_block();
            let single_check = self.builder.create_block();
            let single_body = self.builder.create_block();
            // One vector per row in a block of rows, else two.
            let vectors: i64 = if self.row_block >= 2 { 1 } else { 2 };
            let vector_last = self.builder.ins().iadd_imm_s(hi, -vectors * width);
            let single_last = self.builder.ins().iadd_imm_s(hi, -width);
            let fits = self
                .builder
                .ins()
                .icmp(IntCC::SignedLessThanOrEqual, lo, vector_last);
            self.builder.ins().brif(
                fits,
                vector_body,
                &[BlockArg::Value(lo)],
                single_check,
                &[BlockArg::Value(lo)],
            );

            self.builder.switch_to_block(vector_body);
            let column = self.builder.append_block_param(vector_body, types::I64);
            let extras: &[i64] = if vectors == 1 { &[0] } else { &[0, width] };
            self.points_at(column, extras, channel, expr, Lanes::Vector)?;
            let next = self.builder.ins().iadd_imm_s(column, vectors * width);
            let fits = self
                .builder
                .ins()
                .icmp(IntCC::SignedLessThanOrEqual, next, vector_last);
            self.builder.ins().brif(
                fits,
                vector_body,
                &[BlockArg::Value(next)],
                single_check,
                &[BlockArg::Value(next)],
            );

            self.builder.switch_to_block(single_check);
            let column = self.builder.append_block_param(single_check, types::I64);
            let fits = self
                .builder
                .ins()
                .icmp(IntCC::SignedLessThanOrEqual, column, single_last);
            self.builder.ins().brif(
                fits,
                single_body,
                &[BlockArg::Value(column)],
                scalar_check,
                &[BlockArg::Value(column)],
            );

            self.builder.switch_to_block(single_body);
            let column = self.builder.append_block_param(single_body, types::I64);
            self.points_at(column, &[0], channel, expr, Lanes::Vector)?;
            let next = self.builder.ins().iadd_imm_s(column, width);
            self.builder
                .ins()
                .jump(scalar_check, &[BlockArg::Value(next)]);
        } else {
            self.builder
                .ins()
                .jump(scalar_check, &[BlockArg::Value(lo)]);
        }

        self.builder.switch_to_block(scalar_check);
        let column = self.builder.append_block_param(scalar_check, types::I64);
        let more = self.builder.ins().icmp(IntCC::SignedLessThan, column, hi);
        self.builder
            .ins()
            .brif(more, scalar_body, &[BlockArg::Value(column)], exit, &[]);

        self.builder.switch_to_block(scalar_body);
        let column = self.builder.append_block_param(scalar_body, types::I64);
        self.points_at(column, &[0], channel, expr, Lanes::One)?;
        let next = self.builder.ins().iadd_imm_s(column, bytes);
        let more = self.builder.ins().icmp(IntCC::SignedLessThan, next, hi);
        self.builder
            .ins()
            .brif(more, scalar_body, &[BlockArg::Value(next)], exit, &[]);
        self.builder.switch_to_block(exit);
        if self.last_channel {
            let stores = self.spec.row_epilogue.clone();
            self.block_row_stores(&stores)?;
        }
        Ok(())
    }

    /// Emits the stores of a row prologue or epilogue for every row of the row block.
    fn block_row_stores(&mut self, stores: &[RowStore]) -> Result<(), String> {
        if stores.is_empty() {
            return Ok(());
        }
        let index = self.indices[0];
        for row in 0..self.row_block {
            if row > 0 {
                self.indices[0] = self.builder.ins().iadd_imm_s(index, row as i64);
            }
            self.row = row;
            let result = self.row_stores(stores);
            self.indices[0] = index;
            self.row = 0;
            result?;
        }
        Ok(())
    }

    /// Emits the stores of a row prologue or epilogue for the current outer indices.
    fn row_stores(&mut self, stores: &[RowStore]) -> Result<(), String> {
        self.column_bytes = None;
        for store in stores {
            self.loaded.clear();
            let value = self.emit(&store.expr, Lanes::One)?;
            let displacement = self.displacement(store.buffer, &store.offset)?;
            let address = self.address(store.buffer, store.channel);
            self.builder
                .ins()
                .store(self.store_flags, value, address, displacement);
        }
        Ok(())
    }

    /// Evaluates and stores the points of one iteration of an innermost loop: for every row of the
    /// row block and then every `extra`, the point `extra` bytes past `column`.
    fn points_at(
        &mut self,
        column: Value,
        extras: &[i64],
        channel: usize,
        expr: &Kexpr,
        lanes: Lanes,
    ) -> Result<(), String> {
        self.first_point = true;
        // The loop index of axis 0; a row block of two rows implies an outer axis.
        let index = self.indices.first().copied();
        for row in 0..self.row_block {
            if let (Some(index), true) = (index, row > 0) {
                self.indices[0] = self.builder.ins().iadd_imm_s(index, row as i64);
            }
            self.row = row;
            let mut result = Ok(());
            for extra in extras {
                result = self.point_at(column, *extra, channel, expr, lanes);
                self.first_point = false;
                if result.is_err() {
                    break;
                }
            }
            if let Some(index) = index {
                self.indices[0] = index;
            }
            self.row = 0;
            result?;
        }
        Ok(())
    }

    /// Evaluates and stores the point whose innermost column is `extra` bytes past `column`
    /// (a byte offset): the displacement of every load and of the store grows by `extra`.
    fn point_at(
        &mut self,
        column: Value,
        extra: i64,
        channel: usize,
        expr: &Kexpr,
        lanes: Lanes,
    ) -> Result<(), String> {
        let bytes = self.precision.bytes();
        let shift = i64::from(bytes.trailing_zeros());
        let mut index = self.builder.ins().sshr_imm_u(column, shift);
        if extra != 0 {
            index = self.builder.ins().iadd_imm_s(index, extra / bytes);
        }
        self.indices.push(index);
        self.column_bytes = Some(column);
        self.unrolled =
            i32::try_from(extra).map_err(|_| "vector too wide for a displacement".to_string())?;
        let result = self.point(channel, expr, lanes);
        self.unrolled = 0;
        self.indices.pop();
        result
    }

    /// Evaluates the expression at the current point and stores it.
    fn point(&mut self, channel: usize, expr: &Kexpr, lanes: Lanes) -> Result<(), String> {
        let output = self.spec.output;
        // Later points of an iteration reuse the earlier ones' loads at the same address when the
        // kernel never reads its output, which is the only buffer stored in between.
        if self.first_point || !self.spec.readonly_inputs {
            self.loaded.clear();
        } else {
            self.loaded.retain(|(buffer, _, _), _| *buffer != output);
        }
        let value = self.emit(expr, lanes)?;
        let displacement = self.displacement(output, &self.spec.output_shift)?;
        let address = self.address(output, channel);
        self.builder
            .ins()
            .store(self.store_flags, value, address, displacement);
        Ok(())
    }

    /// Returns the address of `(buffer, channel)` at the current point, before the displacement.
    fn address(&mut self, buffer: usize, channel: usize) -> Value {
        if self.spec.rank() == 0 {
            let (plane, _) = self.layouts[buffer].strides();
            let bytes = self.iconst(channel as i64 * plane * self.precision.bytes());
            return self.builder.ins().iadd(self.bases[&buffer], bytes);
        }
        let row = self.row(buffer, channel);
        match self.column_bytes {
            Some(column) => self.builder.ins().iadd(row, column),
            None => row,
        }
    }

    fn ty(&self, lanes: Lanes) -> Type {
        match lanes {
            Lanes::One => self.precision.scalar(),
            Lanes::Vector => self.precision.vector(),
        }
    }

    fn emit(&mut self, expr: &Kexpr, lanes: Lanes) -> Result<Value, String> {
        Ok(match expr {
            Kexpr::Load {
                buffer,
                channel,
                offset,
            } => {
                // A point stores only after all its loads, so a repeated load reads the same value.
                let displacement = self.displacement(*buffer, offset)?;
                let key = (*buffer, *channel, displacement);
                if let Some(value) = self.loaded.get(&key) {
                    return Ok(*value);
                }
                let address = self.address(*buffer, *channel);
                let ty = self.ty(lanes);
                let value = self
                    .builder
                    .ins()
                    .load(ty, self.load_flags, address, displacement);
                self.loaded.insert(key, value);
                value
            }
            Kexpr::Uniform { buffer, index } => self.uniforms[&(*buffer, *index, lanes)],
            Kexpr::Const(c) => self.constants[&(c.to_bits(), lanes)],
            Kexpr::Time => self.time[&lanes],
            Kexpr::Coordinate {
                axis,
                origin,
                spacing,
                shift,
            } => {
                let index = *self.indices.get(*axis).ok_or_else(|| {
                    format!(
                        "kernel `{}` reads a coordinate outside its loops",
                        self.spec.name
                    )
                })?;
                let shift = self.iconst(*shift as i64);
                let shifted = self.builder.ins().iadd(index, shift);
                let position = self.builder.ins().fcvt_from_sint(types::F64, shifted);
                let spacing = self.builder.ins().f64const(*spacing);
                let origin = self.builder.ins().f64const(*origin);
                let scaled = self.builder.ins().fmul(position, spacing);
                let coordinate = self.builder.ins().fadd(origin, scaled);
                let value = self.round_to_precision(coordinate);
                self.widen(value, lanes)
            }
            Kexpr::Unary(op, a) => {
                let a = self.emit(a, lanes)?;
                match op {
                    Intrinsic::Neg => self.builder.ins().fneg(a),
                    Intrinsic::Abs => self.builder.ins().fabs(a),
                    Intrinsic::Sqrt => self.builder.ins().sqrt(a),
                }
            }
            Kexpr::Binary(op, a, b) => {
                let a = self.emit(a, lanes)?;
                let b = self.emit(b, lanes)?;
                match op {
                    Arithmetic::Add => self.builder.ins().fadd(a, b),
                    Arithmetic::Sub => self.builder.ins().fsub(a, b),
                    Arithmetic::Mul => self.builder.ins().fmul(a, b),
                    Arithmetic::Div => self.builder.ins().fdiv(a, b),
                    Arithmetic::Min => self.builder.ins().fmin(a, b),
                    Arithmetic::Max => self.builder.ins().fmax(a, b),
                }
            }
            Kexpr::Call(function, args) => {
                if lanes == Lanes::Vector {
                    return Err("a call cannot run on vector lanes".into());
                }
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(self.emit(a, lanes)?);
                }
                let Some(callee) = self.functions.get(function).copied() else {
                    return Err(format!("math function {function:?} was not imported"));
                };
                let call = self.builder.ins().call(callee, &values);
                self.builder.inst_results(call)[0]
            }
            Kexpr::Select {
                op,
                left,
                right,
                then,
                otherwise,
            } => {
                if lanes == Lanes::Vector {
                    return Err("a select cannot run on vector lanes".into());
                }
                let left = self.emit(left, lanes)?;
                let right = self.emit(right, lanes)?;
                let then = self.emit(then, lanes)?;
                let otherwise = self.emit(otherwise, lanes)?;
                let condition = self.builder.ins().fcmp(float_condition(*op), left, right);
                self.builder.ins().select(condition, then, otherwise)
            }
        })
    }
}

/// Returns the ordered comparison matching Rust's operators on floats (false for NaN operands,
/// except `!=`, which is true).
fn float_condition(op: CompareOp) -> FloatCC {
    match op {
        CompareOp::Less => FloatCC::LessThan,
        CompareOp::LessEqual => FloatCC::LessThanOrEqual,
        CompareOp::Greater => FloatCC::GreaterThan,
        CompareOp::GreaterEqual => FloatCC::GreaterThanOrEqual,
        CompareOp::Equal => FloatCC::Equal,
        CompareOp::NotEqual => FloatCC::NotEqual,
    }
}
