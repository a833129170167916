//! Optimizers: convergence on a quadratic and on Rosenbrock, Adam against hand-computed steps,
//! L-BFGS to 1e-8, and the pseudoinverse readout against known solutions.

use ndarray::{array, Array2};
use npdec_learn::data::ShuffleRng;
use npdec_learn::optim::{
    fit_linear_readout, minimize, Adam, Lbfgs, LbfgsOptions, OptimizerState, Sgd, StepOptimizer,
    Termination,
};
use npdec_symbolic::model::Optimizer;

/// `f(x) = Σ c_i (x_i − i)²` with curvatures `c = [1, 4, 10]`.
fn quadratic(x: &[f64], gradient: &mut [f64]) -> f64 {
    let curvature = [1.0, 4.0, 10.0];
    let mut value = 0.0;
    for i in 0..3 {
        let d = x[i] - i as f64;
        value += curvature[i] * d * d;
        gradient[i] = 2.0 * curvature[i] * d;
    }
    value
}

/// The Rosenbrock function in `n` dimensions, `Σ 100 (x_{i+1} − x_i²)² + (1 − x_i)²`.
fn rosenbrock(x: &[f64], gradient: &mut [f64]) -> f64 {
    let mut value = 0.0;
    gradient.iter_mut().for_each(|g| *g = 0.0);
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        value += 100.0 * a * a + b * b;
        gradient[i] += -400.0 * a * x[i] - 2.0 * b;
        gradient[i + 1] += 200.0 * a;
    }
    value
}

fn distance_to(x: &[f64], target: &[f64]) -> f64 {
    x.iter()
        .zip(target)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
}

#[test]
fn sgd_momentum_converges_on_quadratic() {
    let mut sgd = Sgd::new(0.02, 0.9).unwrap();
    let mut x = vec![5.0, -3.0, 2.0];
    let mut gradient = vec![0.0; 3];
    for _ in 0..500 {
        quadratic(&x, &mut gradient);
        sgd.step(&mut x, &gradient).unwrap();
    }
    assert!(distance_to(&x, &[0.0, 1.0, 2.0]) < 1e-8, "{x:?}");
}

#[test]
fn sgd_momentum_update_by_hand() {
    let mut sgd = Sgd::new(0.1, 0.5).unwrap();
    let mut x = vec![1.0];
    sgd.step(&mut x, &[2.0]).unwrap();
    assert_eq!(sgd.velocity, vec![2.0]);
    assert!((x[0] - 0.8).abs() < 1e-15);
    sgd.step(&mut x, &[2.0]).unwrap();
    assert_eq!(sgd.velocity, vec![3.0]);
    assert!((x[0] - 0.5).abs() < 1e-15);
}

#[test]
fn adam_converges_on_quadratic() {
    let mut adam = Adam::new(0.05, 0.9, 0.999, 1e-8).unwrap();
    let mut x = vec![5.0, -3.0, 2.0];
    let mut gradient = vec![0.0; 3];
    for _ in 0..3000 {
        quadratic(&x, &mut gradient);
        adam.step(&mut x, &gradient).unwrap();
    }
    assert!(distance_to(&x, &[0.0, 1.0, 2.0]) < 1e-4, "{x:?}");
}

#[test]
fn adam_bias_correction_by_hand() {
    // With bias correction the first step is −α·sign(g) (up to ε) whatever the gradient's size.
    let (lr, beta1, beta2, eps) = (0.1, 0.9, 0.999, 1e-8);
    let mut adam = Adam::new(lr, beta1, beta2, eps).unwrap();
    let mut x = vec![1.0, 1.0];
    adam.step(&mut x, &[1e-3, -50.0]).unwrap();
    assert!(
        (x[0] - (1.0 - lr * 1e-3 / (1e-3 + eps))).abs() < 1e-15,
        "{x:?}"
    );
    assert!(
        (x[1] - (1.0 + lr * 50.0 / (50.0 + eps))).abs() < 1e-15,
        "{x:?}"
    );

    // Second step with gradient 2 after gradient 1, computed from Algorithm 1 by hand:
    // m = 0.9·0.1 + 0.1·2 = 0.29, v = 0.999·0.001 + 0.001·4 = 0.004999,
    // m̂ = 0.29 / 0.19, v̂ = 0.004999 / 0.001999.
    let mut adam = Adam::new(lr, beta1, beta2, eps).unwrap();
    let mut x = vec![0.0];
    adam.step(&mut x, &[1.0]).unwrap();
    let after_first = x[0];
    adam.step(&mut x, &[2.0]).unwrap();
    let m_hat: f64 = 0.29 / (1.0 - 0.81);
    let v_hat: f64 = 0.004999 / (1.0 - 0.998001);
    let expected = after_first - lr * m_hat / (v_hat.sqrt() + eps);
    assert!((x[0] - expected).abs() < 1e-14, "{} vs {expected}", x[0]);
    assert_eq!(adam.step_count, 2);
}

#[test]
fn adam_rejects_bad_settings_and_lengths() {
    assert!(Adam::new(0.0, 0.9, 0.999, 1e-8).is_err());
    assert!(Adam::new(0.1, 1.0, 0.999, 1e-8).is_err());
    assert!(Adam::new(0.1, 0.9, 0.999, 0.0).is_err());
    assert!(Sgd::new(f64::NAN, 0.0).is_err());
    assert!(Sgd::new(0.1, -0.1).is_err());

    let mut adam = Adam::new(0.1, 0.9, 0.999, 1e-8).unwrap();
    let message = adam.step(&mut [0.0; 2], &[0.0; 3]).unwrap_err().to_string();
    assert!(
        message.contains("2 parameters but a gradient of length 3"),
        "{message}"
    );
    adam.step(&mut [0.0; 2], &[1.0; 2]).unwrap();
    assert!(adam.step(&mut [0.0; 3], &[1.0; 3]).is_err());
}

#[test]
fn length_errors_count_one_in_singular() {
    let mut adam = Adam::new(0.1, 0.9, 0.999, 1e-8).unwrap();
    let message = adam.step(&mut [0.0; 1], &[0.0; 2]).unwrap_err().to_string();
    assert!(
        message.contains("Adam: 1 parameter but a gradient of length 2"),
        "{message}"
    );
    adam.step(&mut [0.0; 1], &[1.0; 1]).unwrap();
    let message = adam.step(&mut [0.0; 2], &[1.0; 2]).unwrap_err().to_string();
    assert!(
        message.contains("the state was built for 1 parameter, this step has 2"),
        "{message}"
    );
    let message = adam
        .step_segments(&mut [&mut [0.0; 2][..]], &[&[1.0; 2][..]], 0.0)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("Adam: the state was built for 1 parameter, this step has 2"),
        "{message}"
    );

    let mut sgd = Sgd::new(0.1, 0.9).unwrap();
    sgd.step(&mut [0.0; 1], &[1.0; 1]).unwrap();
    let message = sgd.step(&mut [0.0; 3], &[1.0; 3]).unwrap_err().to_string();
    assert!(
        message.contains("the state was built for 1 parameter, this step has 3"),
        "{message}"
    );
}

#[test]
fn adam_segments_equal_flat_step_with_l2() {
    // Three segments longer than one parallel chunk in total, with values of both signs.
    let lengths = [5usize, 40_000, 7];
    let total: usize = lengths.iter().sum();
    let values: Vec<f64> = (0..total)
        .map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0)
        .collect();
    let gradient: Vec<f64> = (0..total)
        .map(|i| ((i * 53 % 97) as f64 - 48.0) / 9.0)
        .collect();
    let l2 = 1e-2;

    let mut flat_adam = Adam::new(1e-2, 0.9, 0.999, 1e-8).expect("valid settings");
    let mut flat = values.clone();
    let mut segmented_adam = flat_adam.clone();
    let mut segments: Vec<Vec<f64>> = Vec::new();
    let mut gradient_segments: Vec<Vec<f64>> = Vec::new();
    let mut start = 0;
    for len in lengths {
        segments.push(values[start..start + len].to_vec());
        gradient_segments.push(gradient[start..start + len].to_vec());
        start += len;
    }
    for _ in 0..3 {
        let mut with_l2 = gradient.clone();
        npdec_learn::loss::add_l2_gradient(l2, &flat, &mut with_l2).expect("equal lengths");
        flat_adam.step(&mut flat, &with_l2).expect("equal lengths");
        let mut targets: Vec<&mut [f64]> = segments.iter_mut().map(|s| s.as_mut_slice()).collect();
        let gradients: Vec<&[f64]> = gradient_segments.iter().map(|g| g.as_slice()).collect();
        segmented_adam
            .step_segments(&mut targets, &gradients, l2)
            .expect("matching segments");
    }
    assert_eq!(segments.concat(), flat);
    assert_eq!(segmented_adam, flat_adam);
}

/// The rounded copies and finiteness flags come from the same pass as the update: the values
/// equal `step_segments`, each copy is its segment rounded to `f32`, and only the segment whose
/// gradient overflows is flagged.
#[test]
fn adam_rounded_segments_match_plain_step() {
    let segments = [vec![0.5, -1.25, 3.0], vec![2.0; 40_000], vec![-0.75, 0.125]];
    let gradients = [
        vec![0.1, -0.2, 0.3],
        vec![1e-3; 40_000],
        vec![f64::INFINITY, 0.5],
    ];
    let gradient_slices: Vec<&[f64]> = gradients.iter().map(|g| g.as_slice()).collect();
    let mut plain = segments.clone();
    let mut fused = segments.clone();
    let mut copies: Vec<Vec<f32>> = segments.iter().map(|s| vec![0.0; s.len()]).collect();
    let mut plain_adam = Adam::new(1e-2, 0.9, 0.999, 1e-8).expect("valid settings");
    let mut fused_adam = plain_adam.clone();
    for _ in 0..2 {
        let mut targets: Vec<&mut [f64]> = plain.iter_mut().map(|s| s.as_mut_slice()).collect();
        plain_adam
            .step_segments(&mut targets, &gradient_slices, 1e-3)
            .expect("matching segments");
        let mut targets: Vec<&mut [f64]> = fused.iter_mut().map(|s| s.as_mut_slice()).collect();
        let mut rounded: Vec<&mut [f32]> = copies.iter_mut().map(|c| c.as_mut_slice()).collect();
        let finite = fused_adam
            .step_segments_rounded(&mut targets, &gradient_slices, &mut rounded, 1e-3)
            .expect("matching segments");
        assert_eq!(finite, vec![true, true, false]);
    }
    // Bit patterns, so that the NaN of the overflowed segment compares too.
    let bits = |segments: &[Vec<f64>]| -> Vec<u64> {
        segments.concat().iter().map(|v| v.to_bits()).collect()
    };
    assert_eq!(bits(&fused), bits(&plain));
    assert!(fused[2][0].is_nan());
    for (copy, values) in copies.iter().zip(&fused) {
        let copy: Vec<u32> = copy.iter().map(|v| v.to_bits()).collect();
        let expected: Vec<u32> = values.iter().map(|v| (*v as f32).to_bits()).collect();
        assert_eq!(copy, expected);
    }
    let mut targets: Vec<&mut [f64]> = fused.iter_mut().map(|s| s.as_mut_slice()).collect();
    let mut short = vec![0.0f32; 1];
    let error = fused_adam
        .step_segments_rounded(
            &mut targets,
            &gradient_slices,
            &mut [short.as_mut_slice()],
            0.0,
        )
        .expect_err("one rounded copy for three segments");
    assert!(error.to_string().contains("rounded copies"), "{error}");
}

#[test]
fn adam_segments_reject_mismatched_lengths() {
    let mut adam = Adam::new(1e-2, 0.9, 0.999, 1e-8).expect("valid settings");
    let mut parameters = vec![0.0; 3];
    let gradient = vec![0.0; 2];
    let error = adam
        .step_segments(
            &mut [parameters.as_mut_slice()],
            &[gradient.as_slice()],
            0.0,
        )
        .expect_err("lengths differ");
    assert!(error.to_string().contains("[3]"), "{error}");
    let mut other = vec![0.0; 2];
    adam.step_segments(&mut [other.as_mut_slice()], &[gradient.as_slice()], 0.0)
        .expect("first step sizes the state");
    let error = adam
        .step_segments(&mut [parameters.as_mut_slice()], &[&[0.0; 3][..]], 0.0)
        .expect_err("the state has 2 entries");
    assert!(error.to_string().contains("built for 2"), "{error}");
}

#[test]
fn step_optimizer_from_model_settings() {
    let sgd = StepOptimizer::from_model(&Optimizer::Sgd {
        lr: 0.1,
        momentum: 0.9,
    })
    .unwrap();
    assert!(matches!(sgd, StepOptimizer::Sgd(_)));
    let adam = StepOptimizer::from_model(&Optimizer::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    })
    .unwrap();
    assert!(matches!(adam, StepOptimizer::Adam(_)));
    let message = StepOptimizer::from_model(&Optimizer::Lbfgs {
        max_iterations: 10,
        history: 5,
        tolerance: 1e-6,
    })
    .unwrap_err()
    .to_string();
    assert!(message.contains("call `minimize`"), "{message}");
    assert!(StepOptimizer::from_model(&Optimizer::Pseudoinverse { ridge: 0.0 }).is_err());
}

#[test]
fn lbfgs_solves_quadratic() {
    let options = LbfgsOptions {
        gradient_tolerance: 1e-12,
        ..LbfgsOptions::default()
    };
    let result = minimize(quadratic, vec![5.0, -3.0, 2.0], &options).unwrap();
    assert_eq!(result.termination, Termination::Converged);
    assert!(
        distance_to(&result.x, &[0.0, 1.0, 2.0]) < 1e-12,
        "{:?}",
        result.x
    );
    assert!(result.iterations < 20, "{} iterations", result.iterations);
}

#[test]
fn lbfgs_solves_rosenbrock_to_1e8() {
    let options = LbfgsOptions {
        gradient_tolerance: 1e-10,
        ..LbfgsOptions::default()
    };
    let result = minimize(rosenbrock, vec![-1.2, 1.0], &options).unwrap();
    assert_eq!(result.termination, Termination::Converged, "{result:?}");
    assert!(distance_to(&result.x, &[1.0, 1.0]) < 1e-8, "{result:?}");

    let start: Vec<f64> = (0..10)
        .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
        .collect();
    let result = minimize(rosenbrock, start, &options).unwrap();
    assert_eq!(result.termination, Termination::Converged, "{result:?}");
    assert!(distance_to(&result.x, &[1.0; 10]) < 1e-8, "{result:?}");
}

#[test]
fn lbfgs_steps_satisfy_strong_wolfe() {
    let options = LbfgsOptions::default();
    let mut objective = rosenbrock;
    let mut state = Lbfgs::start(vec![-1.2, 1.0], options.clone(), &mut objective).unwrap();
    for _ in 0..30 {
        let (x0, value0, gradient0) = (state.x.clone(), state.value, state.gradient.clone());
        if state.iterate(&mut objective).unwrap().is_some() {
            break;
        }
        let step: Vec<f64> = state.x.iter().zip(&x0).map(|(a, b)| a - b).collect();
        let slope0: f64 = step.iter().zip(&gradient0).map(|(s, g)| s * g).sum();
        let slope: f64 = step.iter().zip(&state.gradient).map(|(s, g)| s * g).sum();
        assert!(slope0 < 0.0, "not a descent step");
        assert!(
            state.value <= value0 + options.c1 * slope0,
            "sufficient decrease fails"
        );
        assert!(
            slope.abs() <= options.c2 * slope0.abs() * (1.0 + 1e-12),
            "curvature fails"
        );
    }
}

#[test]
fn lbfgs_state_resumes_identically() {
    let options = LbfgsOptions::default();
    let mut objective = rosenbrock;
    let mut state = Lbfgs::start(vec![-1.2, 1.0], options, &mut objective).unwrap();
    for _ in 0..7 {
        state.iterate(&mut objective).unwrap();
    }
    let saved = serde_json::to_string(&OptimizerState::Lbfgs(state.clone())).unwrap();
    for _ in 0..5 {
        state.iterate(&mut objective).unwrap();
    }
    let OptimizerState::Lbfgs(mut resumed) = serde_json::from_str(&saved).unwrap() else {
        panic!("expected an L-BFGS state");
    };
    for _ in 0..5 {
        resumed.iterate(&mut objective).unwrap();
    }
    assert_eq!(resumed, state);
}

#[test]
fn lbfgs_rejects_non_finite_start_and_bad_options() {
    let message = minimize(|_, _| f64::NAN, vec![0.0], &LbfgsOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("not finite at the starting point"),
        "{message}"
    );
    let bad = LbfgsOptions {
        c1: 0.95,
        ..LbfgsOptions::default()
    };
    assert!(minimize(quadratic, vec![0.0; 3], &bad).is_err());
    assert!(LbfgsOptions::from_model(&Optimizer::Lbfgs {
        max_iterations: 10,
        history: 0,
        tolerance: 1e-6
    })
    .is_err());
}

#[test]
fn lbfgs_stops_at_iteration_limit() {
    let options = LbfgsOptions {
        max_iterations: 3,
        ..LbfgsOptions::default()
    };
    let result = minimize(rosenbrock, vec![-1.2, 1.0], &options).unwrap();
    assert_eq!(result.termination, Termination::MaxIterations);
    assert_eq!(result.iterations, 3);
}

#[test]
fn readout_recovers_known_matrix() {
    // Y = V H exactly, with H of full row rank: the fit returns V.
    let mut rng = ShuffleRng::from_seed(9);
    let hidden = Array2::from_shape_fn((4, 30), |_| rng.uniform() - 0.5);
    let readout = array![[1.0, -2.0, 0.5, 3.0], [0.0, 1.5, -1.0, 2.0]];
    let targets = readout.dot(&hidden);
    let fitted = fit_linear_readout(hidden.view(), targets.view(), 0.0).unwrap();
    let error = (&fitted - &readout)
        .iter()
        .fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(error < 1e-12, "error {error}");
}

#[test]
fn readout_rank_deficient_gives_minimum_norm() {
    // The third hidden row repeats the first, so only w₀ + w₂ is determined; the minimum-norm
    // solution splits it evenly.
    let hidden = array![
        [1.0, 2.0, 3.0, 4.0],
        [1.0, -1.0, 1.0, -1.0],
        [1.0, 2.0, 3.0, 4.0]
    ];
    let truth = array![[2.0, 1.0, 0.0]];
    let targets = truth.dot(&hidden);
    let fitted = fit_linear_readout(hidden.view(), targets.view(), 0.0).unwrap();
    let expected = array![[1.0, 1.0, 1.0]];
    let error = (&fitted - &expected)
        .iter()
        .fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(error < 1e-12, "fitted {fitted}");
}

#[test]
fn readout_with_fewer_samples_than_features() {
    // With 3 features and 2 samples the fit interpolates: V = Y (HᵀH)⁻¹ Hᵀ = [0, 1, 1] by hand.
    let hidden = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    let targets = array![[1.0, 2.0]];
    let fitted = fit_linear_readout(hidden.view(), targets.view(), 0.0).unwrap();
    let expected = array![[0.0, 1.0, 1.0]];
    let error = (&fitted - &expected)
        .iter()
        .fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(error < 1e-14, "fitted {fitted}");
}

#[test]
fn readout_ridge_matches_normal_equations() {
    // V = Y Hᵀ (H Hᵀ + λ I)⁻¹, solved here by hand for a 2 × 3 hidden matrix.
    let hidden = array![[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]];
    let targets = array![[1.0, 2.0, 3.0]];
    let ridge = 0.5;
    // H Hᵀ + λ I = [[2.5, 1], [1, 2.5]], Y Hᵀ = [4, 5].
    let determinant = 2.5 * 2.5 - 1.0;
    let expected = array![[
        (4.0 * 2.5 - 5.0) / determinant,
        (5.0 * 2.5 - 4.0) / determinant
    ]];
    let fitted = fit_linear_readout(hidden.view(), targets.view(), ridge).unwrap();
    let error = (&fitted - &expected)
        .iter()
        .fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(error < 1e-14, "fitted {fitted}, expected {expected}");
}

#[test]
fn readout_rejects_bad_input() {
    let hidden = Array2::<f64>::zeros((2, 3));
    let message = fit_linear_readout(hidden.view(), Array2::zeros((1, 4)).view(), 0.0)
        .unwrap_err()
        .to_string();
    assert!(message.contains("3 samples"), "{message}");
    assert!(fit_linear_readout(hidden.view(), Array2::zeros((1, 3)).view(), -1.0).is_err());
    let mut with_nan = Array2::<f64>::zeros((2, 3));
    with_nan[[0, 0]] = f64::NAN;
    assert!(fit_linear_readout(with_nan.view(), Array2::zeros((1, 3)).view(), 0.0).is_err());
}
