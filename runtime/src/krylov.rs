//! BiCGSTAB for the linear systems of implicit steps and steady solves, matrix-free.
//!
//! H. A. van der Vorst, "Bi-CGSTAB: a fast and smoothly converging variant of Bi-CG for the solution
//! of nonsymmetric linear systems", SIAM J. Sci. Stat. Comput. 13(2), 1992. The operator is applied by
//! evaluating the discretized right-hand side, so no matrix is assembled; complex arithmetic covers
//! real and complex fields alike.

use crate::value::Real;
use num_complex::Complex;

/// A matrix-free linear operator: returns `A x` for `x`.
pub type LinearOperator<'a, T> = dyn FnMut(&[Complex<T>]) -> Vec<Complex<T>> + 'a;

/// The outcome of a linear solve.
#[derive(Clone, Debug, PartialEq)]
pub struct KrylovOutcome {
    pub iterations: usize,
    /// The final residual norm relative to the norm of the right-hand side.
    pub relative_residual: f64,
    pub converged: bool,
}

fn dot<T: Real>(a: &[Complex<T>], b: &[Complex<T>]) -> Complex<T> {
    a.iter()
        .zip(b)
        .fold(Complex::new(T::zero(), T::zero()), |s, (x, y)| {
            s + x.conj() * y
        })
}

fn norm<T: Real>(a: &[Complex<T>]) -> f64 {
    a.iter()
        .map(|z| z.norm_sqr().to_f64_lossy())
        .sum::<f64>()
        .sqrt()
}

/// Solves `A x = b` starting from `x`, stopping at relative residual `tolerance` or after
/// `max_iterations` iterations.
pub fn bicgstab<T: Real>(
    apply: &mut LinearOperator<'_, T>,
    b: &[Complex<T>],
    x: &mut [Complex<T>],
    tolerance: f64,
    max_iterations: usize,
) -> KrylovOutcome {
    let b_norm = norm(b).max(f64::MIN_POSITIVE);
    let ax = apply(x);
    let mut r: Vec<Complex<T>> = b.iter().zip(&ax).map(|(b, a)| b - a).collect();
    let r_hat = r.clone();
    let zero = Complex::new(T::zero(), T::zero());
    let one = Complex::new(T::one(), T::zero());
    let (mut rho, mut alpha, mut omega) = (one, one, one);
    let mut v = vec![zero; b.len()];
    let mut p = vec![zero; b.len()];
    let mut residual = norm(&r) / b_norm;
    let mut iterations = 0;
    while residual > tolerance && iterations < max_iterations {
        iterations += 1;
        let rho_next = dot(&r_hat, &r);
        if rho_next.norm() == T::zero() {
            break;
        }
        let beta = (rho_next / rho) * (alpha / omega);
        rho = rho_next;
        for i in 0..p.len() {
            p[i] = r[i] + beta * (p[i] - omega * v[i]);
        }
        v = apply(&p);
        alpha = rho / dot(&r_hat, &v);
        let s: Vec<Complex<T>> = r.iter().zip(&v).map(|(r, v)| r - alpha * v).collect();
        if norm(&s) / b_norm <= tolerance {
            x.iter_mut().zip(&p).for_each(|(x, p)| *x += alpha * p);
            residual = norm(&s) / b_norm;
            break;
        }
        let t = apply(&s);
        let tt = dot(&t, &t);
        omega = if tt.norm() == T::zero() {
            zero
        } else {
            dot(&t, &s) / tt
        };
        for i in 0..x.len() {
            x[i] += alpha * p[i] + omega * s[i];
            r[i] = s[i] - omega * t[i];
        }
        residual = norm(&r) / b_norm;
        if omega.norm() == T::zero() {
            break;
        }
    }
    KrylovOutcome {
        iterations,
        relative_residual: residual,
        converged: residual <= tolerance,
    }
}
