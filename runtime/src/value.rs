//! Array values of the interpreter: real or complex `ndarray` arrays over a floating-point type.

use ndarray::{ArrayD, IxDyn};
use num_complex::Complex;
use num_traits::{Float, FloatConst, FromPrimitive, NumAssign, One, Zero};
use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};
use std::path::Path;

/// A floating-point type the interpreter computes in: `f32` or `f64`.
pub trait Real:
    Float
    + FloatConst
    + FromPrimitive
    + NumAssign
    + rustfft::FftNum
    + Default
    + Debug
    + std::fmt::Display
    + Send
    + Sync
    + 'static
{
    /// The name used in `summary.json`.
    const NAME: &'static str;

    fn write_npy(path: &Path, array: &ArrayD<Self>) -> Result<(), String>;
    fn write_npy_complex(path: &Path, array: &ArrayD<Complex<Self>>) -> Result<(), String>;

    /// Asks a compiler for the right-hand sides of a graph in this precision.
    fn compile_rhs<'g>(
        compiler: &dyn crate::engine::Compiler,
        graph: &'g npdec_ir::graph::Graph,
        roots: &[npdec_ir::graph::NodeId],
    ) -> Result<Box<dyn crate::engine::CompiledRhs<Self> + 'g>, String>;

    /// Asks a compiler for whole explicit Euler steps of a graph in this precision.
    fn compile_euler(
        compiler: &dyn crate::engine::Compiler,
        graph: &npdec_ir::graph::Graph,
    ) -> Result<Box<dyn crate::engine::CompiledSteps<Self>>, String>;

    fn of(value: f64) -> Self {
        Self::from_f64(value).unwrap_or_else(Self::nan)
    }

    fn to_f64_lossy(self) -> f64 {
        self.to_f64().unwrap_or(f64::NAN)
    }
}

macro_rules! real_impl {
    ($t:ty, $name:literal, $compile:ident, $euler:ident) => {
        impl Real for $t {
            const NAME: &'static str = $name;

            fn write_npy(path: &Path, array: &ArrayD<Self>) -> Result<(), String> {
                ndarray_npy::write_npy(path, array).map_err(|e| e.to_string())
            }

            fn write_npy_complex(path: &Path, array: &ArrayD<Complex<Self>>) -> Result<(), String> {
                ndarray_npy::write_npy(path, array).map_err(|e| e.to_string())
            }

            fn compile_rhs<'g>(
                compiler: &dyn crate::engine::Compiler,
                graph: &'g npdec_ir::graph::Graph,
                roots: &[npdec_ir::graph::NodeId],
            ) -> Result<Box<dyn crate::engine::CompiledRhs<Self> + 'g>, String> {
                compiler.$compile(graph, roots)
            }

            fn compile_euler(
                compiler: &dyn crate::engine::Compiler,
                graph: &npdec_ir::graph::Graph,
            ) -> Result<Box<dyn crate::engine::CompiledSteps<Self>>, String> {
                compiler.$euler(graph)
            }
        }
    };
}

real_impl!(f32, "f32", compile_f32, compile_euler_f32);
real_impl!(f64, "f64", compile_f64, compile_euler_f64);

/// A value computed by a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<T: Real> {
    Real(ArrayD<T>),
    Complex(ArrayD<Complex<T>>),
}

impl<T: Real> Value<T> {
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::Real(a) => a.shape(),
            Value::Complex(a) => a.shape(),
        }
    }

    pub fn is_complex(&self) -> bool {
        matches!(self, Value::Complex(_))
    }

    pub fn zeros(shape: &[usize], complex: bool) -> Self {
        if complex {
            Value::Complex(ArrayD::zeros(IxDyn(shape)))
        } else {
            Value::Real(ArrayD::zeros(IxDyn(shape)))
        }
    }

    /// Returns the value as a complex array.
    pub fn to_complex(&self) -> ArrayD<Complex<T>> {
        match self {
            Value::Real(a) => a.mapv(|x| Complex::new(x, T::zero())),
            Value::Complex(a) => a.clone(),
        }
    }

    /// Returns the real part.
    pub fn real_part(&self) -> ArrayD<T> {
        match self {
            Value::Real(a) => a.clone(),
            Value::Complex(a) => a.mapv(|z| z.re),
        }
    }

    /// Returns the value converted to the given kind (dropping imaginary parts for a real one).
    pub fn converted(self, complex: bool) -> Self {
        match (self, complex) {
            (Value::Real(a), true) => Value::Complex(a.mapv(|x| Complex::new(x, T::zero()))),
            (Value::Complex(a), false) => Value::Real(a.mapv(|z| z.re)),
            (value, _) => value,
        }
    }

    /// Returns the entries as complex doubles, flattened in logical order.
    pub fn to_complex64(&self) -> Vec<num_complex::Complex64> {
        match self {
            Value::Real(a) => a
                .iter()
                .map(|x| num_complex::Complex64::new(x.to_f64_lossy(), 0.0))
                .collect(),
            Value::Complex(a) => a
                .iter()
                .map(|z| num_complex::Complex64::new(z.re.to_f64_lossy(), z.im.to_f64_lossy()))
                .collect(),
        }
    }

    /// Returns the largest absolute value, NaN if any entry is NaN.
    pub fn max_abs(&self) -> T {
        let fold = |m: T, x: T| {
            if x.is_nan() || m.is_nan() {
                T::nan()
            } else {
                m.max(x)
            }
        };
        match self {
            Value::Real(a) => a.iter().fold(T::zero(), |m, x| fold(m, x.abs())),
            Value::Complex(a) => a.iter().fold(T::zero(), |m, z| fold(m, z.norm())),
        }
    }

    /// Returns `self + factor · other`, promoting to complex where either side is complex.
    pub fn plus_scaled(&self, factor: T, other: &Value<T>) -> Value<T> {
        match (self, other) {
            (Value::Real(a), Value::Real(b)) => {
                let mut sum = a.clone();
                sum.zip_mut_with(b, |x, y| *x += *y * factor);
                Value::Real(sum)
            }
            _ => {
                let b = other.to_complex();
                let mut sum = self.to_complex();
                sum.zip_mut_with(&b, |x, y| *x += *y * factor);
                Value::Complex(sum)
            }
        }
    }
}

/// An array element: a real number or a complex one over the same real type.
pub trait Element<T: Real>:
    Copy
    + Debug
    + Zero
    + One
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + Send
    + Sync
    + 'static
{
    fn from_real(x: T) -> Self;
    fn real(self) -> T;
    fn scale(self, factor: T) -> Self;
    fn array_of(value: &Value<T>) -> ArrayD<Self>;
    fn wrap(array: ArrayD<Self>) -> Value<T>;
}

impl<T: Real> Element<T> for T {
    fn from_real(x: T) -> Self {
        x
    }

    fn real(self) -> T {
        self
    }

    fn scale(self, factor: T) -> Self {
        self * factor
    }

    fn array_of(value: &Value<T>) -> ArrayD<Self> {
        value.real_part()
    }

    fn wrap(array: ArrayD<Self>) -> Value<T> {
        Value::Real(array)
    }
}

impl<T: Real> Element<T> for Complex<T> {
    fn from_real(x: T) -> Self {
        Complex::new(x, T::zero())
    }

    fn real(self) -> T {
        self.re
    }

    fn scale(self, factor: T) -> Self {
        self * factor
    }

    fn array_of(value: &Value<T>) -> ArrayD<Self> {
        value.to_complex()
    }

    fn wrap(array: ArrayD<Self>) -> Value<T> {
        Value::Complex(array)
    }
}
