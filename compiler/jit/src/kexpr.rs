//! Kernel expressions: what one point of a sweep computes, in terms of buffer loads.
//!
//! A sweep visits the points of a box in the *kernel frame* (the padded index space of the value it
//! writes). Every grid value it reads lives in a buffer, and a [`Kexpr::Load`] names the buffer, the
//! channel and the constant displacement from the kernel-frame index to the buffer index. Stencil
//! taps, halo differences and the position of a view inside a larger buffer all fold into that one
//! displacement, so the code generator only ever adds a constant to a row pointer.

use npdec_symbolic::CompareOp;

/// A binary floating-point operation the code generator emits as one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arithmetic {
    Add,
    Sub,
    Mul,
    Div,
    /// `fmin`/`fmax`: NaN operands propagate, unlike Rust's `f64::min`/`max`.
    Min,
    Max,
}

/// A one-argument operation the code generator emits as one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    Neg,
    Abs,
    Sqrt,
}

/// A function computed by a registered Rust function (JIT) or by the C math library (AOT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MathFunction {
    Tanh,
    Exp,
    Log,
    Sin,
    Cos,
    Pow,
}

impl MathFunction {
    /// Every function, in declaration order.
    pub const ALL: [MathFunction; 6] = [
        MathFunction::Tanh,
        MathFunction::Exp,
        MathFunction::Log,
        MathFunction::Sin,
        MathFunction::Cos,
        MathFunction::Pow,
    ];

    /// Returns the number of arguments.
    pub fn arity(self) -> usize {
        match self {
            MathFunction::Pow => 2,
            MathFunction::Tanh
            | MathFunction::Exp
            | MathFunction::Log
            | MathFunction::Sin
            | MathFunction::Cos => 1,
        }
    }

    /// Returns the C math library name of the function for the given precision (`tanhf` in f32).
    pub fn symbol(self, single: bool) -> &'static str {
        match (self, single) {
            (MathFunction::Tanh, false) => "tanh",
            (MathFunction::Exp, false) => "exp",
            (MathFunction::Log, false) => "log",
            (MathFunction::Sin, false) => "sin",
            (MathFunction::Cos, false) => "cos",
            (MathFunction::Pow, false) => "pow",
            (MathFunction::Tanh, true) => "tanhf",
            (MathFunction::Exp, true) => "expf",
            (MathFunction::Log, true) => "logf",
            (MathFunction::Sin, true) => "sinf",
            (MathFunction::Cos, true) => "cosf",
            (MathFunction::Pow, true) => "powf",
        }
    }
}

/// The computation at one point of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub enum Kexpr {
    /// `buffer[channel, i + offset]` for the kernel-frame index `i`.
    Load {
        buffer: usize,
        channel: usize,
        offset: Vec<isize>,
    },
    /// Element `index` of a scalar or tensor buffer: the same value at every point.
    Uniform {
        buffer: usize,
        index: usize,
    },
    Const(f64),
    /// `origin + (i[axis] + shift) · spacing`, computed in f64 and then rounded to the kernel's type,
    /// as the interpreter does.
    Coordinate {
        axis: usize,
        origin: f64,
        spacing: f64,
        shift: isize,
    },
    Time,
    Unary(Intrinsic, Box<Kexpr>),
    Binary(Arithmetic, Box<Kexpr>, Box<Kexpr>),
    Call(MathFunction, Vec<Kexpr>),
    /// `then` where `left op right` holds, else `otherwise`.
    Select {
        op: CompareOp,
        left: Box<Kexpr>,
        right: Box<Kexpr>,
        then: Box<Kexpr>,
        otherwise: Box<Kexpr>,
    },
}

impl Kexpr {
    pub fn binary(op: Arithmetic, a: Kexpr, b: Kexpr) -> Kexpr {
        Kexpr::Binary(op, Box::new(a), Box::new(b))
    }

    pub fn unary(op: Intrinsic, a: Kexpr) -> Kexpr {
        Kexpr::Unary(op, Box::new(a))
    }

    /// Calls `visit` on this expression and every subexpression, parents first.
    pub fn walk(&self, visit: &mut impl FnMut(&Kexpr)) {
        visit(self);
        match self {
            Kexpr::Load { .. }
            | Kexpr::Uniform { .. }
            | Kexpr::Const(_)
            | Kexpr::Coordinate { .. }
            | Kexpr::Time => {}
            Kexpr::Unary(_, a) => a.walk(visit),
            Kexpr::Binary(_, a, b) => {
                a.walk(visit);
                b.walk(visit);
            }
            Kexpr::Call(_, args) => args.iter().for_each(|a| a.walk(visit)),
            Kexpr::Select {
                left,
                right,
                then,
                otherwise,
                ..
            } => {
                for e in [left, right, then, otherwise] {
                    e.walk(visit);
                }
            }
        }
    }

    /// Returns true when the expression can run on F32X4/F64X2 lanes: no calls, no selects and no
    /// coordinate along the innermost axis (the one the lanes run over).
    pub fn vectorizable(&self, innermost_axis: usize) -> bool {
        let mut ok = true;
        self.walk(&mut |e| match e {
            Kexpr::Call(..) | Kexpr::Select { .. } => ok = false,
            Kexpr::Coordinate { axis, .. } if *axis == innermost_axis => ok = false,
            Kexpr::Load { .. }
            | Kexpr::Uniform { .. }
            | Kexpr::Const(_)
            | Kexpr::Coordinate { .. }
            | Kexpr::Time
            | Kexpr::Unary(..)
            | Kexpr::Binary(..) => {}
        });
        ok
    }

    /// Returns the number of nodes of the expression tree.
    pub fn size(&self) -> usize {
        let mut count = 0;
        self.walk(&mut |_| count += 1);
        count
    }
}

/// Returns `x^n` for an integer `n` with the multiplications of compiler-builtins' `__powidf2`,
/// which Rust's `powi` calls for a run-time exponent, so the result matches the interpreter bit for
/// bit.
pub fn integer_power(x: Kexpr, n: i32) -> Kexpr {
    let mut base = x;
    let mut remaining = n.unsigned_abs();
    let mut product: Option<Kexpr> = None;
    loop {
        if remaining & 1 != 0 {
            product = Some(match product {
                None => base.clone(),
                Some(p) => Kexpr::binary(Arithmetic::Mul, p, base.clone()),
            });
        }
        remaining >>= 1;
        if remaining == 0 {
            break;
        }
        base = Kexpr::binary(Arithmetic::Mul, base.clone(), base);
    }
    let product = product.unwrap_or(Kexpr::Const(1.0));
    if n < 0 {
        Kexpr::binary(Arithmetic::Div, Kexpr::Const(1.0), product)
    } else {
        product
    }
}

/// Returns the left fold `terms[0] + terms[1] + …`, the summation order of the interpreter, or 0
/// for no terms.
pub fn sum(terms: Vec<Kexpr>) -> Kexpr {
    let mut iter = terms.into_iter();
    let Some(first) = iter.next() else {
        return Kexpr::Const(0.0);
    };
    iter.fold(first, |acc, t| Kexpr::binary(Arithmetic::Add, acc, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluate(e: &Kexpr, x: f64) -> f64 {
        match e {
            Kexpr::Const(c) => *c,
            Kexpr::Load { .. } => x,
            Kexpr::Binary(Arithmetic::Mul, a, b) => evaluate(a, x) * evaluate(b, x),
            Kexpr::Binary(Arithmetic::Div, a, b) => evaluate(a, x) / evaluate(b, x),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn integer_power_matches_powi() {
        let x = Kexpr::Load {
            buffer: 0,
            channel: 0,
            offset: vec![0],
        };
        for n in [-5, -1, 0, 1, 2, 3, 7, 12, 63] {
            let value = 1.0137_f64;
            // A constant exponent lets LLVM expand `powi` its own way: hide it, as at run time.
            let runtime = std::hint::black_box(n);
            assert_eq!(
                evaluate(&integer_power(x.clone(), n), value),
                value.powi(runtime),
                "exponent {n}"
            );
        }
    }

    #[test]
    fn sum_folds_left() {
        let terms = vec![Kexpr::Const(1.0), Kexpr::Const(2.0), Kexpr::Const(3.0)];
        let expected = Kexpr::binary(
            Arithmetic::Add,
            Kexpr::binary(Arithmetic::Add, Kexpr::Const(1.0), Kexpr::Const(2.0)),
            Kexpr::Const(3.0),
        );
        assert_eq!(sum(terms), expected);
        assert_eq!(sum(Vec::new()), Kexpr::Const(0.0));
    }
}
