//! Tests of `emit_photonic`: the JSON layout parses and rebuilds the weights, the SAX netlist
//! simulated instance by instance reproduces the weights, the GDSII file reads back with the
//! expected cells and references, and the SVG has one shape per element.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::real_gaussian;
use nalgebra::DMatrix;
use ndarray::Array2;
use npdec_hardware::photonic::{max_abs_difference, mzi_transfer_matrix, REBUILD_TOLERANCE};
use npdec_hardware::photonic_files::{
    PhotonicLayout, ATTENUATOR_CELL, LAYOUT_FORMAT, MZI_CELL, PHASE_SHIFTER_CELL,
};
use npdec_hardware::{emit_photonic, HardwareError, PhotonicReport};
use num_complex::Complex64;
use serde_json::Value;

fn output_folder(test: &str) -> PathBuf {
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("npdec-hardware")
        .join(test);
    let _ = std::fs::remove_dir_all(&folder);
    folder
}

fn real_weights(rows: usize, columns: usize, seed: u64) -> Array2<f64> {
    let matrix = real_gaussian(rows, columns, seed);
    Array2::from_shape_fn((rows, columns), |(r, c)| matrix[(r, c)].re)
}

fn complex_from(weights: &Array2<f64>) -> DMatrix<Complex64> {
    DMatrix::from_fn(weights.nrows(), weights.ncols(), |r, c| {
        Complex64::new(weights[(r, c)], 0.0)
    })
}

fn emitted_example(test: &str) -> (Vec<(String, Array2<f64>)>, PhotonicReport, PathBuf) {
    let folder = output_folder(test);
    let weights = vec![
        ("hidden".to_string(), real_weights(6, 4, 1)),
        ("readout".to_string(), real_weights(3, 6, 2)),
    ];
    let report = emit_photonic(&weights, &folder).expect("emit succeeds");
    (weights, report, folder)
}

#[test]
fn report_lists_every_layer() {
    let (_, report, folder) = emitted_example("report");
    assert_eq!(report.layers.len(), 2);
    assert_eq!(report.layers[0].shape, (6, 4));
    assert_eq!(report.layers[0].modes, 6);
    assert_eq!(report.layers[0].mzis, 6 * 5);
    assert_eq!(report.layers[1].modes, 6);
    for layer in &report.layers {
        assert!(layer.rebuild_errors.weights <= REBUILD_TOLERANCE);
        assert!(layer.files.layout.exists());
        assert!(layer.files.netlist.exists());
        assert!(layer.files.gds.exists());
        assert!(layer.files.svg.exists());
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("photonic.json")).unwrap())
            .unwrap();
    assert_eq!(summary["layers"][1]["name"], "readout");
}

#[test]
fn layout_json_rebuilds_weights() {
    let (weights, report, _) = emitted_example("layout");
    for ((_, matrix), layer_report) in weights.iter().zip(&report.layers) {
        let text = std::fs::read_to_string(&layer_report.files.layout).unwrap();
        let layout: PhotonicLayout = serde_json::from_str(&text).expect("layout parses");
        assert_eq!(layout.format, LAYOUT_FORMAT);
        assert_eq!(layout.layer.name, layer_report.name);
        assert_eq!(layout.layer.input_mesh.mzis.len(), 15);
        let error = max_abs_difference(&layout.layer.weight_matrix(), &complex_from(matrix));
        assert!(
            error <= REBUILD_TOLERANCE,
            "{}: {error:e}",
            layer_report.name
        );

        // Spot-check the raw JSON keys promised by the format description.
        let raw: Value = serde_json::from_str(&text).unwrap();
        for key in ["modes", "gain", "attenuators", "input_mesh", "output_mesh"] {
            assert!(raw.get(key).is_some(), "missing key {key}");
        }
        let mzi = &raw["output_mesh"]["mzis"][0];
        for key in ["column", "row", "theta", "phi"] {
            assert!(mzi.get(key).is_some(), "missing MZI key {key}");
        }
        assert_eq!(
            raw["output_mesh"]["output_phases"]
                .as_array()
                .unwrap()
                .len(),
            6
        );
    }
}

/// Propagates unit fields through the SAX netlist, instance by instance from the ports, and
/// returns the `modes × modes` transfer matrix from `in<k>` to `out<k>`.
fn simulate_netlist(netlist: &Value, modes: usize) -> DMatrix<Complex64> {
    let instances = netlist["instances"].as_object().unwrap();
    let connections = netlist["connections"].as_object().unwrap();
    let ports = netlist["ports"].as_object().unwrap();

    // Map every instance input port to its source: an upstream output port or a circuit input.
    let mut source_of: HashMap<String, String> = HashMap::new();
    for (from, to) in connections {
        assert!(source_of
            .insert(to.as_str().unwrap().to_string(), from.clone())
            .is_none());
    }
    for (port, target) in ports {
        if port.starts_with("in") {
            source_of.insert(target.as_str().unwrap().to_string(), port.clone());
        }
    }

    let mut transfer = DMatrix::<Complex64>::zeros(modes, modes);
    for input in 0..modes {
        let mut fields: HashMap<String, Complex64> = HashMap::new();
        for k in 0..modes {
            fields.insert(
                format!("in{k}"),
                Complex64::new(if k == input { 1.0 } else { 0.0 }, 0.0),
            );
        }
        // Instances are evaluated when all their inputs are known; the netlist is feed-forward.
        let mut pending: Vec<&String> = instances.keys().collect();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|name| {
                let instance = &instances[name.as_str()];
                let settings = &instance["settings"];
                let field_at = |port: &str| {
                    let source = &source_of[&format!("{name},{port}")];
                    fields.get(source).copied()
                };
                match instance["component"].as_str().unwrap() {
                    "mzi" => {
                        let (Some(a), Some(b)) = (field_at("in0"), field_at("in1")) else {
                            return true;
                        };
                        let t = mzi_transfer_matrix(
                            settings["theta"].as_f64().unwrap(),
                            settings["phi"].as_f64().unwrap(),
                        );
                        fields.insert(format!("{name},out0"), t[0][0] * a + t[0][1] * b);
                        fields.insert(format!("{name},out1"), t[1][0] * a + t[1][1] * b);
                    }
                    "phase_shifter" => {
                        let Some(a) = field_at("in0") else {
                            return true;
                        };
                        let phase = settings["phase"].as_f64().unwrap();
                        fields.insert(
                            format!("{name},out0"),
                            a * Complex64::from_polar(1.0, phase),
                        );
                    }
                    "attenuator" => {
                        let Some(a) = field_at("in0") else {
                            return true;
                        };
                        let transmission = settings["transmission"].as_f64().unwrap();
                        fields.insert(format!("{name},out0"), a * transmission);
                    }
                    other => panic!("unknown component {other}"),
                }
                false
            });
            assert!(
                pending.len() < before,
                "netlist has a cycle or a dangling port"
            );
        }
        for output in 0..modes {
            let port = ports[&format!("out{output}")].as_str().unwrap();
            transfer[(output, input)] = fields[port];
        }
    }
    transfer
}

#[test]
fn sax_netlist_simulates_to_weights() {
    let (weights, report, _) = emitted_example("netlist");
    for ((_, matrix), layer_report) in weights.iter().zip(&report.layers) {
        let netlist: Value =
            serde_json::from_str(&std::fs::read_to_string(&layer_report.files.netlist).unwrap())
                .unwrap();
        let modes = layer_report.modes;
        let instances = netlist["instances"].as_object().unwrap();
        assert_eq!(instances.len(), modes * (modes - 1) + 3 * modes);
        assert_eq!(netlist["ports"].as_object().unwrap().len(), 2 * modes);

        let transfer = simulate_netlist(&netlist, modes) * Complex64::new(layer_report.gain, 0.0);
        let (rows, columns) = layer_report.shape;
        let block = transfer.view((0, 0), (rows, columns)).into_owned();
        let error = max_abs_difference(&block, &complex_from(matrix));
        assert!(
            error <= REBUILD_TOLERANCE,
            "{}: {error:e}",
            layer_report.name
        );
    }
}

#[test]
fn gds_reads_back_with_cells() {
    let (_, report, _) = emitted_example("gds");
    let layer_report = &report.layers[0];
    let library = gds21::GdsLibrary::open(&layer_report.files.gds).expect("GDSII reads back");
    assert!((library.units.db_unit() - 1e-9).abs() < 1e-24);

    let names: Vec<&str> = library.structs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [MZI_CELL, PHASE_SHIFTER_CELL, ATTENUATOR_CELL, "hidden"]
    );

    let top = library.structs.iter().find(|s| s.name == "hidden").unwrap();
    let mut references: HashMap<String, usize> = HashMap::new();
    let mut paths = 0;
    for element in &top.elems {
        match element {
            gds21::GdsElement::GdsStructRef(reference) => {
                *references.entry(reference.name.clone()).or_default() += 1;
                assert_eq!(reference.xy.y % 100_000, 0, "reference off the mode grid");
                assert_eq!(reference.xy.x % 400_000, 0, "reference off the slot grid");
                assert_eq!(reference.properties.len(), 1);
            }
            gds21::GdsElement::GdsPath(_) => paths += 1,
            other => panic!("unexpected element {other:?}"),
        }
    }
    let modes = layer_report.modes;
    assert_eq!(references[MZI_CELL], modes * (modes - 1));
    assert_eq!(references[PHASE_SHIFTER_CELL], 2 * modes);
    assert_eq!(references[ATTENUATOR_CELL], modes);
    // Every slot carries each mode once: through an element or a straight waveguide.
    let slots = top
        .elems
        .iter()
        .filter_map(|e| match e {
            gds21::GdsElement::GdsStructRef(r) => Some(r.xy.x),
            _ => None,
        })
        .max()
        .unwrap()
        / 400_000
        + 1;
    let covered =
        2 * references[MZI_CELL] + references[PHASE_SHIFTER_CELL] + references[ATTENUATOR_CELL];
    assert_eq!(covered + paths, slots as usize * modes);

    let stats = library.stats();
    assert_eq!(stats.structs, 4);
    assert_eq!(stats.struct_refs, modes * (modes - 1) + 3 * modes);
}

#[test]
fn svg_has_one_shape_per_element() {
    let (_, report, _) = emitted_example("svg");
    let layer_report = &report.layers[1];
    let svg = std::fs::read_to_string(&layer_report.files.svg).unwrap();
    let modes = layer_report.modes;
    assert!(svg.starts_with("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<title>MZI").count(), modes * (modes - 1));
    assert_eq!(svg.matches("<circle").count(), 2 * modes);
    assert_eq!(svg.matches("<title>attenuator").count(), modes);
    assert_eq!(svg.matches("<line").count(), modes);
}

#[test]
fn emit_is_deterministic() {
    let (_, first, _) = emitted_example("deterministic_a");
    let (_, second, _) = emitted_example("deterministic_b");
    for (a, b) in first.layers.iter().zip(&second.layers) {
        for (path_a, path_b) in [
            (&a.files.gds, &b.files.gds),
            (&a.files.layout, &b.files.layout),
        ] {
            assert_eq!(
                std::fs::read(path_a).unwrap(),
                std::fs::read(path_b).unwrap()
            );
        }
    }
}

#[test]
fn bad_layer_names_rejected() {
    let folder = output_folder("bad_names");
    let weights = real_weights(2, 2, 3);
    for name in ["", "../escape", ".hidden", "a b"] {
        let result = emit_photonic(&[(name.to_string(), weights.clone())], &folder);
        assert!(
            matches!(result, Err(HardwareError::InvalidLayerName { .. })),
            "{name:?}"
        );
    }
    let duplicate = vec![
        ("w".to_string(), weights.clone()),
        ("w".to_string(), weights),
    ];
    assert!(matches!(
        emit_photonic(&duplicate, &folder),
        Err(HardwareError::DuplicateLayerName { .. })
    ));
    assert!(!folder.exists(), "no files are written for rejected input");
}

#[test]
fn complex_weights_emit() {
    let folder = output_folder("complex");
    let unitary = common::haar_unitary(5, 3);
    let report =
        npdec_hardware::emit_photonic_complex(&[("complex".to_string(), unitary.clone())], &folder)
            .unwrap();
    let text = std::fs::read_to_string(&report.layers[0].files.layout).unwrap();
    let layout: PhotonicLayout = serde_json::from_str(&text).unwrap();
    let error = max_abs_difference(&layout.layer.weight_matrix(), &unitary);
    assert!(error <= REBUILD_TOLERANCE, "{error:e}");
    assert!(
        (layout.layer.gain - 1.0).abs() < 1e-12,
        "a unitary has every singular value 1"
    );
}

#[test]
fn error_messages_name_values() {
    let folder = output_folder("messages");
    let mut weights = real_weights(3, 3, 9);
    weights[(2, 1)] = f64::INFINITY;
    let error = emit_photonic(&[("layer1".to_string(), weights)], &folder).unwrap_err();
    assert_eq!(
        error.to_string(),
        "weight matrix `layer1` has a NaN or infinite entry at row 2, column 1"
    );

    let error = emit_photonic(&[("a/b".to_string(), real_weights(2, 2, 1))], &folder).unwrap_err();
    assert!(
        error.to_string().starts_with("invalid layer name `a/b`"),
        "{error}"
    );

    let not_unitary = real_gaussian(3, 3, 2);
    let error = npdec_hardware::photonic::decompose_clements(&not_unitary).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("matrix is not unitary: max |U* U - I| = "),
        "{error}"
    );
}
