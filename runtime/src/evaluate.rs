//! The graph evaluator: computes node values in topological order, one array operation per node.

use crate::padding::pad_value;
use crate::pointwise::{broadcast_to, evaluate_pointwise, Region};
use crate::value::{Element, Real, Value};
use ndarray::{ArrayD, Axis, IxDyn, Slice, Zip};
use npdec_ir::graph::{Graph, Grid, NodeId, NodeKind, Tap, ValueType};
use npdec_symbolic::{AxisKind, FieldId, Initializer, ReduceOp};
use num_complex::Complex;

/// Evaluates the nodes a fixed set of roots depends on.
pub struct Evaluator<'g, T: Real> {
    pub graph: &'g Graph,
    order: Vec<NodeId>,
    /// Values of parameter nodes, drawn once from their initializers.
    params: Vec<Option<Value<T>>>,
}

/// Node values of one evaluation, indexed by node index.
pub type NodeValues<T> = Vec<Option<Value<T>>>;

impl<'g, T: Real> Evaluator<'g, T> {
    pub fn new(graph: &'g Graph, roots: &[NodeId]) -> Self {
        let order = graph.evaluation_order(roots);
        let bound = graph
            .node_ids()
            .iter()
            .map(|id| id.index() + 1)
            .max()
            .unwrap_or(0);
        let mut params = vec![None; bound];
        for id in &order {
            if let NodeKind::Param { param } = &graph.node(*id).kind {
                params[id.index()] = Some(parameter_values(
                    graph,
                    *param,
                    &graph.node(*id).value,
                    id.index() as u64,
                ));
            }
        }
        Evaluator {
            graph,
            order,
            params,
        }
    }

    /// Evaluates every needed node for the given field states (indexed by field id) and time.
    pub fn evaluate(&self, states: &[Option<Value<T>>], time: T) -> NodeValues<T> {
        let mut values: NodeValues<T> = vec![None; self.params.len()];
        for id in &self.order {
            let inputs: Vec<&Value<T>> = self
                .graph
                .inputs(*id)
                .iter()
                .filter_map(|i| values[i.index()].as_ref())
                .collect();
            let value = self.node(*id, &inputs, states, time);
            values[id.index()] = value;
        }
        values
    }

    fn node(
        &self,
        id: NodeId,
        inputs: &[&Value<T>],
        states: &[Option<Value<T>>],
        time: T,
    ) -> Option<Value<T>> {
        let graph = self.graph;
        let node = graph.node(id);
        let shape = value_shape(graph, &node.value);
        Some(match &node.kind {
            NodeKind::State { field } => states.get(field.0)?.clone()?,
            NodeKind::Param { .. } => self.params[id.index()].clone()?,
            NodeKind::Boundary { field, axes } => {
                pad_value(graph, &graph.field(*field).axes, axes, inputs[0], time)
            }
            NodeKind::Pointwise(expr) => {
                let region = match &node.value.grid {
                    Grid::Points { axes, halo } => Some(Region::padded(graph, axes, halo)),
                    Grid::Scalar | Grid::Tensor { .. } => None,
                };
                evaluate_pointwise(graph, expr, inputs, region.as_ref(), time, &shape)
                    .converted(node.value.complex)
            }
            NodeKind::Stencil(stencil) => match inputs[0] {
                Value::Real(a) => Value::Real(apply_taps(a, &stencil.taps, &shape)),
                Value::Complex(a) => Value::Complex(apply_taps(a, &stencil.taps, &shape)),
            },
            NodeKind::DivGrad { axes, spacing } => {
                let coefficient = broadcast_to(inputs[0].clone(), inputs[1].shape());
                if coefficient.is_complex() || inputs[1].is_complex() {
                    Value::Complex(div_grad(
                        &coefficient.to_complex(),
                        &inputs[1].to_complex(),
                        axes,
                        spacing,
                        &shape,
                    ))
                } else {
                    Value::Real(div_grad(
                        &coefficient.real_part(),
                        &inputs[1].real_part(),
                        axes,
                        spacing,
                        &shape,
                    ))
                }
            }
            NodeKind::Upwind {
                position,
                backward,
                forward,
                ..
            } => {
                let velocity = broadcast_to(inputs[0].clone(), &shape);
                let sign = velocity.real_part();
                let complex = node.value.complex;
                if complex {
                    Value::Complex(upwind(
                        &velocity.to_complex(),
                        &sign,
                        &inputs[1].to_complex(),
                        *position,
                        backward,
                        forward,
                        &shape,
                    ))
                } else {
                    Value::Real(upwind(
                        &velocity.real_part(),
                        &sign,
                        &inputs[1].real_part(),
                        *position,
                        backward,
                        forward,
                        &shape,
                    ))
                }
            }
            NodeKind::Dense => {
                if node.value.complex {
                    Value::Complex(dense(&inputs[0].to_complex(), &inputs[1].to_complex()))
                } else {
                    Value::Real(dense(&inputs[0].real_part(), &inputs[1].real_part()))
                }
            }
            NodeKind::Convolution { .. } => {
                if node.value.complex {
                    Value::Complex(convolution(
                        &inputs[0].to_complex(),
                        &inputs[1].to_complex(),
                        &shape,
                    ))
                } else {
                    Value::Real(convolution(
                        &inputs[0].real_part(),
                        &inputs[1].real_part(),
                        &shape,
                    ))
                }
            }
            NodeKind::Resample { kind, factor } => {
                let pool = *kind == npdec_symbolic::Resample::Pool;
                if node.value.complex {
                    Value::Complex(resample(&inputs[0].to_complex(), pool, *factor, &shape))
                } else {
                    Value::Real(resample(&inputs[0].real_part(), pool, *factor, &shape))
                }
            }
            NodeKind::Reduce(op) => {
                let input_id = graph.inputs(id)[0];
                let Grid::Points { axes, .. } = &graph.node(input_id).value.grid else {
                    return None;
                };
                reduce(graph, *op, axes, inputs[0], node.value.complex)
            }
            NodeKind::Initial { .. } => inputs[0].clone(),
            NodeKind::TimeStep(_) | NodeKind::Expect { .. } => return None,
        })
    }
}

/// Returns the array shape of a value type.
pub fn value_shape(graph: &Graph, value: &ValueType) -> Vec<usize> {
    match &value.grid {
        Grid::Scalar => vec![value.channels],
        Grid::Points { axes, halo } => {
            let mut shape = vec![value.channels];
            shape.extend(graph.padded_extent(axes, halo));
            shape
        }
        Grid::Tensor { dims } => dims.clone(),
    }
}

/// Returns the shape of a field's state.
pub fn field_shape(graph: &Graph, field: FieldId) -> Vec<usize> {
    let f = graph.field(field);
    let mut shape = vec![f.channels];
    shape.extend(f.axes.iter().map(|a| graph.axis(*a).points));
    shape
}

/// `out[i] = Σ w · input[i + shift + offset]`, where the shift centers the output inside the input.
fn apply_taps<T: Real, E: Element<T>>(
    input: &ArrayD<E>,
    taps: &[Tap],
    shape: &[usize],
) -> ArrayD<E> {
    let mut out = ArrayD::<E>::zeros(IxDyn(shape));
    for tap in taps {
        let weight = T::of(tap.weight);
        let window = input.slice_each_axis(|d| {
            let i = d.axis.index();
            if i == 0 {
                return Slice::from(..);
            }
            let shift = (input.shape()[i] - shape[i]) / 2;
            let start = (shift as isize + tap.offset[i - 1] as isize) as usize;
            Slice::from(start..start + shape[i])
        });
        Zip::from(&mut out)
            .and(&window)
            .for_each(|o, x| *o += x.scale(weight));
    }
    out
}

/// Pools (`pool`: the mean of each block of `factor` points per axis) or upsamples (each value
/// copied to its block) a `[channels, n₁, …]` array into `shape`. Written point by point, as the
/// reference the JIT and the training tape are tested against.
fn resample<T: Real, E: Element<T>>(
    input: &ArrayD<E>,
    pool: bool,
    factor: usize,
    shape: &[usize],
) -> ArrayD<E> {
    let mut out = ArrayD::<E>::zeros(IxDyn(shape));
    if pool {
        let block = factor.pow(shape.len() as u32 - 1);
        let scale = T::of(1.0 / block as f64);
        let mut coarse = vec![0; shape.len()];
        for (index, value) in input.indexed_iter() {
            coarse[0] = index[0];
            for a in 1..shape.len() {
                coarse[a] = index[a] / factor;
            }
            out[IxDyn(&coarse)] += value.scale(scale);
        }
    } else {
        let mut coarse = vec![0; shape.len()];
        for (index, value) in out.indexed_iter_mut() {
            coarse[0] = index[0];
            for a in 1..shape.len() {
                coarse[a] = index[a] / factor;
            }
            *value = input[IxDyn(&coarse)];
        }
    }
    out
}

/// Shifts a window of `shape` inside `input` by `offset` along axis position `p` (the window is
/// centered otherwise).
fn shifted<'a, E>(
    input: &'a ArrayD<E>,
    shape: &[usize],
    p: usize,
    offset: isize,
) -> ndarray::ArrayViewD<'a, E> {
    input.slice_each_axis(|d| {
        let i = d.axis.index();
        if i == 0 {
            return Slice::from(..);
        }
        let shift =
            ((input.shape()[i] - shape[i]) / 2) as isize + if i - 1 == p { offset } else { 0 };
        Slice::from(shift as usize..shift as usize + shape[i])
    })
}

fn div_grad<T: Real, E: Element<T>>(
    coefficient: &ArrayD<E>,
    operand: &ArrayD<E>,
    axes: &[usize],
    spacing: &[f64],
    shape: &[usize],
) -> ArrayD<E> {
    let mut out = ArrayD::<E>::zeros(IxDyn(shape));
    let half = T::of(0.5);
    for (p, h) in axes.iter().zip(spacing) {
        let scale = T::of(1.0 / (h * h));
        let (u_minus, u, u_plus) = (
            shifted(operand, shape, *p, -1),
            shifted(operand, shape, *p, 0),
            shifted(operand, shape, *p, 1),
        );
        let (c_minus, c, c_plus) = (
            shifted(coefficient, shape, *p, -1),
            shifted(coefficient, shape, *p, 0),
            shifted(coefficient, shape, *p, 1),
        );
        // (c_{i+1/2} (u_{i+1} − u_i) − c_{i−1/2} (u_i − u_{i−1})) / h², faces averaged from the nodes.
        let flux_plus = Zip::from(&u)
            .and(&u_plus)
            .and(&c)
            .and(&c_plus)
            .map_collect(|u0, up, c0, cp| (*c0 + *cp).scale(half) * (*up - *u0));
        let flux_minus = Zip::from(&u_minus)
            .and(&u)
            .and(&c_minus)
            .and(&c)
            .map_collect(|um, u0, cm, c0| (*cm + *c0).scale(half) * (*u0 - *um));
        Zip::from(&mut out)
            .and(&flux_plus)
            .and(&flux_minus)
            .for_each(|o, fp, fm| *o += (*fp - *fm).scale(scale));
    }
    out
}

fn upwind<T: Real, E: Element<T>>(
    velocity: &ArrayD<E>,
    sign: &ArrayD<T>,
    operand: &ArrayD<E>,
    p: usize,
    backward: &[(i32, f64)],
    forward: &[(i32, f64)],
    shape: &[usize],
) -> ArrayD<E> {
    let one_sided = |taps: &[(i32, f64)]| {
        let mut out = ArrayD::<E>::zeros(IxDyn(shape));
        for (offset, weight) in taps {
            let window = shifted(operand, shape, p, *offset as isize);
            Zip::from(&mut out)
                .and(&window)
                .for_each(|o, x| *o += x.scale(T::of(*weight)));
        }
        out
    };
    let (back, front) = (one_sided(backward), one_sided(forward));
    let mut out = ArrayD::<E>::zeros(IxDyn(shape));
    Zip::from(&mut out)
        .and(velocity)
        .and(sign)
        .and(&back)
        .and(&front)
        .for_each(|o, v, s, b, f| {
            *o = *v * if *s >= T::zero() { *b } else { *f };
        });
    out
}

fn dense<T: Real, E: Element<T>>(matrix: &ArrayD<E>, operand: &ArrayD<E>) -> ArrayD<E> {
    let (rows, columns) = (matrix.shape()[0], matrix.shape()[1]);
    let channels = operand.shape()[0];
    let mut out = ArrayD::<E>::zeros(IxDyn(&[channels, rows]));
    for c in 0..channels {
        for i in 0..rows {
            let mut sum = E::zero();
            for j in 0..columns {
                sum += matrix[[i, j]] * operand[[c, j]];
            }
            out[[c, i]] = sum;
        }
    }
    out
}

fn convolution<T: Real, E: Element<T>>(
    kernel: &ArrayD<E>,
    operand: &ArrayD<E>,
    shape: &[usize],
) -> ArrayD<E> {
    let (outputs, inputs) = (kernel.shape()[0], kernel.shape()[1]);
    let mut out = ArrayD::<E>::zeros(IxDyn(shape));
    let spatial: Vec<usize> = kernel.shape()[2..].to_vec();
    let kernel_points: usize = spatial.iter().product();
    for o in 0..outputs {
        let mut target = out.index_axis_mut(Axis(0), o);
        for i in 0..inputs {
            let source = operand.index_axis(Axis(0), i);
            for flat in 0..kernel_points {
                // Decompose the flat kernel index into one offset per axis.
                let mut rest = flat;
                let mut offset = vec![0usize; spatial.len()];
                for (a, k) in spatial.iter().enumerate().rev() {
                    offset[a] = rest % k;
                    rest /= k;
                }
                let mut index = vec![o, i];
                index.extend(&offset);
                let weight = kernel[IxDyn(&index)];
                let window = source.slice_each_axis(|d| {
                    let a = d.axis.index();
                    Slice::from(offset[a]..offset[a] + shape[a + 1])
                });
                Zip::from(&mut target)
                    .and(&window)
                    .for_each(|t, x| *t += weight * *x);
            }
        }
    }
    out
}

/// Returns the trapezoidal quadrature weight of point `i` on an axis, spacing included.
fn quadrature_weight(graph: &Graph, axis: npdec_symbolic::AxisId, i: usize) -> f64 {
    let declaration = graph.axis(axis);
    let end = i == 0 || i + 1 == declaration.points;
    let interval = matches!(declaration.kind, AxisKind::Interval { .. });
    if end && interval && !declaration.periodic {
        0.5 * declaration.spacing()
    } else {
        declaration.spacing()
    }
}

fn reduce<T: Real>(
    graph: &Graph,
    op: ReduceOp,
    axes: &[npdec_symbolic::AxisId],
    input: &Value<T>,
    complex: bool,
) -> Value<T> {
    let cell: f64 = axes.iter().map(|a| graph.axis(*a).spacing()).product();
    let count = input.shape().iter().product::<usize>().max(1);
    let scalar = |v: T| Value::Real(ArrayD::from_elem(IxDyn(&[1]), v));
    let real = input.real_part();
    match op {
        ReduceOp::Max => scalar(real.iter().fold(T::neg_infinity(), |m, x| {
            if x.is_nan() || m.is_nan() {
                T::nan()
            } else {
                m.max(*x)
            }
        })),
        ReduceOp::Min => scalar(real.iter().fold(T::infinity(), |m, x| {
            if x.is_nan() || m.is_nan() {
                T::nan()
            } else {
                m.min(*x)
            }
        })),
        ReduceOp::Norm => {
            let squares = match input {
                Value::Real(a) => a.iter().fold(T::zero(), |s, x| s + *x * *x),
                Value::Complex(a) => a.iter().fold(T::zero(), |s, z| s + z.norm_sqr()),
            };
            scalar((squares * T::of(cell)).sqrt())
        }
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Integral => {
            let values = input.to_complex();
            let mut total = Complex::new(T::zero(), T::zero());
            for (index, value) in values.indexed_iter() {
                let weight = match op {
                    ReduceOp::Integral => axes
                        .iter()
                        .enumerate()
                        .map(|(p, a)| quadrature_weight(graph, *a, index[p + 1]))
                        .product::<f64>(),
                    ReduceOp::Sum
                    | ReduceOp::Mean
                    | ReduceOp::Max
                    | ReduceOp::Min
                    | ReduceOp::Norm => 1.0,
                };
                total += value * T::of(weight);
            }
            if op == ReduceOp::Mean {
                total /= T::of(count as f64);
            }
            if complex {
                Value::Complex(ArrayD::from_elem(IxDyn(&[1]), total))
            } else {
                scalar(total.re)
            }
        }
    }
}

/// Draws the values of a parameter from its initializer with a fixed seed, so runs repeat exactly.
fn parameter_values<T: Real>(
    graph: &Graph,
    id: npdec_symbolic::ParamId,
    value: &ValueType,
    seed: u64,
) -> Value<T> {
    let param = graph.param(id);
    let shape = value_shape(graph, value);
    let count: usize = shape.iter().product();
    let (fan_in, fan_out) = match param.dims.as_slice() {
        [out, inp, rest @ ..] => (
            inp * rest.iter().product::<usize>(),
            out * rest.iter().product::<usize>(),
        ),
        [n] => (*n, *n),
        [] => (1, 1),
    };
    let mut random = SplitMix64(
        seed ^ 0x9e37_79b9_7f4a_7c15 ^ (id.0 as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9),
    );
    let values: Vec<T> = (0..count)
        .map(|_| {
            T::of(match &param.init {
                Initializer::Zeros => 0.0,
                Initializer::Ones => 1.0,
                Initializer::Value(expr) => {
                    npdec_ir::simplify(expr).clone_constant().unwrap_or(0.0)
                }
                Initializer::Normal { mean, std } => mean + std * random.normal(),
                Initializer::Uniform { min, max } => min + (max - min) * random.uniform(),
                Initializer::Glorot => {
                    let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
                    -a + 2.0 * a * random.uniform()
                }
                Initializer::He => (2.0 / fan_in as f64).sqrt() * random.normal(),
            })
        })
        .collect();
    Value::Real(
        ArrayD::from_shape_vec(IxDyn(&shape), values)
            .unwrap_or_else(|_| ArrayD::zeros(IxDyn(&shape))),
    )
}

trait ConstantValue {
    fn clone_constant(&self) -> Option<f64>;
}

impl ConstantValue for npdec_symbolic::Expr {
    fn clone_constant(&self) -> Option<f64> {
        npdec_ir::simplify::constant_value(self).map(|(re, _)| re)
    }
}

/// The SplitMix64 generator (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): small, seedable and good enough for initial weights.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a uniform number in `[0, 1)`.
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Returns a standard normal number by the Box–Muller transform.
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}
