//! `npdec build --emit diffractive` end to end on `examples/digits_d2nn.npde`: `npdec run` trains
//! the small diffractive network, the build writes its masks, height maps, layout and GDSII, and
//! the independent angular-spectrum re-simulation of the emitted masks classifies the test split
//! within one percentage point of the digital model.

use ndarray::Array2;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("build-diffractive")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn npdec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npdec"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("npdec runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

fn number(value: &serde_json::Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {value}"))
}

#[test]
fn digits_d2nn_masks_resimulate_within_one_point() {
    let dir = scratch("digits_d2nn");
    let run = dir.join("run");
    let build = dir.join("build");
    let run_dir = run.to_str().expect("UTF-8 path");
    let build_dir = build.to_str().expect("UTF-8 path");

    let trained = npdec(&[
        "run",
        "examples/digits_d2nn.npde",
        "--out",
        run_dir,
        "--epochs",
        "2",
        "--quiet",
    ]);
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    let summary = read_json(&run.join("summary.json"));
    let trained_accuracy = number(&summary["metrics"], "test_accuracy");

    let built = npdec(&[
        "build",
        "examples/digits_d2nn.npde",
        "--emit",
        "diffractive",
        "--checkpoint",
        run_dir,
        "-o",
        build_dir,
        "--index",
        "1.5",
    ]);
    assert!(built.status.success(), "{}", text(&built.stderr));
    assert!(
        text(&built.stderr).contains("re-simulated"),
        "{}",
        text(&built.stderr)
    );

    // The digital model of the build is the trained run, and it learned well above chance (10 %).
    let verification = read_json(&build.join("verification.json"));
    assert_eq!(verification["test_samples"], 357);
    let digital = number(&verification, "digital_accuracy");
    let simulated = number(&verification, "simulated_accuracy");
    assert!(
        (digital - trained_accuracy).abs() < 1e-12,
        "{digital} vs {trained_accuracy}"
    );
    assert!(digital > 0.3, "digital accuracy {digital}");
    assert!(
        (simulated - digital).abs() <= 0.01,
        "re-simulated {simulated} vs digital {digital}"
    );
    assert!(
        (number(&verification, "difference_points") - 100.0 * (simulated - digital)).abs() < 1e-9
    );

    let layout = read_json(&build.join("layout.json"));
    let wavelength = number(&layout, "wavelength_m");
    assert!((wavelength - 0.532e-6).abs() < 1e-15, "{wavelength}");
    assert!((number(&layout, "pixel_pitch_m") - 4e-6).abs() < 1e-15);
    assert_eq!(layout["pixels"], serde_json::json!([32, 32]));
    assert_eq!(layout["detectors"].as_array().expect("detectors").len(), 10);
    let distances: Vec<f64> = layout["distances_m"]
        .as_array()
        .expect("distances")
        .iter()
        .map(|d| d.as_f64().expect("distance"))
        .collect();
    for (d, expected) in distances.iter().zip([50e-6, 100e-6, 100e-6, 50e-6]) {
        assert!((d - expected).abs() < 1e-15, "{distances:?}");
    }
    assert_eq!(distances.len(), 4);

    // Each mask's phase lies in [0, 2π) and its height is φ/(2π) · λ/(n − 1).
    let layers = layout["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 3);
    let mut trained_masks = 0;
    for n in 0..3 {
        let phase: Array2<f64> =
            ndarray_npy::read_npy(build.join(format!("mask_{n}.phase.npy"))).expect("phase NPY");
        let height: Array2<f64> =
            ndarray_npy::read_npy(build.join(format!("mask_{n}.height.npy"))).expect("height NPY");
        assert_eq!(phase.dim(), (32, 32));
        assert!(phase.iter().all(|p| (0.0..2.0 * PI).contains(p)));
        for (p, h) in phase.iter().zip(&height) {
            assert!(
                (h - p / (2.0 * PI) * wavelength / 0.5).abs() < 1e-18,
                "{p} {h}"
            );
        }
        if phase.iter().any(|p| p.abs() > 1e-6) {
            trained_masks += 1;
        }
        let png = std::fs::read(build.join(format!("mask_{n}.phase.png"))).expect("PNG");
        assert!(png.starts_with(b"\x89PNG"));
    }
    assert_eq!(trained_masks, 3, "every mask was trained away from zero");

    // The GDSII library has one structure per mask plus the detectors, in a 1 nm database unit.
    let library = gds21::GdsLibrary::load(build.join("diffractive.gds")).expect("GDSII reads");
    assert!((library.units.db_unit() - 1e-9).abs() < 1e-21);
    let names: Vec<&str> = library.structs.iter().map(|s| s.name.as_str()).collect();
    for expected in ["mask_0", "mask_1", "mask_2", "detectors"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
