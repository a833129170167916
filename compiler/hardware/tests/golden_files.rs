//! Golden tests of the emitted text formats: a small photonic layer (layout JSON, SAX netlist and
//! SVG) and a small crossbar (SPICE netlist) are compared byte for byte with the files in
//! `tests/golden/`. `NPDEC_BLESS=1` rewrites the golden files.

use std::path::{Path, PathBuf};

use ndarray::{array, Array2};
use npdec_hardware::spice::map_crossbar;
use npdec_hardware::{emit_photonic, CrossbarOptions};

/// Compares `actual` with the golden file, or rewrites the file when `NPDEC_BLESS=1`.
fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("NPDEC_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with NPDEC_BLESS=1", path.display()));
    assert!(
        expected == actual,
        "golden file {} differs; rerun with NPDEC_BLESS=1 to accept",
        path.display()
    );
}

fn output_folder(test: &str) -> PathBuf {
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("npdec-hardware")
        .join(test);
    let _ = std::fs::remove_dir_all(&folder);
    folder
}

#[test]
fn photonic_files_match_golden() {
    // A scaled swap with a sign: singular values 2 and 1, unitaries built from permutations.
    let weights: Array2<f64> = array![[0.0, 2.0], [-1.0, 0.0], [0.0, 0.0]];
    let folder = output_folder("golden_photonic");
    let report = emit_photonic(&[("swap".to_string(), weights)], &folder).unwrap();
    let files = &report.layers[0].files;
    for (golden, path) in [
        ("swap.layout.json", &files.layout),
        ("swap.netlist.json", &files.netlist),
        ("swap.svg", &files.svg),
    ] {
        check_golden(golden, &std::fs::read_to_string(path).unwrap());
    }
}

#[test]
fn spice_netlist_matches_golden() {
    let weights: Array2<f64> = array![[1.0, -0.5], [0.0, 0.25], [-2.0, 2.0]];
    let crossbar = map_crossbar("dense", &weights, &CrossbarOptions::default()).unwrap();
    check_golden("dense.cir", &crossbar.netlist(&[1.0, -1.0]).unwrap());
}
