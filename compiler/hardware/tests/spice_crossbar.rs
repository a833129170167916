//! Tests of the crossbar mapping and its SPICE netlist. The simulation test runs ngspice (Debian
//! package `ngspice`) in batch mode on an emitted netlist and checks that the column currents
//! reproduce `W x` to 1e-6 relative. Without ngspice the test fails when `CI` is set and prints a
//! skip note otherwise.

mod common;

use std::path::PathBuf;
use std::process::Command;

use ndarray::Array2;
use npdec_hardware::random::GaussianSource;
use npdec_hardware::spice::{map_crossbar, Crossbar};
use npdec_hardware::{emit_spice, CrossbarOptions, HardwareError};

fn output_folder(test: &str) -> PathBuf {
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("npdec-hardware")
        .join(test);
    let _ = std::fs::remove_dir_all(&folder);
    folder
}

fn random_weights(rows: usize, columns: usize, seed: u64) -> Array2<f64> {
    let mut source = GaussianSource::new(seed);
    Array2::from_shape_fn((rows, columns), |_| source.standard_normal())
}

/// Returns true when ngspice runs; panics under CI when it does not.
fn ngspice_available() -> bool {
    let found = Command::new("ngspice")
        .arg("--version")
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "ngspice not found: CI must install the Debian package `ngspice`"
        );
        eprintln!("skipping the ngspice simulation: ngspice not found (install the Debian package `ngspice`)");
    }
    found
}

/// Runs ngspice in batch mode and returns the `(plus, minus)` ammeter currents of every output,
/// read from the ASCII raw file.
fn simulate(crossbar: &Crossbar, netlist: &str, folder: &PathBuf) -> (Vec<f64>, Vec<f64>) {
    std::fs::create_dir_all(folder).unwrap();
    let netlist_path = folder.join("crossbar.cir");
    let raw_path = folder.join("crossbar.raw");
    std::fs::write(&netlist_path, netlist).unwrap();
    let output = Command::new("ngspice")
        .arg("-b")
        .arg("-r")
        .arg(&raw_path)
        .arg(&netlist_path)
        .env("SPICE_ASCIIRAWFILE", "1")
        .output()
        .expect("ngspice starts");
    assert!(
        output.status.success(),
        "ngspice failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The ASCII raw file lists the variables as `<index> <name> <type>`, then `Values:` followed
    // by one value per line (the first line also carries the point index).
    let raw = std::fs::read_to_string(&raw_path).unwrap();
    let (header, values) = raw.split_once("Values:").expect("raw file has values");
    let variables = header
        .split_once("\nVariables:")
        .expect("raw file has variables")
        .1;
    let names: Vec<String> = variables
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_string))
        .collect();
    let mut numbers: Vec<f64> = values
        .split_whitespace()
        .map(|token| token.parse().unwrap())
        .collect();
    numbers.remove(0);
    assert_eq!(numbers.len(), names.len(), "one value per variable");

    let current = |name: String| {
        let index = names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        numbers[index]
    };
    let plus = (0..crossbar.outputs)
        .map(|i| current(format!("i(vpout{i})")))
        .collect();
    let minus = (0..crossbar.outputs)
        .map(|i| current(format!("i(vnout{i})")))
        .collect();
    (plus, minus)
}

#[test]
fn ngspice_reproduces_matrix_vector_product() {
    if !ngspice_available() {
        return;
    }
    let options = CrossbarOptions::default();
    for (rows, columns, seed) in [(5, 7, 1), (16, 32, 2), (1, 1, 3)] {
        let weights = random_weights(rows, columns, seed);
        let inputs = random_weights(1, columns, seed + 100).row(0).to_vec();
        let crossbar = map_crossbar("layer", &weights, &options).unwrap();
        let netlist = crossbar.netlist(&inputs).unwrap();
        let inputs_for_product = inputs.clone();
        let (plus, minus) = simulate(
            &crossbar,
            &netlist,
            &output_folder(&format!("ngspice_{rows}x{columns}")),
        );

        let simulated = crossbar.outputs_from_currents(&plus, &minus);
        let expected = weights.dot(&ndarray::Array1::from(inputs_for_product));
        let scale = expected.iter().fold(0.0_f64, |max, y| max.max(y.abs()));
        let worst = simulated
            .iter()
            .zip(expected.iter())
            .map(|(s, e)| (s - e).abs())
            .fold(0.0_f64, f64::max);
        println!(
            "{rows} x {columns}: max |y_spice - W x| / max |W x| = {:.2e}",
            worst / scale
        );
        assert!(
            worst <= 1e-6 * scale,
            "{rows} x {columns}: {worst:e} vs scale {scale:e}"
        );

        // Each ammeter current is the Kirchhoff sum into its column line, with its sign.
        let volts = ndarray::Array1::from(inputs.clone()) * options.volts_per_unit;
        let expected_plus = crossbar.g_plus.dot(&volts);
        for i in 0..rows {
            let tolerance = 1e-6
                * expected_plus
                    .iter()
                    .fold(0.0_f64, |max, c| max.max(c.abs()));
            assert!(
                (plus[i] - expected_plus[i]).abs() <= tolerance,
                "output {i}: {} vs {}",
                plus[i],
                expected_plus[i]
            );
        }
    }
}

#[test]
fn conductances_stay_in_range() {
    let options = CrossbarOptions {
        g_min: 2e-6,
        g_max: 5e-5,
        volts_per_unit: 0.2,
    };
    let weights = random_weights(6, 9, 4);
    let crossbar = map_crossbar("range", &weights, &options).unwrap();
    for &g in crossbar.g_plus.iter().chain(crossbar.g_minus.iter()) {
        assert!((options.g_min..=options.g_max).contains(&g), "{g:e}");
    }
    let largest = crossbar
        .g_plus
        .iter()
        .chain(crossbar.g_minus.iter())
        .fold(0.0_f64, |max, &g| max.max(g));
    assert!((largest - options.g_max).abs() <= 1e-18);
    let difference = &crossbar.g_plus - &crossbar.g_minus;
    for (d, w) in difference.iter().zip(weights.iter()) {
        assert!(
            (d - crossbar.siemens_per_unit_weight * w).abs() <= 1e-18,
            "{d:e} vs {w:e}"
        );
    }
    assert!(
        (crossbar.amperes_per_unit_output() - crossbar.siemens_per_unit_weight * 0.2).abs() < 1e-20
    );
}

#[test]
fn netlist_lists_every_device() {
    let weights = random_weights(3, 4, 5);
    let crossbar = map_crossbar("devices", &weights, &CrossbarOptions::default()).unwrap();
    let netlist = crossbar.netlist(&[1.0, -0.5, 0.25, 0.0]).unwrap();
    let count = |prefix: &str| netlist.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("VIN"), 4);
    assert_eq!(count("RP_"), 12);
    assert_eq!(count("RN_"), 12);
    assert_eq!(count("VPOUT"), 3);
    assert_eq!(count("VNOUT"), 3);
    assert_eq!(count(".op"), 1);
    assert!(netlist.trim_end().ends_with(".end"));
    assert!(netlist.contains("VIN1 in1 0 DC -5.0000000000000"));

    assert!(matches!(
        crossbar.netlist(&[1.0]),
        Err(HardwareError::InputLengthMismatch {
            expected: 4,
            found: 1
        })
    ));
}

#[test]
fn emit_spice_writes_netlists() {
    let folder = output_folder("emit_spice");
    let layers = vec![
        ("dense0".to_string(), random_weights(4, 3, 6)),
        ("dense1".to_string(), Array2::zeros((2, 4))),
    ];
    let report = emit_spice(&layers, &folder, &CrossbarOptions::default()).unwrap();
    assert_eq!(report.layers.len(), 2);
    assert_eq!(report.layers[0].resistors, 24);
    for layer in &report.layers {
        let text = std::fs::read_to_string(&layer.netlist).unwrap();
        assert!(text.contains(".op"));
        let mapping: Crossbar =
            serde_json::from_str(&std::fs::read_to_string(&layer.mapping).unwrap()).unwrap();
        assert_eq!(mapping.name, layer.name);
    }
    // An all-zero layer puts every conductance at g_min, so the pair currents cancel.
    let zero: Crossbar =
        serde_json::from_str(&std::fs::read_to_string(&report.layers[1].mapping).unwrap()).unwrap();
    assert!(zero.g_plus.iter().all(|&g| g == 1e-6));
    assert_eq!(zero.g_plus, zero.g_minus);
    assert!(folder.join("crossbar.json").exists());
}

#[test]
fn invalid_crossbar_options_rejected() {
    let weights = random_weights(2, 2, 7);
    let ranges = [
        (0.0, 1e-4),
        (1e-4, 1e-6),
        (1e-6, f64::INFINITY),
        (f64::NAN, 1e-4),
    ];
    for (g_min, g_max) in ranges {
        let options = CrossbarOptions {
            g_min,
            g_max,
            ..CrossbarOptions::default()
        };
        assert!(
            matches!(
                map_crossbar("w", &weights, &options),
                Err(HardwareError::InvalidConductanceRange { .. })
            ),
            "[{g_min}, {g_max}]"
        );
    }
    let options = CrossbarOptions {
        volts_per_unit: 0.0,
        ..CrossbarOptions::default()
    };
    assert!(matches!(
        map_crossbar("w", &weights, &options),
        Err(HardwareError::InvalidVoltageScale { .. })
    ));
    let mut nan = weights.clone();
    nan[(1, 0)] = f64::NAN;
    assert!(matches!(
        map_crossbar("w", &nan, &CrossbarOptions::default()),
        Err(HardwareError::NonFiniteWeight {
            row: 1,
            column: 0,
            ..
        })
    ));
}
