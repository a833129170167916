//! Export of the network that a train task runs as an ONNX model built from standard operators.
//!
//! The exporter reads the task as training lowered it (`npdec_runtime::train::lower`), the same
//! tapes the interpreter runs, and unrolls the time steps, so the ONNX graph computes what
//! `npdec run` computes, in float32:
//!
//! | the network's part | ONNX operators |
//! |---|---|
//! | input `[batch, features]`, copied into channels | graph input `input`, `Tile` |
//! | one row of an input sequence per step | `Slice` |
//! | `W @ u` | `Gemm` (`transB = 1`) |
//! | `conv(K, u)`: padding by the boundary condition, then the kernel | `Gather` (or `MatMul` and `Add` where a ghost is not a copy), `Reshape`, `Conv` |
//! | a fixed stencil with its boundary rows (`laplace`, `diff`) | `MatMul` by its matrix, `Add` of its constant part |
//! | `pool(u, k)`, `upsample(u, k)` | `Reshape` to images, `AveragePool` (window and stride `k`) or `Resize` (`nearest`, scale `k`) |
//! | `div(c * grad(u))`, `upwind` | not exported: an error names them |
//! | arithmetic, activations | `Add`, `Sub`, `Mul`, `Div`, `Pow`, `Neg`, `Tanh`, `Relu`, `Sigmoid`, `Exp`, `Log`, `Sin`, `Cos`, `Abs`, `Sqrt`, `Max`, `Min` |
//! | comparisons | `Less`, `Greater`, …, `Cast` |
//! | `softmax`, reductions | `Softmax`, `ReduceSum`, `ReduceMean`, `ReduceMax`, `ReduceMin` |
//! | an explicit Euler step `u + Δt·f(u)`; RK4 stages | `Mul`, `Add` |
//! | Dirichlet nodes held at their values | `Mul` by a mask, `Add` |
//! | the readout | graph output `scores` (cross-entropy) or `prediction` (MSE) |
//!
//! The loss itself is not exported. Parameters are initializers; a per-step parameter gives one
//! initializer per step. Constructs without an export (a prediction that reads the labels, a
//! convolution whose grid cannot be found) are errors that name them.

pub mod proto;

use npdec_runtime::train::adjoint::{RK4_OFFSETS, RK4_WEIGHTS};
use npdec_runtime::train::lower::{ExplicitScheme, Head, LoweredTask, StateSlot};
use npdec_runtime::train::tape::{Op, ParamValues, Tape};
use npdec_symbolic::{BinaryOp, CompareOp, Expr, Function, Loss, Model, ReduceOp, TrainTask};
use proto::*;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The ONNX opset the models use.
pub const OPSET: i64 = 18;
/// The ONNX IR version of opset 18.
const IR_VERSION: i64 = 8;

/// Why a network could not be exported.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportError {
    pub message: String,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExportError {}

fn error(message: impl Into<String>) -> ExportError {
    ExportError {
        message: message.into(),
    }
}

/// An exported network.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The serialized `ModelProto`.
    pub bytes: Vec<u8>,
    /// Entries of one input sample.
    pub features: usize,
    /// The graph output's name, `scores` or `prediction`, and its width.
    pub output: String,
    pub output_width: usize,
    /// How many nodes of each operator the graph holds.
    pub operators: BTreeMap<String, usize>,
    /// Number of float values in the initializers.
    pub initializer_values: usize,
}

/// Exports the network of a lowered train task with the given parameter values, for samples of
/// `features` entries.
pub fn export_network(
    model: &Model,
    task: &TrainTask,
    lowered: &LoweredTask,
    params: &ParamValues,
    features: usize,
) -> Result<Exported, ExportError> {
    if let Loss::Mse { prediction, .. } = &task.loss {
        if prediction.any(|e| matches!(e, Expr::Label(_))) {
            return Err(error(format!(
                "the prediction `{}` reads the labels, which an exported network does not have",
                model.display_expr(prediction)
            )));
        }
    }
    let mut builder = Builder {
        model,
        params,
        nodes: Vec::new(),
        initializers: Vec::new(),
        param_names: HashMap::new(),
        matrix_names: HashMap::new(),
        operator_names: HashMap::new(),
        counter: 0,
        features,
        batch_shape: None,
    };
    let input = Value {
        name: "input".to_string(),
        len: features,
        batched: true,
    };

    // Initial states.
    let initial = builder.tape(
        &lowered.initial,
        &Context {
            states: &[],
            input: &input,
            step: 0,
            time: 0.0,
            prefix: "initial",
        },
    )?;
    let mut states = Vec::with_capacity(lowered.states.len());
    for slot in &lowered.states {
        let value = builder.full(&initial[slot.initial], slot.len(), "initial")?;
        states.push(builder.dirichlet(slot, value, "initial"));
    }

    // Time steps.
    let dt = lowered.dt;
    for step in 0..lowered.steps {
        let time = step as f64 * dt;
        let prefix = format!("step{step}");
        match lowered.scheme {
            ExplicitScheme::SplitStep => {
                return Err(error(
                    "split-step Fourier tasks have no ONNX export: ONNX has no complex Fourier transform of the field",
                ))
            }
            ExplicitScheme::Euler => {
                let rates = builder.rates(lowered, &states, &input, step, time, &prefix)?;
                for (index, (slot, rate)) in lowered.states.iter().zip(rates).enumerate() {
                    if let Some(rate) = rate {
                        let next = builder.axpy(&states[index], dt, &rate, &prefix);
                        states[index] = builder.dirichlet(slot, next, &prefix);
                    }
                }
            }
            ExplicitScheme::Rk4 => {
                let mut stages: Vec<Vec<Option<Value>>> = Vec::with_capacity(4);
                for (stage, offset) in RK4_OFFSETS.iter().enumerate() {
                    let stage_prefix = format!("{prefix}_stage{stage}");
                    let stage_states: Vec<Value> = if stage == 0 {
                        states.clone()
                    } else {
                        let mut shifted = Vec::with_capacity(states.len());
                        for (index, slot) in lowered.states.iter().enumerate() {
                            match &stages[stage - 1][index] {
                                Some(rate) => {
                                    let v = builder.axpy(
                                        &states[index],
                                        dt * offset,
                                        rate,
                                        &stage_prefix,
                                    );
                                    shifted.push(builder.dirichlet(slot, v, &stage_prefix));
                                }
                                None => shifted.push(states[index].clone()),
                            }
                        }
                        shifted
                    };
                    let rates = builder.rates(
                        lowered,
                        &stage_states,
                        &input,
                        step,
                        time + offset * dt,
                        &stage_prefix,
                    )?;
                    stages.push(rates);
                }
                for (index, slot) in lowered.states.iter().enumerate() {
                    let mut state = states[index].clone();
                    let mut changed = false;
                    for (rates, weight) in stages.iter().zip(RK4_WEIGHTS) {
                        if let Some(rate) = &rates[index] {
                            state = builder.axpy(&state, dt * weight, rate, &prefix);
                            changed = true;
                        }
                    }
                    if changed {
                        states[index] = builder.dirichlet(slot, state, &prefix);
                    }
                }
            }
        }
    }

    // The readout on the final state: the nodes the scores or the prediction need, without the
    // loss's target.
    let (output_name, node) = match lowered.head {
        Head::CrossEntropy { scores } => ("scores", scores),
        Head::Mse { prediction, .. } => ("prediction", prediction),
    };
    let head = builder.tape_part(
        &lowered.head_tape,
        &Context {
            states: &states,
            input: &input,
            step: lowered.steps,
            time: lowered.steps as f64 * dt,
            prefix: "readout",
        },
        &needed_by(&lowered.head_tape, node),
    )?;
    let width = head[node].len;
    let output = builder.full(&head[node], width, "readout")?;
    builder.push("Identity", &[&output.name], output_name, vec![], "readout");

    let mut operators = BTreeMap::new();
    for node in &builder.nodes {
        *operators
            .entry(node.op_type.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    let initializer_values = builder
        .initializers
        .iter()
        .map(|t| t.float_data.len())
        .sum();
    let graph = GraphProto {
        node: builder.nodes,
        name: Some(model.name.clone()),
        initializer: builder.initializers,
        doc_string: Some(format!(
            "The network of `train` in model `{}`, {} explicit {} unrolled, exported by npdec",
            model.name,
            lowered.steps,
            if lowered.steps == 1 { "step" } else { "steps" }
        )),
        input: vec![value_info("input", features)],
        output: vec![value_info(output_name, output.len)],
    };
    let model_proto = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("npdec".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        doc_string: Some(format!("model {}", model.name)),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
    };
    Ok(Exported {
        bytes: prost::Message::encode_to_vec(&model_proto),
        features,
        output: output_name.to_string(),
        output_width: output.len,
        operators,
        initializer_values,
    })
}

fn value_info(name: &str, width: usize) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension {
                            dim_value: None,
                            dim_param: Some("batch".to_string()),
                        },
                        Dimension {
                            dim_value: Some(width as i64),
                            dim_param: None,
                        },
                    ],
                }),
            }),
        }),
    }
}

/// A tensor of the graph: `[batch, len]` when batched, else `[1, len]`.
#[derive(Clone, Debug)]
struct Value {
    name: String,
    len: usize,
    batched: bool,
}

/// Where a tape is evaluated.
struct Context<'a> {
    states: &'a [Value],
    input: &'a Value,
    step: usize,
    time: f64,
    prefix: &'a str,
}

struct Builder<'a> {
    model: &'a Model,
    params: &'a ParamValues,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// The initializer of each parameter's values at a step.
    param_names: HashMap<(usize, usize), String>,
    /// The initializer of each matrix or kernel parameter at a step, in its declared shape.
    matrix_names: HashMap<(usize, usize), String>,
    /// Initializers already made for a shared operator (a stencil matrix, padding indices).
    operator_names: HashMap<(usize, &'static str), String>,
    counter: usize,
    features: usize,
    /// The 1-D tensor `[batch]`, made on first use.
    batch_shape: Option<String>,
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        i: Some(value),
        r#type: Some(attribute_type::INT),
        ..Default::default()
    }
}

fn ints_attribute(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        ints: values.to_vec(),
        r#type: Some(attribute_type::INTS),
        ..Default::default()
    }
}

fn string_attribute(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        s: Some(value.as_bytes().to_vec()),
        r#type: Some(attribute_type::STRING),
        ..Default::default()
    }
}

impl Builder<'_> {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Adds a node with one output named `output` and returns that name.
    fn push(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
        prefix: &str,
    ) -> String {
        let name = format!("{prefix}/{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(name),
            op_type: Some(op.to_string()),
            attribute,
            doc_string: None,
        });
        output.to_string()
    }

    /// Adds a node with a fresh output name.
    fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        prefix: &str,
    ) -> String {
        let output = self.fresh(&format!("{prefix}_{}", op.to_lowercase()));
        self.push(op, inputs, &output, attribute, prefix)
    }

    fn floats(&mut self, hint: &str, dims: &[usize], values: &[f64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: Some(FLOAT),
            float_data: values.iter().map(|v| *v as f32).collect(),
            int64_data: Vec::new(),
            name: Some(name.clone()),
        });
        name
    }

    fn ints(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(INT64),
            float_data: Vec::new(),
            int64_data: values.to_vec(),
            name: Some(name.clone()),
        });
        name
    }

    fn reshape(&mut self, value: &str, shape: &[i64], prefix: &str) -> String {
        let shape = self.ints("shape", shape);
        self.op("Reshape", &[value, &shape], vec![], prefix)
    }

    /// Returns the initializer `[1, len]` of a parameter's values at `step`.
    fn param(&mut self, id: npdec_symbolic::ParamId, step: usize) -> String {
        let size = self.params.step_sizes[id.0].max(1);
        let steps = self.params.values[id.0].len() / size;
        let step = step.min(steps.saturating_sub(1));
        if let Some(name) = self.param_names.get(&(id.0, step)) {
            return name.clone();
        }
        let values = self.params.at_step(id, step).to_vec();
        let param = self.model.param(id);
        let hint = if param.per_step {
            format!("{}_step{step}", param.name)
        } else {
            param.name.clone()
        };
        let name = self.floats(&hint, &[1, values.len()], &values);
        self.param_names.insert((id.0, step), name.clone());
        name
    }

    /// Tiles a value narrower than `len` (its entries repeated, as the interpreter broadcasts).
    fn widen(&mut self, value: &Value, len: usize, prefix: &str) -> Result<Value, ExportError> {
        if value.len == len || value.len == 1 {
            return Ok(Value {
                name: value.name.clone(),
                len: if value.len == 1 { value.len } else { len },
                batched: value.batched,
            });
        }
        if value.len == 0 || !len.is_multiple_of(value.len) {
            return Err(error(format!(
                "a value of {} entries cannot widen to {len} entries",
                value.len
            )));
        }
        let repeats = self.ints("repeats", &[1, (len / value.len) as i64]);
        let name = self.op("Tile", &[&value.name, &repeats], vec![], prefix);
        Ok(Value {
            name,
            len,
            batched: value.batched,
        })
    }

    /// Returns a value as `[batch, len]`: tiled when narrower, expanded along the batch.
    fn full(&mut self, value: &Value, len: usize, prefix: &str) -> Result<Value, ExportError> {
        let value = self.widen(value, len, prefix)?;
        if value.batched && value.len == len {
            return Ok(value);
        }
        let batch = match &self.batch_shape {
            Some(name) => name.clone(),
            None => {
                let shape = self.op("Shape", &["input"], vec![], "batch");
                let starts = self.ints("starts", &[0]);
                let ends = self.ints("ends", &[1]);
                let name = self.op("Slice", &[&shape, &starts, &ends], vec![], "batch");
                self.batch_shape = Some(name.clone());
                name
            }
        };
        let width = self.ints("width", &[len as i64]);
        let shape = self.op(
            "Concat",
            &[&batch, &width],
            vec![int_attribute("axis", 0)],
            prefix,
        );
        let name = self.op("Expand", &[&value.name, &shape], vec![], prefix);
        Ok(Value {
            name,
            len,
            batched: true,
        })
    }

    /// Returns `x + a·y`.
    fn axpy(&mut self, x: &Value, a: f64, y: &Value, prefix: &str) -> Value {
        let scale = self.floats("dt", &[], &[a]);
        let scaled = self.op("Mul", &[&y.name, &scale], vec![], prefix);
        let name = self.op("Add", &[&x.name, &scaled], vec![], prefix);
        Value {
            name,
            len: x.len,
            batched: x.batched || y.batched,
        }
    }

    /// Holds the Dirichlet nodes of a state at their values.
    fn dirichlet(&mut self, slot: &StateSlot, value: Value, prefix: &str) -> Value {
        if slot.dirichlet.is_empty() {
            return value;
        }
        let mut mask = vec![1.0; slot.len()];
        let mut fixed = vec![0.0; slot.len()];
        for c in 0..slot.channels {
            for (node, v) in &slot.dirichlet {
                mask[c * slot.points + node] = 0.0;
                fixed[c * slot.points + node] = *v;
            }
        }
        let mask = self.floats("dirichlet_mask", &[1, slot.len()], &mask);
        let fixed = self.floats("dirichlet_values", &[1, slot.len()], &fixed);
        let masked = self.op("Mul", &[&value.name, &mask], vec![], prefix);
        let name = self.op("Add", &[&masked, &fixed], vec![], prefix);
        Value { name, ..value }
    }

    /// Evaluates the right-hand sides at the given states: the rate of each state slot, `None`
    /// for a slot without an equation.
    fn rates(
        &mut self,
        lowered: &LoweredTask,
        states: &[Value],
        input: &Value,
        step: usize,
        time: f64,
        prefix: &str,
    ) -> Result<Vec<Option<Value>>, ExportError> {
        let values = self.tape(
            &lowered.rhs,
            &Context {
                states,
                input,
                step,
                time,
                prefix,
            },
        )?;
        let mut rates = Vec::with_capacity(lowered.states.len());
        for slot in &lowered.states {
            let mut rate: Option<Value> = None;
            for (channel, node) in &slot.rhs {
                let part = match channel {
                    None => self.widen(&values[*node], slot.len(), prefix)?,
                    Some(c) => {
                        let part = self.full(&values[*node], slot.points, prefix)?.name;
                        let before = (c * slot.points) as i64;
                        let after = ((slot.channels - c - 1) * slot.points) as i64;
                        let pads = self.ints("pads", &[0, before, 0, after]);
                        let name = self.op("Pad", &[&part, &pads], vec![], prefix);
                        Value {
                            name,
                            len: slot.len(),
                            batched: true,
                        }
                    }
                };
                rate = Some(match rate {
                    None => part,
                    Some(sum) => {
                        let name = self.op("Add", &[&sum.name, &part.name], vec![], prefix);
                        Value {
                            name,
                            len: slot.len(),
                            batched: sum.batched || part.batched,
                        }
                    }
                });
            }
            rates.push(rate);
        }
        Ok(rates)
    }

    /// Emits the nodes of a tape and returns the value of each tape node.
    fn tape(&mut self, tape: &Tape, context: &Context) -> Result<Vec<Value>, ExportError> {
        self.tape_part(tape, context, &vec![true; tape.nodes.len()])
    }

    /// Emits the nodes of a tape marked in `needed`; the others get a placeholder value.
    fn tape_part(
        &mut self,
        tape: &Tape,
        context: &Context,
        needed: &[bool],
    ) -> Result<Vec<Value>, ExportError> {
        let prefix = context.prefix;
        let mut values: Vec<Value> = Vec::with_capacity(tape.nodes.len());
        for (index, node) in tape.nodes.iter().enumerate() {
            let len = node.len;
            if !needed[index] {
                values.push(Value {
                    name: String::new(),
                    len,
                    batched: false,
                });
                continue;
            }
            let value = match &node.op {
                Op::Stack(_) => {
                    return Err(error(
                        "vectors of numbers `[a, b, …]` in a readout have no ONNX export yet",
                    ))
                }
                Op::Constant(entries) => Value {
                    name: self.floats("constant", &[1, entries.len()], entries),
                    len,
                    batched: false,
                },
                Op::Time => Value {
                    name: self.floats("time", &[1, 1], &[context.time]),
                    len: 1,
                    batched: false,
                },
                Op::State(index) => context.states.get(*index).cloned().ok_or_else(|| {
                    error("the initial values read a state of the time stepping")
                })?,
                Op::Param(id) => Value {
                    name: self.param(*id, context.step),
                    len,
                    batched: false,
                },
                Op::Input { copies, .. } => {
                    if *copies == 1 {
                        context.input.clone()
                    } else {
                        let repeats = self.ints("repeats", &[1, *copies as i64]);
                        let name =
                            self.op("Tile", &[&context.input.name, &repeats], vec![], prefix);
                        Value {
                            name,
                            len,
                            batched: true,
                        }
                    }
                }
                Op::Sequence { features, .. } => {
                    let rows = self.features / features;
                    let row = context.step.min(rows.saturating_sub(1));
                    let starts = self.ints("starts", &[(row * features) as i64]);
                    let ends = self.ints("ends", &[((row + 1) * features) as i64]);
                    let axes = self.ints("axes", &[1]);
                    let name = self.op(
                        "Slice",
                        &[&context.input.name, &starts, &ends, &axes],
                        vec![],
                        prefix,
                    );
                    Value {
                        name,
                        len,
                        batched: true,
                    }
                }
                Op::Label(_) => {
                    return Err(error(
                        "the network reads the labels (`label`), which an exported network does not have",
                    ))
                }
                Op::Neg(a) => self.unary("Neg", &values[*a], prefix),
                Op::Binary(op, a, b) => {
                    let name = match op {
                        BinaryOp::Add => "Add",
                        BinaryOp::Sub => "Sub",
                        BinaryOp::Mul => "Mul",
                        BinaryOp::Div => "Div",
                        BinaryOp::Pow => "Pow",
                    };
                    self.binary(name, &values[*a], &values[*b], len, prefix)?
                }
                Op::Compare(op, a, b) => {
                    let (name, negate) = match op {
                        CompareOp::Less => ("Less", false),
                        CompareOp::LessEqual => ("LessOrEqual", false),
                        CompareOp::Greater => ("Greater", false),
                        CompareOp::GreaterEqual => ("GreaterOrEqual", false),
                        CompareOp::Equal => ("Equal", false),
                        CompareOp::NotEqual => ("Equal", true),
                    };
                    let compared = self.binary(name, &values[*a], &values[*b], len, prefix)?;
                    let mut flag = compared.name;
                    if negate {
                        flag = self.op("Not", &[&flag], vec![], prefix);
                    }
                    let name = self.op(
                        "Cast",
                        &[&flag],
                        vec![int_attribute("to", FLOAT as i64)],
                        prefix,
                    );
                    Value { name, ..compared }
                }
                Op::Call(function, args) => match (function, args.as_slice()) {
                    (Function::Max, [a, b]) => {
                        self.binary("Max", &values[*a], &values[*b], len, prefix)?
                    }
                    (Function::Min, [a, b]) => {
                        self.binary("Min", &values[*a], &values[*b], len, prefix)?
                    }
                    (_, [a]) => {
                        let name = match function {
                            Function::Tanh => "Tanh",
                            Function::Relu => "Relu",
                            Function::Sigmoid => "Sigmoid",
                            Function::Exp => "Exp",
                            Function::Log => "Log",
                            Function::Sin => "Sin",
                            Function::Cos => "Cos",
                            Function::Abs => "Abs",
                            Function::Sqrt => "Sqrt",
                            Function::Conj | Function::Re => "Identity",
                            other => {
                                return Err(error(format!(
                                    "`{}` of a real value has no ONNX export",
                                    other.name()
                                )))
                            }
                        };
                        self.unary(name, &values[*a], prefix)
                    }
                    _ => {
                        return Err(error(format!(
                            "`{}` with {} arguments has no ONNX export",
                            function.name(),
                            args.len()
                        )))
                    }
                },
                Op::Channel {
                    operand,
                    channel,
                    points,
                } => {
                    let a = &values[*operand];
                    let starts = self.ints("starts", &[(channel * points) as i64]);
                    let ends = self.ints("ends", &[((channel + 1) * points) as i64]);
                    let axes = self.ints("axes", &[1]);
                    let name =
                        self.op("Slice", &[&a.name, &starts, &ends, &axes], vec![], prefix);
                    Value {
                        name,
                        len,
                        batched: a.batched,
                    }
                }
                Op::Softmax {
                    operand, groups, ..
                } => {
                    let a = &values[*operand];
                    let grouped =
                        self.reshape(&a.name, &[-1, *groups as i64, (len / groups) as i64], prefix);
                    let soft =
                        self.op("Softmax", &[&grouped], vec![int_attribute("axis", 1)], prefix);
                    let name = self.reshape(&soft, &[-1, len as i64], prefix);
                    Value {
                        name,
                        len,
                        batched: a.batched,
                    }
                }
                Op::MatMul {
                    matrix,
                    rows: _,
                    columns,
                    operand,
                } => {
                    let a = &values[*operand];
                    if a.len != *columns {
                        return Err(error(format!(
                            "`{} @ …` reads {} entries, expected {columns}",
                            self.model.param(*matrix).name,
                            a.len
                        )));
                    }
                    let weights = self.shaped_param(*matrix, context.step);
                    let attribute = vec![int_attribute("transB", 1)];
                    let name = self.op("Gemm", &[&a.name, &weights], attribute, prefix);
                    Value {
                        name,
                        len,
                        batched: a.batched,
                    }
                }
                Op::Linear {
                    operator,
                    channels,
                    operand,
                } => {
                    let a = &values[*operand];
                    let (rows, columns) = (operator.rows(), operator.columns());
                    let copies: Option<Vec<i64>> = (0..rows)
                        .map(|r| {
                            let entries: Vec<(usize, f64)> = operator.row_entries(r).collect();
                            match entries.as_slice() {
                                [(c, w)] if *w == 1.0 && operator.constants()[r] == 0.0 => {
                                    Some(*c as i64)
                                }
                                _ => None,
                            }
                        })
                        .collect();
                    if let Some(indices) = copies {
                        // Padding by copies (periodic, or ghosts that repeat a node): a gather.
                        let key = (std::sync::Arc::as_ptr(operator) as usize, "gather");
                        let indices = match self.operator_names.get(&key) {
                            Some(name) => name.clone(),
                            None => {
                                let name = self.ints("gather_indices", &indices);
                                self.operator_names.insert(key, name.clone());
                                name
                            }
                        };
                        let grouped = self.reshape(
                            &a.name,
                            &[-1, *channels as i64, columns as i64],
                            prefix,
                        );
                        let gathered = self.op(
                            "Gather",
                            &[&grouped, &indices],
                            vec![int_attribute("axis", 2)],
                            prefix,
                        );
                        let name =
                            self.reshape(&gathered, &[-1, (channels * rows) as i64], prefix);
                        values.push(Value {
                            name,
                            len,
                            batched: a.batched,
                        });
                        continue;
                    }
                    let key = (std::sync::Arc::as_ptr(operator) as usize, "stencil");
                    let matrix = match self.operator_names.get(&key) {
                        Some(name) => name.clone(),
                        None => {
                            let mut dense = vec![0.0; columns * rows];
                            for r in 0..rows {
                                for (c, w) in operator.row_entries(r) {
                                    dense[c * rows + r] += w;
                                }
                            }
                            let name = self.floats("stencil", &[columns, rows], &dense);
                            self.operator_names.insert(key, name.clone());
                            name
                        }
                    };
                    let flat = self.reshape(&a.name, &[-1, columns as i64], prefix);
                    let mut out = self.op("MatMul", &[&flat, &matrix], vec![], prefix);
                    if operator.constants().iter().any(|c| *c != 0.0) {
                        let key = (std::sync::Arc::as_ptr(operator) as usize, "constant");
                        let constant = match self.operator_names.get(&key) {
                            Some(name) => name.clone(),
                            None => {
                                let name =
                                    self.floats("stencil_constant", &[rows], operator.constants());
                                self.operator_names.insert(key, name.clone());
                                name
                            }
                        };
                        out = self.op("Add", &[&out, &constant], vec![], prefix);
                    }
                    let name = self.reshape(&out, &[-1, (channels * rows) as i64], prefix);
                    Value {
                        name,
                        len,
                        batched: a.batched,
                    }
                }
                Op::Resample {
                    pool,
                    factor,
                    fine,
                    channels,
                    operand,
                    ..
                } => {
                    let a = values[*operand].clone();
                    self.resample(&a, *pool, *factor, fine, *channels, len, prefix)
                }
                Op::Convolution {
                    kernel,
                    padded_points,
                    taps,
                    kernel_volume,
                    in_channels,
                    out_channels,
                    operand,
                } => {
                    let a = values[*operand].clone();
                    self.convolution(
                        &a,
                        *kernel,
                        *padded_points,
                        taps,
                        *kernel_volume,
                        *in_channels,
                        *out_channels,
                        context.step,
                        prefix,
                    )?
                }
                Op::DivGrad { .. } => {
                    return Err(error(
                        "`div(c * grad(u))` has no ONNX export: its face-averaged coefficient has no standard operator here",
                    ))
                }
                Op::Upwind { .. } => {
                    return Err(error(
                        "`upwind(v, u, x)` has no ONNX export: its stencil switches with the sign of the velocity",
                    ))
                }
                Op::Reduce {
                    op,
                    operand,
                    weights,
                } => {
                    let a = values[*operand].clone();
                    let axes = self.ints("axes", &[1]);
                    let keep = vec![int_attribute("keepdims", 1)];
                    let name = match op {
                        ReduceOp::Sum => self.op("ReduceSum", &[&a.name, &axes], keep, prefix),
                        ReduceOp::Mean => self.op("ReduceMean", &[&a.name, &axes], keep, prefix),
                        ReduceOp::Max => self.op("ReduceMax", &[&a.name, &axes], keep, prefix),
                        ReduceOp::Min => self.op("ReduceMin", &[&a.name, &axes], keep, prefix),
                        ReduceOp::Integral => {
                            let w = self.floats("cell_volumes", &[1, weights.len()], weights);
                            let weighted = self.op("Mul", &[&a.name, &w], vec![], prefix);
                            self.op("ReduceSum", &[&weighted, &axes], keep, prefix)
                        }
                        ReduceOp::Norm => {
                            let w = self.floats("cell_volumes", &[1, weights.len()], weights);
                            let squared = self.op("Mul", &[&a.name, &a.name], vec![], prefix);
                            let weighted = self.op("Mul", &[&squared, &w], vec![], prefix);
                            let sum = self.op("ReduceSum", &[&weighted, &axes], keep, prefix);
                            self.op("Sqrt", &[&sum], vec![], prefix)
                        }
                    };
                    Value {
                        name,
                        len: 1,
                        batched: a.batched,
                    }
                }
            };
            values.push(value);
        }
        Ok(values)
    }

    /// Returns the initializer of a matrix or kernel parameter at `step`, in its declared shape.
    fn shaped_param(&mut self, id: npdec_symbolic::ParamId, step: usize) -> String {
        let size = self.params.step_sizes[id.0].max(1);
        let steps = (self.params.values[id.0].len() / size).max(1);
        let key = (id.0, step.min(steps - 1));
        if let Some(name) = self.matrix_names.get(&key) {
            return name.clone();
        }
        let param = self.model.param(id);
        let hint = if param.per_step {
            format!("{}_step{}", param.name, key.1)
        } else {
            param.name.clone()
        };
        let values = self.params.at_step(id, key.1).to_vec();
        let name = self.floats(&hint, &param.dims, &values);
        self.matrix_names.insert(key, name.clone());
        name
    }

    fn unary(&mut self, op: &str, a: &Value, prefix: &str) -> Value {
        let name = self.op(op, &[&a.name], vec![], prefix);
        Value {
            name,
            len: a.len,
            batched: a.batched,
        }
    }

    fn binary(
        &mut self,
        op: &str,
        a: &Value,
        b: &Value,
        len: usize,
        prefix: &str,
    ) -> Result<Value, ExportError> {
        let a = self.widen(a, len, prefix)?;
        let b = self.widen(b, len, prefix)?;
        let name = self.op(op, &[&a.name, &b.name], vec![], prefix);
        Ok(Value {
            name,
            len: a.len.max(b.len),
            batched: a.batched || b.batched,
        })
    }

    /// `pool` as `AveragePool` with a window and stride of `factor` per axis, or `upsample` as a
    /// nearest-neighbour `Resize` by `factor` (the `asymmetric` coordinates and `floor` rounding
    /// make fine point `i` read coarse point `⌊i / factor⌋`), on the value reshaped to images
    /// `[batch, channels, n₁, …]`.
    #[allow(clippy::too_many_arguments)]
    fn resample(
        &mut self,
        a: &Value,
        pool: bool,
        factor: usize,
        fine: &[usize],
        channels: usize,
        len: usize,
        prefix: &str,
    ) -> Value {
        let mut image_shape = vec![-1, channels as i64];
        if pool {
            image_shape.extend(fine.iter().map(|n| *n as i64));
        } else {
            image_shape.extend(fine.iter().map(|n| (n / factor) as i64));
        }
        let image = self.reshape(&a.name, &image_shape, prefix);
        let resampled = if pool {
            let window = vec![factor as i64; fine.len()];
            let attributes = vec![
                ints_attribute("kernel_shape", &window),
                ints_attribute("strides", &window),
            ];
            self.op("AveragePool", &[&image], attributes, prefix)
        } else {
            let mut scales = vec![1.0, 1.0];
            scales.extend(std::iter::repeat_n(factor as f64, fine.len()));
            let scales = self.floats("scales", &[scales.len()], &scales);
            let attributes = vec![
                string_attribute("mode", "nearest"),
                string_attribute("coordinate_transformation_mode", "asymmetric"),
                string_attribute("nearest_mode", "floor"),
            ];
            self.op("Resize", &[&image, "", &scales], attributes, prefix)
        };
        let name = self.reshape(&resampled, &[-1, len as i64], prefix);
        Value {
            name,
            len,
            batched: a.batched,
        }
    }

    /// `conv(K, u)` on an operand already padded by the boundary condition (a `Linear` node
    /// before it): `Reshape` to images, then `Conv` without padding.
    #[allow(clippy::too_many_arguments)]
    fn convolution(
        &mut self,
        a: &Value,
        kernel: npdec_symbolic::ParamId,
        padded_points: usize,
        taps: &[usize],
        kernel_volume: usize,
        in_channels: usize,
        out_channels: usize,
        step: usize,
        prefix: &str,
    ) -> Result<Value, ExportError> {
        let param = self.model.param(kernel);
        let sizes = param.dims[2..].to_vec();
        let points = taps.len() / kernel_volume.max(1);
        let extents = self.grid_of(&sizes, points, padded_points, taps).ok_or_else(|| {
            error(format!(
                "the convolution with kernel `{}` runs on a grid of {points} points that no field of the model has",
                param.name
            ))
        })?;
        let padded: Vec<usize> = extents.iter().zip(&sizes).map(|(n, k)| n + k - 1).collect();
        let mut image_shape = vec![-1, in_channels as i64];
        image_shape.extend(padded.iter().map(|n| *n as i64));
        let image = self.reshape(&a.name, &image_shape, prefix);
        let weights = self.shaped_param(kernel, step);
        let conv = self.op("Conv", &[&image, &weights], vec![], prefix);
        let name = self.reshape(&conv, &[-1, (out_channels * points) as i64], prefix);
        Ok(Value {
            name,
            len: out_channels * points,
            batched: a.batched,
        })
    }

    /// Finds the extents of the grid a convolution runs on, among the model's fields, checking
    /// that its taps are those of a plain cross-correlation on the padded grid.
    fn grid_of(
        &self,
        sizes: &[usize],
        points: usize,
        padded_points: usize,
        taps: &[usize],
    ) -> Option<Vec<usize>> {
        let kernel_volume: usize = sizes.iter().product();
        self.model.fields.iter().find_map(|field| {
            let extents: Vec<usize> = field
                .axes
                .iter()
                .map(|a| self.model.axis(*a).points)
                .collect();
            if extents.len() != sizes.len() || extents.iter().product::<usize>() != points {
                return None;
            }
            let padded: Vec<usize> = extents.iter().zip(sizes).map(|(n, k)| n + k - 1).collect();
            if padded.iter().product::<usize>() != padded_points {
                return None;
            }
            let dims = extents.len();
            let mut index = vec![0; dims];
            let mut offset = vec![0; dims];
            for p in 0..points {
                unflatten(p, &extents, &mut index);
                for k in 0..kernel_volume {
                    unflatten(k, sizes, &mut offset);
                    let flat = (0..dims).fold(0, |flat, a| flat * padded[a] + index[a] + offset[a]);
                    if taps[p * kernel_volume + k] != flat {
                        return None;
                    }
                }
            }
            Some(extents)
        })
    }
}

/// Marks the nodes of a tape that `root` depends on.
fn needed_by(tape: &Tape, root: usize) -> Vec<bool> {
    let mut needed = vec![false; tape.nodes.len()];
    needed[root] = true;
    for index in (0..=root).rev() {
        if !needed[index] {
            continue;
        }
        let operands: Vec<usize> = match &tape.nodes[index].op {
            Op::Neg(a) => vec![*a],
            Op::Binary(_, a, b) | Op::Compare(_, a, b) => vec![*a, *b],
            Op::Call(_, args) | Op::Stack(args) => args.clone(),
            Op::Channel { operand, .. }
            | Op::Softmax { operand, .. }
            | Op::MatMul { operand, .. }
            | Op::Linear { operand, .. }
            | Op::Resample { operand, .. }
            | Op::Convolution { operand, .. }
            | Op::Reduce { operand, .. } => vec![*operand],
            Op::DivGrad {
                coefficient,
                operand,
                ..
            } => vec![*coefficient, *operand],
            Op::Upwind {
                velocity, operand, ..
            } => vec![*velocity, *operand],
            Op::Constant(_)
            | Op::Time
            | Op::State(_)
            | Op::Param(_)
            | Op::Input { .. }
            | Op::Sequence { .. }
            | Op::Label(_) => Vec::new(),
        };
        for operand in operands {
            needed[operand] = true;
        }
    }
    needed
}

fn unflatten(mut flat: usize, extents: &[usize], index: &mut [usize]) {
    for a in (0..extents.len()).rev() {
        index[a] = flat % extents[a];
        flat /= extents[a];
    }
}
