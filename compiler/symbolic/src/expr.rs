//! Symbolic expression trees over fields, parameters, coordinates and time.

use crate::model::{AxisId, DataId, FieldId, ParamId};
use serde::Serialize;

/// A pointwise function of one argument, or of two for [`Function::Max`] and [`Function::Min`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Function {
    Tanh,
    Relu,
    Sigmoid,
    Exp,
    Log,
    Sin,
    Cos,
    Abs,
    Sqrt,
    /// Complex conjugate; the identity on real values.
    Conj,
    /// Real part.
    Re,
    /// Imaginary part.
    Im,
    /// Pointwise maximum of two values.
    Max,
    /// Pointwise minimum of two values.
    Min,
    /// The softmax over the channels (or the entries of a vector).
    Softmax,
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Function::Tanh => "tanh",
            Function::Relu => "relu",
            Function::Sigmoid => "sigmoid",
            Function::Exp => "exp",
            Function::Log => "log",
            Function::Sin => "sin",
            Function::Cos => "cos",
            Function::Abs => "abs",
            Function::Sqrt => "sqrt",
            Function::Conj => "conj",
            Function::Re => "re",
            Function::Im => "im",
            Function::Max => "max",
            Function::Min => "min",
            Function::Softmax => "softmax",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum UnaryOp {
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `a ^ b`; the exponent is usually a constant.
    Pow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum CompareOp {
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
}

/// A reduction of a field to one number, over all grid points and channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ReduceOp {
    Max,
    Min,
    Sum,
    Mean,
    /// The discrete L2 norm `sqrt(Σ |u|² · cell volume)`.
    Norm,
    /// The integral `Σ u · cell volume` by the trapezoidal rule on the grid.
    Integral,
}

/// A change of grid resolution by a whole factor along every axis of the operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Resample {
    /// Restriction by cell averaging: each coarse point is the mean of a block of `factor` fine
    /// points per axis (average pooling with a window and stride of `factor`).
    Pool,
    /// Prolongation by injection: each fine point takes the value of the coarse point whose block
    /// contains it (nearest-neighbour upsampling). It is `factor^d` times the transpose of `Pool`.
    Upsample,
}

impl Resample {
    pub fn name(self) -> &'static str {
        match self {
            Resample::Pool => "pool",
            Resample::Upsample => "upsample",
        }
    }
}

/// A symbolic expression.
///
/// Values are real unless a complex literal, a complex field or a complex parameter enters. Spatial
/// operators apply to any expression; discretization expands them into stencils.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Expr {
    /// A real constant.
    Real(f64),
    /// A complex constant `re + im·i`.
    Complex(f64, f64),
    /// The coordinate along an axis.
    Coordinate(AxisId),
    /// The current time `t`.
    Time,
    Field(FieldId),
    /// One channel of a field with several channels.
    Channel(FieldId, usize),
    Param(ParamId),
    /// The input sample of a data source (training only).
    Input(DataId),
    /// The label of the current sample (training only).
    Label(DataId),
    /// The current sample read as a sequence, one slice per time step: a sample of shape
    /// `[rows, features…]` gives row `n` at step `n` (training only; the rows of an image feed a
    /// recurrent network).
    Sequence(DataId),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
    Compare(CompareOp, Box<Expr>, Box<Expr>),
    /// A partial derivative: one entry of `axes` per differentiation, so `[x, x]` is `∂²/∂x²` and
    /// `[x, y]` is the mixed derivative `∂²/∂x∂y`.
    Derivative {
        operand: Box<Expr>,
        axes: Vec<AxisId>,
    },
    /// The Laplacian over all interval and index axes of the operand.
    Laplace(Box<Expr>),
    /// `∇·(coefficient ∇operand)`, discretized in conservative form.
    DivGrad {
        coefficient: Box<Expr>,
        operand: Box<Expr>,
    },
    /// `velocity · ∂operand/∂axis`, discretized with an upwind bias chosen by the sign of `velocity`.
    Upwind {
        velocity: Box<Expr>,
        operand: Box<Expr>,
        axis: AxisId,
        order: u8,
    },
    /// A multi-channel convolution `Σ_in K[out, in, ...] ⋆ u[in]` with a kernel parameter of shape
    /// `[out, in, k₁, …, k_d]`; the padding follows the operand's boundary conditions.
    Convolution {
        kernel: ParamId,
        operand: Box<Expr>,
    },
    /// A matrix product `matrix @ operand`, where the operand is a vector or a field on one axis.
    MatMul {
        matrix: Box<Expr>,
        operand: Box<Expr>,
    },
    /// `pool(operand, factor)` or `upsample(operand, factor)`. `axes` are the axes of the result,
    /// one per axis of the operand, in the same order: the coarse or fine axes that the checker
    /// derived from the operand's axes (see [`crate::Resampling`]).
    Resample {
        kind: Resample,
        factor: usize,
        operand: Box<Expr>,
        axes: Vec<AxisId>,
    },
    /// A reduction of a field to a number.
    Reduce(ReduceOp, Box<Expr>),
    /// A vector of numbers `[a, b, …]`, one entry per item (class scores of a readout).
    Stack(Vec<Expr>),
}

impl Expr {
    /// Calls `visit` on this expression and every subexpression, parents first.
    pub fn walk(&self, visit: &mut impl FnMut(&Expr)) {
        self.walk_pruned(&mut |e| {
            visit(e);
            true
        });
    }

    /// Calls `visit` on this expression and its subexpressions, parents first, skipping the
    /// subexpressions of every expression for which `visit` returns false.
    pub fn walk_pruned(&self, visit: &mut impl FnMut(&Expr) -> bool) {
        if !visit(self) {
            return;
        }
        match self {
            Expr::Real(_)
            | Expr::Complex(..)
            | Expr::Coordinate(_)
            | Expr::Time
            | Expr::Field(_)
            | Expr::Channel(..)
            | Expr::Param(_)
            | Expr::Input(_)
            | Expr::Label(_)
            | Expr::Sequence(_) => {}
            Expr::Unary(_, a) | Expr::Laplace(a) | Expr::Reduce(_, a) => a.walk_pruned(visit),
            Expr::Derivative { operand, .. }
            | Expr::Convolution { operand, .. }
            | Expr::Resample { operand, .. } => operand.walk_pruned(visit),
            Expr::Binary(_, a, b) | Expr::Compare(_, a, b) => {
                a.walk_pruned(visit);
                b.walk_pruned(visit);
            }
            Expr::DivGrad {
                coefficient,
                operand,
            } => {
                coefficient.walk_pruned(visit);
                operand.walk_pruned(visit);
            }
            Expr::Upwind {
                velocity, operand, ..
            } => {
                velocity.walk_pruned(visit);
                operand.walk_pruned(visit);
            }
            Expr::MatMul { matrix, operand } => {
                matrix.walk_pruned(visit);
                operand.walk_pruned(visit);
            }
            Expr::Call(_, args) | Expr::Stack(args) => {
                args.iter().for_each(|a| a.walk_pruned(visit))
            }
        }
    }

    /// Returns true if any subexpression satisfies `predicate`.
    pub fn any(&self, predicate: impl Fn(&Expr) -> bool) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= predicate(e));
        found
    }

    /// Returns true if the expression refers to the field (or one of its channels).
    pub fn mentions_field(&self, field: FieldId) -> bool {
        self.any(|e| matches!(e, Expr::Field(f) | Expr::Channel(f, _) if *f == field))
    }

    pub fn real(value: f64) -> Expr {
        Expr::Real(value)
    }

    pub fn binary(op: BinaryOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }
}
