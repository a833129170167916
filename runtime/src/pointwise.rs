//! Array-at-a-time evaluation of pointwise expressions, with numpy-style broadcasting.

use crate::value::{Real, Value};
use ndarray::{ArrayD, Axis, IxDyn, Zip};
use npdec_ir::graph::{Graph, PointwiseExpr};
use npdec_ir::pointwise::compare;
use npdec_symbolic::{AxisId, BinaryOp, Function, UnaryOp};
use num_complex::Complex;

/// A rectangular block of grid points: per axis, the index of its first point (negative in the halo)
/// and its number of points.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub axes: Vec<AxisId>,
    pub start: Vec<isize>,
    pub len: Vec<usize>,
}

impl Region {
    /// Returns the block of a grid value with the given halo.
    pub fn padded(graph: &Graph, axes: &[AxisId], halo: &[usize]) -> Self {
        Region {
            axes: axes.to_vec(),
            start: halo.iter().map(|h| -(*h as isize)).collect(),
            len: axes
                .iter()
                .zip(halo)
                .map(|(a, h)| graph.axis(*a).points + 2 * h)
                .collect(),
        }
    }

    /// Returns the coordinates along axis position `p`, shaped `[1, …, len, …, 1]` to broadcast.
    pub fn coordinates<T: Real>(&self, graph: &Graph, p: usize) -> ArrayD<T> {
        let axis = graph.axis(self.axes[p]);
        let origin = axis.coordinate(0);
        let spacing = axis.spacing();
        let mut shape = vec![1; self.axes.len() + 1];
        shape[p + 1] = self.len[p];
        let values: Vec<T> = (0..self.len[p])
            .map(|i| T::of(origin + (self.start[p] + i as isize) as f64 * spacing))
            .collect();
        ArrayD::from_shape_vec(IxDyn(&shape), values)
            .unwrap_or_else(|_| ArrayD::zeros(IxDyn(&shape)))
    }
}

/// Evaluates an expression on a region (or on a scalar when `region` is `None`); the result has
/// shape `[channels, len…]` broadcast to `shape`.
pub fn evaluate_pointwise<T: Real>(
    graph: &Graph,
    expr: &PointwiseExpr,
    inputs: &[&Value<T>],
    region: Option<&Region>,
    time: T,
    shape: &[usize],
) -> Value<T> {
    let context = Context {
        graph,
        inputs,
        region,
        time,
        rank: shape.len(),
    };
    let value = context.eval(expr);
    broadcast_to(value, shape)
}

/// Broadcasts a value to a shape, copying.
pub fn broadcast_to<T: Real>(value: Value<T>, shape: &[usize]) -> Value<T> {
    if value.shape() == shape {
        return value;
    }
    match value {
        Value::Real(a) => Value::Real(expand(&a, shape.len()).broadcast(IxDyn(shape)).map_or_else(
            || ArrayD::from_elem(IxDyn(shape), T::nan()),
            |v| v.to_owned(),
        )),
        Value::Complex(a) => {
            Value::Complex(expand(&a, shape.len()).broadcast(IxDyn(shape)).map_or_else(
                || ArrayD::from_elem(IxDyn(shape), Complex::new(T::nan(), T::nan())),
                |v| v.to_owned(),
            ))
        }
    }
}

/// Appends unit axes so that an array of shape `[c]` broadcasts against `[c, n₁, …]`.
fn expand<A: Clone>(array: &ArrayD<A>, rank: usize) -> ArrayD<A> {
    let mut shape = array.shape().to_vec();
    while shape.len() < rank {
        shape.push(1);
    }
    array
        .clone()
        .into_shape_with_order(IxDyn(&shape))
        .unwrap_or_else(|_| array.clone())
}

struct Context<'a, T: Real> {
    graph: &'a Graph,
    inputs: &'a [&'a Value<T>],
    region: Option<&'a Region>,
    time: T,
    rank: usize,
}

fn scalar<T: Real>(value: T) -> Value<T> {
    Value::Real(ArrayD::from_elem(IxDyn(&[1]), value))
}

impl<T: Real> Context<'_, T> {
    fn eval(&self, expr: &PointwiseExpr) -> Value<T> {
        match expr {
            PointwiseExpr::Input { index, channel } => {
                let value = self.inputs[*index];
                let selected = match (channel, value) {
                    (None, v) => v.clone(),
                    (Some(c), Value::Real(a)) => {
                        Value::Real(a.index_axis(Axis(0), *c).insert_axis(Axis(0)).to_owned())
                    }
                    (Some(c), Value::Complex(a)) => {
                        Value::Complex(a.index_axis(Axis(0), *c).insert_axis(Axis(0)).to_owned())
                    }
                };
                match selected {
                    Value::Real(a) => Value::Real(expand(&a, self.rank)),
                    Value::Complex(a) => Value::Complex(expand(&a, self.rank)),
                }
            }
            PointwiseExpr::Real(v) => scalar(T::of(*v)),
            PointwiseExpr::Complex(re, im) => Value::Complex(ArrayD::from_elem(
                IxDyn(&[1]),
                Complex::new(T::of(*re), T::of(*im)),
            )),
            PointwiseExpr::Coordinate(axis) => match self.region {
                Some(region) => match region.axes.iter().position(|a| a == axis) {
                    Some(p) => Value::Real(region.coordinates(self.graph, p)),
                    None => scalar(T::nan()),
                },
                None => scalar(T::nan()),
            },
            PointwiseExpr::Time => scalar(self.time),
            PointwiseExpr::Unary(UnaryOp::Neg, a) => match self.eval(a) {
                Value::Real(a) => Value::Real(-a),
                Value::Complex(a) => Value::Complex(a.mapv(|z| -z)),
            },
            PointwiseExpr::Binary(op, a, b) => binary(*op, self.eval(a), self.eval(b)),
            PointwiseExpr::Compare(op, a, b) => {
                let (a, b) = (self.eval(a).real_part(), self.eval(b).real_part());
                Value::Real(zip_real(&a, &b, |x, y| {
                    if compare(*op, x.to_f64_lossy(), y.to_f64_lossy()) {
                        T::one()
                    } else {
                        T::zero()
                    }
                }))
            }
            PointwiseExpr::Call(function, args) => {
                let values: Vec<Value<T>> = args.iter().map(|a| self.eval(a)).collect();
                call(*function, values)
            }
        }
    }
}

/// Applies `f` to co-broadcast real arrays.
fn zip_real<T: Real>(a: &ArrayD<T>, b: &ArrayD<T>, f: impl Fn(T, T) -> T) -> ArrayD<T> {
    zip_with(a, b, f)
}

fn zip_with<A: Copy, B: Copy, C>(a: &ArrayD<A>, b: &ArrayD<B>, f: impl Fn(A, B) -> C) -> ArrayD<C> {
    let rank = a.ndim().max(b.ndim());
    let (a, b) = (expand(a, rank), expand(b, rank));
    let shape: Vec<usize> = a
        .shape()
        .iter()
        .zip(b.shape())
        .map(|(x, y)| if *x == 1 { *y } else { *x })
        .collect();
    match (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape))) {
        (Some(a), Some(b)) => Zip::from(&a).and(&b).map_collect(|x, y| f(*x, *y)),
        // A verified graph never combines incompatible shapes; pair with the first element then.
        _ => match b.first() {
            Some(first) => a.mapv(|x| f(x, *first)),
            None => ArrayD::from_shape_simple_fn(IxDyn(&[0]), || {
                unreachable!("an empty array has no elements")
            }),
        },
    }
}

fn binary<T: Real>(op: BinaryOp, a: Value<T>, b: Value<T>) -> Value<T> {
    match (&a, &b) {
        (Value::Real(x), Value::Real(y)) => {
            let integer_power = match (op, y.len()) {
                (BinaryOp::Pow, 1) => y
                    .iter()
                    .next()
                    .copied()
                    .filter(|p| p.fract() == T::zero() && p.abs() < T::of(64.0)),
                _ => None,
            };
            if let Some(power) = integer_power {
                let n = power.to_i32().unwrap_or(1);
                return Value::Real(x.mapv(|v| v.powi(n)));
            }
            Value::Real(zip_with(x, y, |x, y| match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Pow => x.powf(y),
            }))
        }
        _ => {
            let (x, y) = (a.to_complex(), b.to_complex());
            Value::Complex(zip_with(&x, &y, |x: Complex<T>, y: Complex<T>| match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Pow if y.im == T::zero() && y.re.fract() == T::zero() => {
                    x.powi(y.re.to_i32().unwrap_or(1))
                }
                BinaryOp::Pow => x.powc(y),
            }))
        }
    }
}

fn call<T: Real>(function: Function, mut values: Vec<Value<T>>) -> Value<T> {
    let Some(first) = values.first().cloned() else {
        return scalar(T::nan());
    };
    let one = T::one();
    let real = |f: &dyn Fn(T) -> T| Value::Real(first.real_part().mapv(f));
    match (function, &first) {
        (Function::Abs, Value::Real(a)) => Value::Real(a.mapv(|x| x.abs())),
        (Function::Abs, Value::Complex(a)) => Value::Real(a.mapv(|z| z.norm())),
        (Function::Re, v) => Value::Real(v.real_part()),
        (Function::Im, Value::Real(a)) => Value::Real(a.mapv(|_| T::zero())),
        (Function::Im, Value::Complex(a)) => Value::Real(a.mapv(|z| z.im)),
        (Function::Conj, Value::Real(_)) => first,
        (Function::Conj, Value::Complex(a)) => Value::Complex(a.mapv(|z| z.conj())),
        (Function::Relu, _) => real(&|x| x.max(T::zero())),
        (Function::Max | Function::Min, _) => {
            let second = if values.len() > 1 {
                values.swap_remove(1).real_part()
            } else {
                first.real_part()
            };
            let is_max = function == Function::Max;
            Value::Real(zip_real(&first.real_part(), &second, |x, y| {
                if is_max {
                    x.max(y)
                } else {
                    x.min(y)
                }
            }))
        }
        (Function::Tanh, Value::Real(a)) => Value::Real(a.mapv(|x| x.tanh())),
        (Function::Sigmoid, Value::Real(a)) => Value::Real(a.mapv(|x| one / (one + (-x).exp()))),
        (Function::Exp, Value::Real(a)) => Value::Real(a.mapv(|x| x.exp())),
        (Function::Log, Value::Real(a)) => Value::Real(a.mapv(|x| x.ln())),
        (Function::Sin, Value::Real(a)) => Value::Real(a.mapv(|x| x.sin())),
        (Function::Cos, Value::Real(a)) => Value::Real(a.mapv(|x| x.cos())),
        (Function::Sqrt, Value::Real(a)) => Value::Real(a.mapv(|x| x.sqrt())),
        (Function::Tanh, Value::Complex(a)) => Value::Complex(a.mapv(|z| z.tanh())),
        (Function::Sigmoid, Value::Complex(a)) => {
            Value::Complex(a.mapv(|z| (Complex::new(one, T::zero()) + (-z).exp()).inv()))
        }
        (Function::Exp, Value::Complex(a)) => Value::Complex(a.mapv(|z| z.exp())),
        (Function::Log, Value::Complex(a)) => Value::Complex(a.mapv(|z| z.ln())),
        (Function::Sin, Value::Complex(a)) => Value::Complex(a.mapv(|z| z.sin())),
        (Function::Cos, Value::Complex(a)) => Value::Complex(a.mapv(|z| z.cos())),
        (Function::Sqrt, Value::Complex(a)) => Value::Complex(a.mapv(|z| z.sqrt())),
        (Function::Softmax, _) => {
            // The softmax runs over the channel axis; subtracting the maximum avoids overflow.
            let a = first.real_part();
            let max = a
                .fold_axis(Axis(0), T::neg_infinity(), |m, x| m.max(*x))
                .insert_axis(Axis(0));
            let exp = zip_real(&a, &max, |x, m| (x - m).exp());
            let sum = exp.sum_axis(Axis(0)).insert_axis(Axis(0));
            Value::Real(zip_real(&exp, &sum, |e, s| e / s))
        }
    }
}
