//! Stability analysis of explicit time schemes: the diffusion number and CFL limits.
//!
//! The analysis is a von Neumann analysis with frozen coefficients. For each equation it computes the
//! Fourier symbol `λ(θ)` of the discrete right-hand side, linearized in the equation's own field, on a
//! grid of wave numbers `θ ∈ [−π, π]` per axis. Stencils contribute `Σ w · e^{iθ·offset}`; pointwise
//! nodes contribute the slope `∂f/∂input` of their expression at the point of the sampled state where
//! it is largest in magnitude. The symbol at `θ = 0`, which is the growth rate of the pointwise
//! (reaction) part, is subtracted: that growth belongs to the model, not to the scheme.
//!
//! The largest stable step is then the largest `dt` with `|R(dt·λ)| ≤ 1` for all sampled `λ`, where `R`
//! is the stability function of the scheme (`1 + z` for explicit Euler, the degree-4 Taylor polynomial
//! of `e^z` for RK4). Second-order equations advanced as first-order systems use `μ = ±√λ`. Leapfrog
//! on `u″ = λu` is stable for real `λ ≤ 0` and `dt ≤ 2/√|λ|`, and on `u′ = λu` for imaginary `λ` and
//! `dt < 1/|λ|`. Implicit schemes, split-step Fourier and steady solves have no limit.
//!
//! For the heat equation with order-2 differences this gives the classic `dt ≤ h²/(2ν)` for explicit
//! Euler; for upwinded advection `dt ≤ h/|v|`.
//!
//! Not covered: dense and convolution nodes and reductions contribute no symbol, and coupling between
//! different fields is treated like a reaction.

use crate::graph::{Graph, Grid, NodeId, NodeKind, PointwiseExpr, Update};
use crate::pointwise::{differentiate, evaluate_at};
use npdec_symbolic::Scheme;
use num_complex::Complex64;
use std::f64::consts::PI;

/// The maximum number of points sampled to find a coefficient's largest magnitude.
pub const MAX_COEFFICIENT_SAMPLES: usize = 4096;

/// The result of [`analyze_stability`].
#[derive(Clone, Debug, PartialEq)]
pub struct StabilityLimit {
    /// The largest stable step, `None` when the scheme is stable at every step and `Some(0.0)` when it
    /// is unstable at every step.
    pub max_stable_dt: Option<f64>,
    /// The largest `|λ|` of the spatial operator over the sampled wave numbers.
    pub spectral_radius: f64,
}

/// Computes the largest stable step of the graph's time step.
///
/// `values` returns the flattened value of a node at the state the coefficients are frozen at (for
/// example the initial state), or `None` when the node was not evaluated.
pub fn analyze_stability(
    graph: &Graph,
    values: &dyn Fn(NodeId) -> Option<Vec<Complex64>>,
) -> Option<StabilityLimit> {
    let (step_id, step) = graph.time_step()?;
    let inputs = graph.inputs(step_id);
    let mut max_dt: Option<f64> = None;
    let mut radius: f64 = 0.0;
    for (update, rhs) in step.updates.iter().zip(inputs) {
        let samples = wave_numbers(graph.field(update.field).axes.len());
        let mut analysis = SymbolAnalysis {
            graph,
            values,
            update,
            samples: &samples,
            memo: Default::default(),
        };
        let symbol = analysis.symbol(rhs);
        let reaction = symbol[0];
        let lambdas: Vec<Complex64> = symbol.iter().map(|l| l - reaction).collect();
        radius = lambdas.iter().fold(radius, |m, l| m.max(l.norm()));
        let limit = scheme_limit(&step.scheme, update.time_order, &lambdas);
        max_dt = match (max_dt, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Some(StabilityLimit {
        max_stable_dt: max_dt,
        spectral_radius: radius,
    })
}

/// Returns wave-number vectors with θ = 0 first, then a tensor grid over `[−π, π]` per axis.
fn wave_numbers(rank: usize) -> Vec<Vec<f64>> {
    let per_axis = if rank <= 2 { 17 } else { 9 };
    let values: Vec<f64> = (0..per_axis)
        .map(|i| -PI + 2.0 * PI * i as f64 / (per_axis - 1) as f64)
        .collect();
    let mut samples = vec![vec![0.0; rank]];
    let mut grid: Vec<Vec<f64>> = vec![Vec::new()];
    for _ in 0..rank {
        grid = grid
            .into_iter()
            .flat_map(|prefix| {
                values
                    .iter()
                    .map(move |v| [prefix.clone(), vec![*v]].concat())
            })
            .collect();
    }
    samples.extend(grid);
    samples
}

struct SymbolAnalysis<'a> {
    graph: &'a Graph,
    values: &'a dyn Fn(NodeId) -> Option<Vec<Complex64>>,
    update: &'a Update,
    samples: &'a [Vec<f64>],
    memo: std::collections::HashMap<NodeId, Vec<Complex64>>,
}

impl SymbolAnalysis<'_> {
    fn zero(&self) -> Vec<Complex64> {
        vec![Complex64::new(0.0, 0.0); self.samples.len()]
    }

    fn symbol(&mut self, id: NodeId) -> Vec<Complex64> {
        if let Some(symbol) = self.memo.get(&id) {
            return symbol.clone();
        }
        let symbol = self.compute(id);
        self.memo.insert(id, symbol.clone());
        symbol
    }

    fn compute(&mut self, id: NodeId) -> Vec<Complex64> {
        let node = self.graph.node(id);
        let inputs = self.graph.inputs(id);
        match &node.kind {
            NodeKind::State { field } => {
                let own = *field == self.update.field;
                vec![Complex64::new(if own { 1.0 } else { 0.0 }, 0.0); self.samples.len()]
            }
            NodeKind::Boundary { .. } => self.symbol(inputs[0]),
            NodeKind::Param { .. }
            | NodeKind::Dense
            | NodeKind::Convolution { .. }
            | NodeKind::Resample { .. }
            | NodeKind::Reduce(_)
            | NodeKind::Initial { .. }
            | NodeKind::TimeStep(_)
            | NodeKind::Expect { .. } => self.zero(),
            NodeKind::Pointwise(expr) => {
                let mut total = self.zero();
                for (index, input) in inputs.iter().enumerate() {
                    let symbol = self.symbol(*input);
                    if symbol.iter().all(|s| s.norm() == 0.0) {
                        continue;
                    }
                    let slope = self.largest_slope(id, expr, index, &inputs);
                    total
                        .iter_mut()
                        .zip(&symbol)
                        .for_each(|(t, s)| *t += slope * s);
                }
                total
            }
            NodeKind::Stencil(stencil) => {
                let input = self.symbol(inputs[0]);
                self.samples
                    .iter()
                    .zip(input)
                    .map(|(theta, s)| {
                        let value: Complex64 = stencil
                            .taps
                            .iter()
                            .map(|tap| {
                                let phase: f64 = tap
                                    .offset
                                    .iter()
                                    .zip(theta)
                                    .map(|(o, t)| f64::from(*o) * t)
                                    .sum();
                                Complex64::from_polar(tap.weight, phase)
                            })
                            .sum();
                        value * s
                    })
                    .collect()
            }
            NodeKind::DivGrad { axes, spacing } => {
                let coefficient = self.largest_magnitude(inputs[0]);
                let input = self.symbol(inputs[1]);
                self.samples
                    .iter()
                    .zip(input)
                    .map(|(theta, s)| {
                        let laplace: f64 = axes
                            .iter()
                            .zip(spacing)
                            .map(|(p, h)| (2.0 * theta[*p].cos() - 2.0) / (h * h))
                            .sum();
                        coefficient * laplace * s
                    })
                    .collect()
            }
            NodeKind::Upwind {
                position, backward, ..
            } => {
                let velocity = self.largest_magnitude(inputs[0]);
                let input = self.symbol(inputs[1]);
                self.samples
                    .iter()
                    .zip(input)
                    .map(|(theta, s)| {
                        let value: Complex64 = backward
                            .iter()
                            .map(|(o, w)| {
                                Complex64::from_polar(*w, f64::from(*o) * theta[*position])
                            })
                            .sum();
                        velocity * value * s
                    })
                    .collect()
            }
        }
    }

    /// Returns the largest `|value|` of a node, or 0 when it was not evaluated.
    fn largest_magnitude(&self, id: NodeId) -> f64 {
        (self.values)(id).map_or(0.0, |v| v.iter().fold(0.0, |m, x| m.max(x.norm())))
    }

    /// Returns the value of `∂expr/∂input` with the largest magnitude over sampled points.
    fn largest_slope(
        &self,
        id: NodeId,
        expr: &PointwiseExpr,
        index: usize,
        inputs: &[NodeId],
    ) -> Complex64 {
        let slope = differentiate(expr, index);
        let input_values: Vec<Vec<Complex64>> = inputs
            .iter()
            .map(|i| (self.values)(*i).unwrap_or_else(|| vec![Complex64::new(0.0, 0.0)]))
            .collect();
        let points = match &self.graph.node(id).value.grid {
            Grid::Points { .. } => input_values.iter().map(Vec::len).max().unwrap_or(1),
            Grid::Scalar | Grid::Tensor { .. } => 1,
        };
        let stride = points.div_ceil(MAX_COEFFICIENT_SAMPLES).max(1);
        let uses_coordinates = {
            let mut found = false;
            slope.walk(&mut |e| {
                found |= matches!(e, PointwiseExpr::Coordinate(_) | PointwiseExpr::Time)
            });
            found
        };
        let mut best = Complex64::new(0.0, 0.0);
        let mut at = Vec::with_capacity(input_values.len());
        for point in (0..points).step_by(stride) {
            at.clear();
            at.extend(input_values.iter().map(|v| v[point % v.len()]));
            // NOTE: coordinates and time in a slope are frozen at 0; slopes of the models in the test
            // suite do not depend on them.
            let value = evaluate_at(&slope, &at, &|_| 0.0, 0.0);
            if value.norm() > best.norm() || !value.is_finite() {
                best = value;
            }
            if !uses_coordinates && input_values.iter().all(|v| v.len() == 1) {
                break;
            }
        }
        best
    }
}

/// Returns the largest stable step of a scheme for the sampled symbol values.
fn scheme_limit(scheme: &Scheme, time_order: u8, lambdas: &[Complex64]) -> Option<f64> {
    let largest = lambdas.iter().fold(0.0f64, |m, l| m.max(l.norm()));
    if largest == 0.0 {
        return match scheme {
            Scheme::Euler | Scheme::Rk4 | Scheme::Leapfrog => Some(f64::INFINITY),
            Scheme::CrankNicolson
            | Scheme::BackwardEuler
            | Scheme::SplitStep
            | Scheme::Steady { .. } => None,
        };
    }
    let significant = |l: &&Complex64| l.norm() > 1e-12 * largest;
    match scheme {
        Scheme::CrankNicolson
        | Scheme::BackwardEuler
        | Scheme::SplitStep
        | Scheme::Steady { .. } => None,
        Scheme::Leapfrog if time_order == 2 => {
            let oscillatory = lambdas
                .iter()
                .filter(significant)
                .all(|l| l.re <= 1e-9 * largest && l.im.abs() <= 1e-9 * largest);
            Some(if oscillatory {
                2.0 / largest.sqrt()
            } else {
                0.0
            })
        }
        Scheme::Leapfrog => {
            let imaginary = lambdas
                .iter()
                .filter(significant)
                .all(|l| l.re.abs() <= 1e-9 * largest);
            Some(if imaginary { 1.0 / largest } else { 0.0 })
        }
        Scheme::Euler | Scheme::Rk4 => {
            let stability: fn(Complex64) -> f64 = if *scheme == Scheme::Euler {
                |z| (1.0 + z).norm()
            } else {
                |z| (1.0 + z + z * z / 2.0 + z * z * z / 6.0 + z * z * z * z / 24.0).norm()
            };
            let mus: Vec<Complex64> = if time_order == 2 {
                lambdas
                    .iter()
                    .filter(significant)
                    .flat_map(|l| [l.sqrt(), -l.sqrt()])
                    .collect()
            } else {
                lambdas.iter().filter(significant).copied().collect()
            };
            let limit = mus
                .iter()
                .map(|mu| largest_stable_ray(*mu, stability))
                .fold(f64::INFINITY, f64::min);
            Some(limit)
        }
    }
}

/// Returns the largest `s` with `|R(s'μ)| ≤ 1` for every `s' ≤ s`, or 0 when the ray leaves the
/// stability region at once.
fn largest_stable_ray(mu: Complex64, stability: fn(Complex64) -> f64) -> f64 {
    const SCAN: usize = 400;
    const TOLERANCE: f64 = 1e-9;
    let reach = 4.0 / mu.norm();
    let mut previous = 0.0;
    for k in 1..=SCAN {
        let s = reach * k as f64 / SCAN as f64;
        if stability(mu * s) > 1.0 + TOLERANCE {
            let (mut low, mut high) = (previous, s);
            for _ in 0..60 {
                let middle = 0.5 * (low + high);
                if stability(mu * middle) > 1.0 + TOLERANCE {
                    high = middle;
                } else {
                    low = middle;
                }
            }
            return if low * mu.norm() < 1e-3 { 0.0 } else { low };
        }
        previous = s;
    }
    reach
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euler_diffusion_limit() {
        let lambdas: Vec<Complex64> = (0..=16)
            .map(|i| Complex64::new(-4.0 * (PI * i as f64 / 32.0).sin().powi(2), 0.0))
            .collect();
        let limit = scheme_limit(&Scheme::Euler, 1, &lambdas).unwrap();
        assert!((limit - 0.5).abs() < 1e-6, "{limit}");
    }

    #[test]
    fn rk4_imaginary_axis_limit() {
        let lambdas = [Complex64::new(0.0, 1.0)];
        let limit = scheme_limit(&Scheme::Rk4, 1, &lambdas).unwrap();
        assert!((limit - 8f64.sqrt()).abs() < 1e-4, "{limit}");
    }

    #[test]
    fn euler_unstable_on_imaginary_axis() {
        let lambdas = [Complex64::new(0.0, 1.0)];
        assert_eq!(scheme_limit(&Scheme::Euler, 1, &lambdas), Some(0.0));
    }

    #[test]
    fn leapfrog_wave_limit() {
        let lambdas = [Complex64::new(-4.0, 0.0)];
        assert_eq!(scheme_limit(&Scheme::Leapfrog, 2, &lambdas), Some(1.0));
    }
}
