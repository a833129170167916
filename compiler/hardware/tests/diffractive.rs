//! The independent angular-spectrum propagator and the diffractive emitter.

use std::f64::consts::PI;

use ndarray::Array2;
use npdec_hardware::diffractive::{
    emit_diffractive, simulated_accuracy, AngularSpectrum, DiffractiveLayout, DiffractiveOptions,
    Kernel, Rect, Simulator,
};
use num_complex::Complex64;

const WAVELENGTH: f64 = 0.532e-6;
const PITCH: f64 = 4e-6;

/// A Gaussian `exp(−r²/w0²)` centred in an `n × n` window of pixel `PITCH`.
fn gaussian(n: usize, w0: f64) -> Array2<Complex64> {
    Array2::from_shape_fn((n, n), |(r, c)| {
        let (x, y) = centred(n, r, c);
        Complex64::new((-(x * x + y * y) / (w0 * w0)).exp(), 0.0)
    })
}

fn centred(n: usize, r: usize, c: usize) -> (f64, f64) {
    let middle = (n as f64 - 1.0) / 2.0;
    ((c as f64 - middle) * PITCH, (r as f64 - middle) * PITCH)
}

fn energy(field: &Array2<Complex64>) -> f64 {
    field.iter().map(|x| x.norm_sqr()).sum()
}

#[test]
fn propagation_conserves_energy_while_the_beam_stays_in_the_window() {
    let field = gaussian(64, 20e-6);
    for kernel in [Kernel::Exact, Kernel::Fresnel] {
        let propagator = AngularSpectrum::new(64, 64, PITCH, WAVELENGTH, 1e-3, kernel);
        let out = propagator.propagate(&field);
        let relative = (energy(&out) - energy(&field)).abs() / energy(&field);
        assert!(
            relative < 1e-9,
            "{kernel:?}: energy changed by {relative:e}"
        );
    }
}

#[test]
fn light_that_leaves_the_window_is_lost_not_wrapped() {
    // A narrow beam at the left edge tilted outwards: after propagation most of it has left.
    let n = 32;
    // exp(+i·a·x) travels towards −x in the exp(i(ωt − kz)) convention; a is half the Nyquist
    // wave number.
    let tilt = 0.5 * PI / PITCH;
    let field = Array2::from_shape_fn((n, n), |(r, c)| {
        let (x, y) = ((c as f64 - 4.0) * PITCH, (r as f64 - 16.0) * PITCH);
        Complex64::from_polar((-(x * x + y * y) / (8e-6f64).powi(2)).exp(), tilt * x)
    });
    let propagator = AngularSpectrum::new(n, n, PITCH, WAVELENGTH, 2e-3, Kernel::Exact);
    let out = propagator.propagate(&field);
    let right_half: f64 = out
        .indexed_iter()
        .filter(|((_, c), _)| *c >= n / 2)
        .map(|(_, x)| x.norm_sqr())
        .sum();
    assert!(energy(&out) < 0.2 * energy(&field));
    assert!(
        right_half < 1e-3 * energy(&field),
        "wrapped: {right_half:e}"
    );
}

/// The paraxial Gaussian beam `E = (w0²/W²)·exp(−r²/W²)` with `W² = w0² − 2iz/k`.
fn gaussian_beam(n: usize, w0: f64, z: f64) -> Array2<Complex64> {
    let k = 2.0 * PI / WAVELENGTH;
    let w2 = Complex64::new(w0 * w0, -2.0 * z / k);
    Array2::from_shape_fn((n, n), |(r, c)| {
        let (x, y) = centred(n, r, c);
        (w0 * w0 / w2) * (-(x * x + y * y) / w2).exp()
    })
}

fn max_difference(a: &Array2<Complex64>, b: &Array2<Complex64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).norm())
        .fold(0.0, f64::max)
}

#[test]
fn gaussian_beam_matches_the_analytic_solution() {
    // w0 = 16 µm: zR = π w0²/λ ≈ 1.5 mm; propagate to 2 zR, where the width grows by √5.
    let (n, w0) = (128, 16e-6);
    let z_r = PI * w0 * w0 / WAVELENGTH;
    let z = 2.0 * z_r;
    let field = gaussian(n, w0);
    let exact = gaussian_beam(n, w0, z);
    let fresnel = AngularSpectrum::new(n, n, PITCH, WAVELENGTH, z, Kernel::Fresnel);
    let error = max_difference(&fresnel.propagate(&field), &exact);
    assert!(error < 1e-9, "Fresnel kernel: max error {error:e}");
    // The exact kernel differs from the paraxial solution by the nonparaxial terms, of order
    // k·z·θ⁴ with θ ≈ λ/(π w0) ≈ 0.011.
    let angular = AngularSpectrum::new(n, n, PITCH, WAVELENGTH, z, Kernel::Exact);
    let error = max_difference(&angular.propagate(&field), &exact);
    assert!(error < 2e-3, "exact kernel: max error {error:e}");
    // Peak intensity on the axis falls as (w0/w)² = 1/5.
    let centre = angular.propagate(&field)[[n / 2, n / 2]].norm_sqr();
    let expected = gaussian_beam(n, w0, z)[[n / 2, n / 2]].norm_sqr();
    assert!((centre - expected).abs() < 1e-3);
}

#[test]
fn agrees_with_the_runtime_split_step_on_a_small_grid() {
    // The runtime's Fourier step of ∂E/∂z = −i/(2k) ∇²E on a periodic 32 × 32 grid, against the
    // zero-padded Fresnel propagator, for a beam that stays inside the window.
    let (n, w0, z) = (32, 12e-6, 0.6e-3);
    let k = 2.0 * PI / WAVELENGTH;
    let field = gaussian(n, w0);
    let length = n as f64 * PITCH;
    let step = npdec_runtime::train::spectral::SpectralStep::new(
        &[n, n],
        &[length, length],
        (0.0, -1.0 / (2.0 * k)),
        z,
    );
    let mut rows = Array2::zeros((1, 2 * n * n));
    for (i, x) in field.iter().enumerate() {
        rows[[0, i]] = x.re;
        rows[[0, n * n + i]] = x.im;
    }
    step.apply(&mut rows, false);
    let runtime = Array2::from_shape_fn((n, n), |(r, c)| {
        Complex64::new(rows[[0, r * n + c]], rows[[0, n * n + r * n + c]])
    });
    let fresnel = AngularSpectrum::new(n, n, PITCH, WAVELENGTH, z, Kernel::Fresnel);
    let error = max_difference(&fresnel.propagate(&field), &runtime);
    assert!(error < 1e-8, "max difference {error:e}");
    let exact = AngularSpectrum::new(n, n, PITCH, WAVELENGTH, z, Kernel::Exact);
    let error = max_difference(&exact.propagate(&field), &runtime);
    assert!(error < 1e-3, "exact kernel: max difference {error:e}");
}

fn two_class_layout() -> DiffractiveLayout {
    // One mask that tilts the light to the right half: a linear phase ramp.
    let n = 32;
    let ramp = 0.3 * PI; // radians per pixel
    let mask = Array2::from_shape_fn((n, n), |(r, c)| {
        if r < 2 || r >= n - 2 || c < 2 || c >= n - 2 {
            Complex64::new(0.0, 0.0)
        } else {
            Complex64::from_polar(1.0, ramp * c as f64)
        }
    });
    let half = n as f64 / 2.0 * PITCH;
    DiffractiveLayout {
        wavelength: WAVELENGTH,
        pitch: PITCH,
        origin: (-half + PITCH / 2.0, -half + PITCH / 2.0),
        masks: vec![mask],
        distances: vec![0.0, 1e-3],
        detectors: vec![
            Rect {
                x_min: -half,
                x_max: 0.0,
                y_min: -half,
                y_max: half,
            },
            Rect {
                x_min: 0.0,
                x_max: half,
                y_min: -half,
                y_max: half,
            },
        ],
    }
}

#[test]
fn a_phase_ramp_steers_light_onto_the_detector_it_points_at() {
    let layout = two_class_layout();
    let input = gaussian(32, 20e-6);
    let simulator = Simulator::new(&layout, Kernel::Exact).unwrap();
    let powers = simulator.detector_powers(&input);
    // exp(+i·a·x) is a wave travelling towards −x in the exp(i(ωt − kz)) convention.
    assert!(powers[0] > 5.0 * powers[1], "{powers:?}");
    assert_eq!(simulator.classify(&input), 0);
    let accuracy = simulated_accuracy(&layout, Kernel::Exact, &[input.clone(), input], &[0, 1]);
    assert_eq!(accuracy.unwrap(), 0.5);
}

#[test]
fn emits_masks_heights_layout_and_gds() {
    let layout = two_class_layout();
    let out = std::env::temp_dir().join(format!("npdec-diffractive-{}", std::process::id()));
    let options = DiffractiveOptions {
        index: 1.46,
        levels: 8,
    };
    let report = emit_diffractive(&layout, &options, &out).unwrap();
    assert_eq!(report.layers.len(), 1);
    assert_eq!(report.layers[0].opaque_pixels, 32 * 32 - 28 * 28);
    let phase: Array2<f64> = ndarray_npy::read_npy(&report.layers[0].phase_npy).unwrap();
    let height: Array2<f64> = ndarray_npy::read_npy(&report.layers[0].height_npy).unwrap();
    let delays = layout.phase_delays();
    for ((p, h), d) in phase.iter().zip(&height).zip(&delays[0]) {
        assert!((0.0..2.0 * PI).contains(p));
        assert_eq!(p, d);
        let expected = p / (2.0 * PI) * WAVELENGTH / 0.46;
        assert!((h - expected).abs() < 1e-18);
    }
    // The delay reproduces the transmission: exp(−iφ) = t inside the aperture.
    for (t, p) in layout.masks[0].iter().zip(&phase) {
        if t.norm() > 0.5 {
            assert!((Complex64::from_polar(1.0, -p) - t).norm() < 1e-12);
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("layout.json")).unwrap()).unwrap();
    assert_eq!(json["wavelength_m"], WAVELENGTH);
    assert_eq!(json["detectors"].as_array().unwrap().len(), 2);
    let png = std::fs::read(&report.layers[0].phase_png).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let library = gds21::GdsLibrary::load(&report.gds).unwrap();
    let names: Vec<&str> = library.structs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mask_0", "detectors"]);
    let opaque = library.structs[0]
        .elems
        .iter()
        .filter(|e| matches!(e, gds21::GdsElement::GdsBoundary(b) if b.layer == 100))
        .count();
    assert_eq!(opaque, 32 * 32 - 28 * 28);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn rejects_unusable_stacks_and_options() {
    let mut layout = two_class_layout();
    let out = std::env::temp_dir().join("npdec-diffractive-never-written");
    let bad_index = DiffractiveOptions {
        index: 1.0,
        levels: 8,
    };
    let error = emit_diffractive(&layout, &bad_index, &out).unwrap_err();
    assert!(error.to_string().contains("material index"), "{error}");
    layout.distances.pop();
    let error = emit_diffractive(&layout, &DiffractiveOptions::default(), &out).unwrap_err();
    assert!(error.to_string().contains("distances"), "{error}");
    assert!(!out.exists());
}

#[test]
fn phase_delays_stay_below_two_pi() {
    // A transmission with a tiny positive argument has a delay just below 0, which `rem_euclid`
    // alone would round up to exactly 2π.
    let mut layout = two_class_layout();
    layout.masks[0][(5, 5)] = Complex64::from_polar(1.0, 1e-17);
    layout.masks[0][(5, 6)] = Complex64::from_polar(1.0, -1e-17);
    let phases = layout.phase_delays();
    assert!(phases[0].iter().all(|p| (0.0..2.0 * PI).contains(p)));
    assert_eq!(phases[0][(5, 5)], 0.0);
    assert!((phases[0][(5, 6)] - 1e-17).abs() < 1e-30);
}
