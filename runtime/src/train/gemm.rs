//! Dense matrix products (GEMM) of training: the `W @ u` layers of the tape, their adjoints, and
//! compiled code that calls them.
//!
//! Every product computes `C ← α A B + β C` for matrices given by a pointer and row and column
//! strides in elements, as BLAS and `matrixmultiply` take them, so transposes and row slices need
//! no copy. The products run on the calling thread: training already splits a batch into one
//! chunk per thread of its pool.
//!
//! With [`ProductPrecision::F32`] the operands are rounded to `f32`, the products and their sums
//! run in `f32` and the result is widened back to `f64` before `α` and `β` are applied. Parameter
//! matrices keep an `f32` copy for this (see `ParamValues::set_product_precision`), so only the
//! batch-sized operands are rounded per call. Compiled code that reads `ParamValues` picks the
//! precision from their `products` field in the same way.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, ShapeBuilder};
use std::cell::RefCell;

/// The floating-point precision of the dense products of training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProductPrecision {
    /// `f64` operands, products and sums.
    #[default]
    F64,
    /// Operands rounded to `f32`, products and sums in `f32`, the result widened to `f64`.
    F32,
}

/// Computes `C ← α A B + β C` in `f64`, with `A` of `m × k`, `B` of `k × n` and `C` of `m × n`
/// entries. Each matrix is given by a pointer to its first entry and its row and column strides
/// in entries, which may be zero or negative for `A` and `B`. With `β = 0`, `C` is only written.
///
/// # Safety
///
/// Every entry the strides address must lie inside a live allocation of the pointer's type,
/// and the entries of `C` must be distinct (no zero stride) and must not overlap `A` or `B`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_f64(
    m: usize,
    k: usize,
    n: usize,
    alpha: f64,
    a: *const f64,
    row_stride_a: isize,
    column_stride_a: isize,
    b: *const f64,
    row_stride_b: isize,
    column_stride_b: isize,
    beta: f64,
    c: *mut f64,
    row_stride_c: isize,
    column_stride_c: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the caller upholds matrixmultiply's contract, which is the one stated above.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a,
            row_stride_a,
            column_stride_a,
            b,
            row_stride_b,
            column_stride_b,
            beta,
            c,
            row_stride_c,
            column_stride_c,
        );
    }
}

/// Computes `C ← α A B + β C` in `f32`; the arguments and the contract are those of
/// [`gemm_f64`].
///
/// # Safety
///
/// As for [`gemm_f64`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_f32(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    row_stride_a: isize,
    column_stride_a: isize,
    b: *const f32,
    row_stride_b: isize,
    column_stride_b: isize,
    beta: f32,
    c: *mut f32,
    row_stride_c: isize,
    column_stride_c: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the caller upholds matrixmultiply's contract, which is the one stated above.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a,
            row_stride_a,
            column_stride_a,
            b,
            row_stride_b,
            column_stride_b,
            beta,
            c,
            row_stride_c,
            column_stride_c,
        );
    }
}

/// Checks that `A B` can be added to `C` and returns `(m, k, n)`.
fn product_shape(a: (usize, usize), b: (usize, usize), c: (usize, usize)) -> (usize, usize, usize) {
    assert!(
        a.1 == b.0 && c == (a.0, b.1),
        "matrix product of [{}, {}] and [{}, {}] into [{}, {}]",
        a.0,
        a.1,
        b.0,
        b.1,
        c.0,
        c.1
    );
    (a.0, a.1, b.1)
}

/// Computes `C ← α A B + β C` in `f64` on ndarray views. Panics when the shapes do not match.
pub fn matmul_into(
    alpha: f64,
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    beta: f64,
    mut c: ArrayViewMut2<f64>,
) {
    let (m, k, n) = product_shape(a.dim(), b.dim(), c.dim());
    let (sa, sb, sc) = (a.strides(), b.strides(), c.strides());
    let (sc0, sc1) = (sc[0], sc[1]);
    // SAFETY: the views address their own entries through their strides, a mutable view's
    // entries are distinct and cannot overlap the shared views `a` and `b`.
    unsafe {
        gemm_f64(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            sa[0],
            sa[1],
            b.as_ptr(),
            sb[0],
            sb[1],
            beta,
            c.as_mut_ptr(),
            sc0,
            sc1,
        );
    }
}

/// Computes `C ← α A B + β C` in `f32` on ndarray views. Panics when the shapes do not match.
pub fn matmul_into_f32(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
) {
    let (m, k, n) = product_shape(a.dim(), b.dim(), c.dim());
    let (sa, sb, sc) = (a.strides(), b.strides(), c.strides());
    let (sc0, sc1) = (sc[0], sc[1]);
    // SAFETY: as in `matmul_into`.
    unsafe {
        gemm_f32(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            sa[0],
            sa[1],
            b.as_ptr(),
            sb[0],
            sb[1],
            beta,
            c.as_mut_ptr(),
            sc0,
            sc1,
        );
    }
}

/// Returns `A B` computed in `f64`, as a row-major array.
pub fn matmul(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Array2<f64> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    matmul_into(1.0, a, b, 0.0, c.view_mut());
    c
}

/// An operand of a single-precision product: `f64` values that are rounded on each call, or an
/// `f32` copy kept by the caller (a parameter matrix).
#[derive(Clone, Copy, Debug)]
pub enum SingleOperand<'a> {
    Double(ArrayView2<'a, f64>),
    Single(ArrayView2<'a, f32>),
}

impl SingleOperand<'_> {
    fn dim(&self) -> (usize, usize) {
        match self {
            SingleOperand::Double(a) => a.dim(),
            SingleOperand::Single(a) => a.dim(),
        }
    }
}

thread_local! {
    /// Scratch buffers of [`matmul_into_single`]: the rounded `A`, the rounded `B` and `A B`.
    static SINGLE_SCRATCH: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Returns `a` rounded to `f32` in a column-major view over `buffer` when `a` is column-major
/// (a transposed row-major matrix), else in a row-major one, so the copy reads `a` in order.
fn round_into<'b>(a: ArrayView2<f64>, buffer: &'b mut Vec<f32>) -> ArrayView2<'b, f32> {
    let (rows, columns) = a.dim();
    let column_major = a.strides()[0] == 1 && rows > 1;
    let in_order = if column_major { a.reversed_axes() } else { a };
    buffer.clear();
    // A contiguous operand (the usual case) converts as one slice, which compiles to a
    // vectorized loop; ndarray's general iterator does not.
    match in_order.as_slice() {
        Some(entries) => buffer.extend(entries.iter().map(|&x| x as f32)),
        None => buffer.extend(in_order.iter().map(|&x| x as f32)),
    }
    if column_major {
        ArrayView2::from_shape((rows, columns).f(), buffer).expect("buffer of the view's size")
    } else {
        ArrayView2::from_shape((rows, columns), buffer).expect("buffer of the view's size")
    }
}

/// Computes `C ← α A B + β C` with `A B` in single precision: `f64` operands are rounded to
/// `f32`, the product and its sums run in `f32`, and `α A B + β C` is formed in `f64`. Panics
/// when the shapes do not match.
pub fn matmul_into_single(
    alpha: f64,
    a: SingleOperand,
    b: SingleOperand,
    beta: f64,
    mut c: ArrayViewMut2<f64>,
) {
    let (m, _, n) = product_shape(a.dim(), b.dim(), c.dim());
    SINGLE_SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let [a_buffer, b_buffer, product_buffer] = &mut *scratch;
        let a = match a {
            SingleOperand::Double(a) => round_into(a, a_buffer),
            SingleOperand::Single(a) => a,
        };
        let b = match b {
            SingleOperand::Double(b) => round_into(b, b_buffer),
            SingleOperand::Single(b) => b,
        };
        // With β = 0 the product only writes its target, so the buffer is grown but not cleared.
        if product_buffer.len() < m * n {
            product_buffer.resize(m * n, 0.0);
        }
        let mut product = ArrayViewMut2::from_shape((m, n), &mut product_buffer[..m * n])
            .expect("buffer of the product's size");
        matmul_into_f32(1.0, a, b, 0.0, product.view_mut());
        if beta == 0.0 {
            ndarray::Zip::from(&mut c)
                .and(&product)
                .for_each(|c, &p| *c = alpha * p as f64);
        } else {
            ndarray::Zip::from(&mut c)
                .and(&product)
                .for_each(|c, &p| *c = alpha * p as f64 + beta * *c);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    /// The product by the definition, summed in f64.
    fn reference(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|l| a[[i, l]] * b[[l, j]]).sum()
        })
    }

    fn sample(rows: usize, columns: usize, seed: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, columns), |(i, j)| {
            (((i * 31 + j * 17 + seed * 7) % 23) as f64 - 11.0) / 7.0
        })
    }

    fn max_difference(x: &Array2<f64>, y: &Array2<f64>) -> f64 {
        x.iter()
            .zip(y.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn double_product_matches_definition() {
        let a = sample(37, 300, 1);
        let b = sample(300, 29, 2);
        let mut c = sample(37, 29, 3);
        let expected = 0.5 * &reference(a.view(), b.view()) + 2.0 * &c;
        matmul_into(0.5, a.view(), b.view(), 2.0, c.view_mut());
        assert!(max_difference(&c, &expected) < 1e-11);
    }

    #[test]
    fn double_product_of_transposes_and_slices() {
        let a = sample(300, 37, 4);
        let b = sample(29, 300, 5);
        let c = matmul(a.t(), b.t());
        assert!(max_difference(&c, &reference(a.t(), b.t())) < 1e-11);
        let rows = a.slice(s![10..20, ..]);
        let c = matmul(rows, b.slice(s![..7, ..37]).t());
        assert!(max_difference(&c, &reference(rows, b.slice(s![..7, ..37]).t())) < 1e-11);
    }

    #[test]
    fn double_product_matches_ndarray_dot_bit_for_bit() {
        let a = sample(64, 784, 6);
        let w = sample(784, 784, 7);
        assert_eq!(matmul(a.view(), w.t()), a.dot(&w.t()));
        let g = sample(64, 784, 8);
        assert_eq!(matmul(g.t(), a.view()), g.t().dot(&a));
    }

    #[test]
    fn empty_product_leaves_scaled_target() {
        let a = Array2::<f64>::zeros((3, 0));
        let b = Array2::<f64>::zeros((0, 2));
        let mut c = Array2::from_elem((3, 2), 1.5);
        matmul_into(1.0, a.view(), b.view(), 2.0, c.view_mut());
        assert!(c.iter().all(|&x| x == 3.0));
    }

    #[test]
    fn single_product_agrees_within_f32_rounding() {
        let a = sample(64, 784, 9);
        let w = sample(784, 784, 10);
        let w_single = w.mapv(|x| x as f32);
        let expected = reference(a.view(), w.t());
        let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut c = Array2::zeros((64, 784));
        matmul_into_single(
            1.0,
            SingleOperand::Double(a.view()),
            SingleOperand::Single(w_single.t()),
            0.0,
            c.view_mut(),
        );
        let error = max_difference(&c, &expected) / scale;
        assert!(error < 1e-5, "relative error {error}");
        assert!(error > 0.0, "the product was not computed in f32");
    }

    #[test]
    fn single_product_accumulates_transposed_operands() {
        let g = sample(64, 50, 11);
        let u = sample(64, 40, 12);
        let mut c = sample(50, 40, 13);
        let expected = reference(g.t(), u.view()) + &c;
        matmul_into_single(
            1.0,
            SingleOperand::Double(g.t()),
            SingleOperand::Double(u.view()),
            1.0,
            c.view_mut(),
        );
        let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(max_difference(&c, &expected) / scale < 1e-5);
    }

    #[test]
    #[should_panic(expected = "matrix product of [2, 3] and [4, 5]")]
    fn mismatched_shapes_panic() {
        let a = Array2::<f64>::zeros((2, 3));
        let b = Array2::<f64>::zeros((4, 5));
        let _ = matmul(a.view(), b.view());
    }
}
