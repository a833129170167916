//! Finite-difference weights on arbitrary nodes by Fornberg's algorithm.
//!
//! B. Fornberg, "Calculation of weights in finite difference formulas", SIAM Review 40(3), 1998,
//! gives a recurrence that computes, for nodes `x₀ … xₙ` and an evaluation point `z`, the weights of
//! every derivative order up to `m` at once. The weights are exact for polynomials of degree `n`, so a
//! formula for the `k`-th derivative on `n + 1` nodes has accuracy `n + 1 − k` in general, and one
//! more on symmetric node sets for even `k`.

/// Computes `weights[k][j]`: the weight of node `nodes[j]` in the formula for the `k`-th derivative at
/// `z`, for `k = 0 ..= max_derivative`. Derivative 0 gives the Lagrange interpolation weights.
///
/// The nodes must be distinct; the weights are for unit spacing of whatever coordinate the nodes use.
pub fn fornberg_weights(z: f64, nodes: &[f64], max_derivative: usize) -> Vec<Vec<f64>> {
    let n = nodes.len();
    let mut c = vec![vec![0.0; n]; max_derivative + 1];
    if n == 0 {
        return c;
    }
    c[0][0] = 1.0;
    let mut c1 = 1.0;
    let mut c4 = nodes[0] - z;
    for i in 1..n {
        let highest = i.min(max_derivative);
        let mut c2 = 1.0;
        let c5 = c4;
        c4 = nodes[i] - z;
        for j in 0..i {
            let c3 = nodes[i] - nodes[j];
            c2 *= c3;
            if j == i - 1 {
                for k in (1..=highest).rev() {
                    c[k][i] = c1 * (k as f64 * c[k - 1][i - 1] - c5 * c[k][i - 1]) / c2;
                }
                c[0][i] = -c1 * c5 * c[0][i - 1] / c2;
            }
            for k in (1..=highest).rev() {
                c[k][j] = (c4 * c[k][j] - k as f64 * c[k - 1][j]) / c3;
            }
            c[0][j] = c4 * c[0][j] / c3;
        }
        c1 = c2;
    }
    c
}

/// Returns the weights of the `derivative`-th derivative at `z` on the given nodes, with entries that
/// are rounding noise (below `1e-13` times the largest weight) set to exactly zero.
pub fn derivative_weights(z: f64, nodes: &[f64], derivative: usize) -> Vec<f64> {
    let mut weights = fornberg_weights(z, nodes, derivative).swap_remove(derivative);
    let largest = weights.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    for w in &mut weights {
        if w.abs() < 1e-13 * largest {
            *w = 0.0;
        }
    }
    weights
}

/// Returns the radius of the centered formula for the `derivative`-th derivative with accuracy
/// `order` (even): `⌊(derivative + 1) / 2⌋ − 1 + order / 2`.
pub fn centered_radius(derivative: usize, order: usize) -> usize {
    derivative.div_ceil(2) - 1 + order / 2
}

/// Returns the centered weights at offsets `−r ..= r` for unit spacing.
///
/// The exact weights are symmetric for even derivatives and antisymmetric for odd ones, but
/// Fornberg's recurrence rounds the two weights of `±k` differently in the last bits. Each pair is
/// replaced by the mean of its magnitudes, so `w[−k] = ±w[k]` is exact and code generation can
/// compute `w·(u[i−k] ± u[i+k])` with one multiplication.
pub fn centered_weights(derivative: usize, order: usize) -> Vec<f64> {
    let radius = centered_radius(derivative, order);
    let nodes: Vec<f64> = (-(radius as i64)..=radius as i64)
        .map(|i| i as f64)
        .collect();
    let mut weights = derivative_weights(0.0, &nodes, derivative);
    let sign = if derivative.is_multiple_of(2) {
        1.0
    } else {
        -1.0
    };
    for k in 1..=radius {
        let mean = 0.5 * (weights[radius + k] + sign * weights[radius - k]);
        weights[radius + k] = mean;
        weights[radius - k] = sign * mean;
    }
    if sign < 0.0 {
        weights[radius] = 0.0;
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{actual:?} != {expected:?}");
        }
    }

    #[test]
    fn second_derivative_order_two() {
        assert_close(&centered_weights(2, 2), &[1.0, -2.0, 1.0]);
    }

    #[test]
    fn second_derivative_order_four() {
        let expected = [-1.0 / 12.0, 4.0 / 3.0, -5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0];
        assert_close(&centered_weights(2, 4), &expected);
    }

    #[test]
    fn first_derivative_order_eight() {
        let expected = [
            1.0 / 280.0,
            -4.0 / 105.0,
            1.0 / 5.0,
            -4.0 / 5.0,
            0.0,
            4.0 / 5.0,
            -1.0 / 5.0,
            4.0 / 105.0,
            -1.0 / 280.0,
        ];
        assert_close(&centered_weights(1, 8), &expected);
    }

    #[test]
    fn centered_weights_are_exactly_symmetric() {
        for derivative in 1..=4 {
            for order in [2, 4, 6, 8] {
                let weights = centered_weights(derivative, order);
                let radius = weights.len() / 2;
                let sign = if derivative.is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                };
                for k in 1..=radius {
                    assert_eq!(
                        weights[radius - k].to_bits(),
                        (sign * weights[radius + k]).to_bits(),
                        "derivative {derivative}, order {order}, offset {k}: {weights:?}"
                    );
                }
                if sign < 0.0 {
                    assert_eq!(
                        weights[radius], 0.0,
                        "derivative {derivative}, order {order}"
                    );
                }
            }
        }
    }

    #[test]
    fn second_order_upwind_first_derivative() {
        assert_close(
            &derivative_weights(0.0, &[-2.0, -1.0, 0.0], 1),
            &[0.5, -2.0, 1.5],
        );
    }

    #[test]
    fn interpolation_weights_reproduce_cubic() {
        let nodes = [0.0, 1.0, 2.0, 3.0];
        let weights = derivative_weights(-1.5, &nodes, 0);
        let cubic = |x: f64| 2.0 * x * x * x - x + 0.5;
        let value: f64 = weights.iter().zip(&nodes).map(|(w, x)| w * cubic(*x)).sum();
        assert!((value - cubic(-1.5)).abs() < 1e-12);
    }

    #[test]
    fn radius_matches_point_count() {
        assert_eq!(centered_radius(1, 2), 1);
        assert_eq!(centered_radius(2, 2), 1);
        assert_eq!(centered_radius(3, 2), 2);
        assert_eq!(centered_radius(4, 2), 2);
        assert_eq!(centered_radius(2, 8), 4);
    }
}
