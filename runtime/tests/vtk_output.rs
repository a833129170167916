//! VTK output of `run_model`: each `.vti` read back with vtkio contains the values of the `.npy`
//! snapshot beside it, in VTK's point order, on the model's grid. Each `.pvd` lists the snapshots
//! with their times.

use ndarray::{ArrayD, IxDyn};
use npdec_diagnostics::SourceMap;
use npdec_runtime::{run_model, Precision, RunOptions};
use npdec_symbolic::Model;
use num_complex::Complex;
use std::path::{Path, PathBuf};
use vtkio::model::{Attribute, DataSet, ElementType, Extent, IOBuffer, Piece, Vtk};

fn model(source: &str) -> Model {
    let mut sources = SourceMap::new();
    let file = sources.add("test.npde".to_string(), source.to_string());
    let checked = npdec_sema::check(&mut sources, file, &Default::default());
    checked
        .model
        .unwrap_or_else(|| panic!("does not check: {:#?}", checked.diagnostics))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("npdec-vtk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(model: &Model, dir: &Path, precision: Precision) {
    let options = RunOptions {
        out_dir: Some(dir.to_path_buf()),
        vtk: true,
        precision,
        ..RunOptions::default()
    };
    if let Err(diagnostics) = run_model(model, &options) {
        panic!("run failed: {diagnostics:#?}");
    }
}

/// The image data of a `.vti` file: extent, origin, spacing and point arrays.
struct Image {
    extent: [(i32, i32); 3],
    origin: [f32; 3],
    spacing: [f32; 3],
    arrays: Vec<(String, usize, Vec<f64>, bool)>,
}

fn read_image(path: &Path) -> Image {
    let vtk = Vtk::import(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let DataSet::ImageData {
        extent,
        origin,
        spacing,
        pieces,
        ..
    } = vtk.data
    else {
        panic!("{} is not image data", path.display());
    };
    let Extent::Ranges(ranges) = extent else {
        panic!("extent without ranges");
    };
    let extent = ranges.map(|r| (*r.start(), *r.end()));
    assert_eq!(pieces.len(), 1);
    let Piece::Inline(piece) = &pieces[0] else {
        panic!("the piece is not inline");
    };
    let arrays = piece
        .data
        .point
        .iter()
        .map(|attribute| {
            let Attribute::DataArray(array) = attribute else {
                panic!("not a data array");
            };
            let components = match array.elem {
                ElementType::Scalars { num_comp, .. } => num_comp as usize,
                ElementType::Generic(n) => n as usize,
                ref other => panic!("unexpected element type {other:?}"),
            };
            let (values, is_f32) = match &array.data {
                IOBuffer::F64(v) => (v.clone(), false),
                IOBuffer::F32(v) => (v.iter().map(|&x| f64::from(x)).collect(), true),
                other => panic!("unexpected buffer {other:?}"),
            };
            (array.name.clone(), components, values, is_f32)
        })
        .collect();
    Image {
        extent,
        origin,
        spacing,
        arrays,
    }
}

/// Returns the `(timestep, file)` pairs of a `.pvd` collection.
fn read_collection(path: &Path) -> Vec<(f64, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(text.contains("<VTKFile type=\"Collection\""), "{text}");
    let attribute = |line: &str, name: &str| -> String {
        let start = line.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
        let end = start + line[start..].find('"').expect("closing quote");
        line[start..end].to_string()
    };
    text.lines()
        .filter(|l| l.trim_start().starts_with("<DataSet"))
        .map(|l| {
            (
                attribute(l, "timestep").parse().expect("time"),
                attribute(l, "file"),
            )
        })
        .collect()
}

const HEAT2D: &str = "model heat2d
grid (x, y) in ([0, 1], [-1, 2]) points (9, 13)
field u(x, y)
equation heat: dt(u) = 0.1 * laplace(u)
boundary u: dirichlet(0) on x
boundary u: neumann(0) on y
initial u = sin(pi * x) * (1 + y) + x * y^2
solve heat using euler(dt = 1e-3) until 0.02 every 5
";

#[test]
fn real_2d_snapshots_match_npy() {
    let dir = scratch("real2d");
    run(&model(HEAT2D), &dir, Precision::F64);

    let steps = [5, 10, 15, 20];
    for step in steps {
        let npy: ArrayD<f64> =
            ndarray_npy::read_npy(dir.join(format!("u_{step:06}.npy"))).expect("npy snapshot");
        assert_eq!(npy.shape(), &[9, 13]);
        let image = read_image(&dir.join(format!("u_{step:06}.vti")));
        assert_eq!(image.extent, [(0, 8), (0, 12), (0, 0)]);
        assert_eq!(image.origin, [0.0, -1.0, 0.0]);
        assert!((image.spacing[0] - 0.125).abs() < 1e-7);
        assert!((image.spacing[1] - 0.25).abs() < 1e-7);
        assert_eq!(image.arrays.len(), 1);
        let (name, components, values, is_f32) = &image.arrays[0];
        assert_eq!(name, "u");
        assert_eq!(*components, 1);
        assert!(!is_f32, "an f64 run writes Float64");
        assert_eq!(values.len(), 9 * 13);
        // VTK order: x varies fastest.
        for j in 0..13 {
            for i in 0..9 {
                assert_eq!(
                    values[i + 9 * j],
                    npy[[i, j]],
                    "point ({i}, {j}) of step {step}"
                );
            }
        }
    }

    let collection = read_collection(&dir.join("u.pvd"));
    assert_eq!(collection.len(), steps.len());
    for ((time, file), step) in collection.iter().zip(steps) {
        assert_eq!(file, &format!("u_{step:06}.vti"));
        assert!(
            (time - step as f64 * 1e-3).abs() < 1e-12,
            "{time} at step {step}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const CHANNELS_AND_COMPLEX: &str = "model mixed
grid x in [0, 2] points 17
field v(x)[2]
field psi(x): complex
equation both {
    dt(v[0]) = 0.05 * laplace(v[0])
    dt(v[1]) = 2 * laplace(v[1]) + x
    dt(psi) = 1i * 0.5 * laplace(psi)
}
boundary v: dirichlet(0) on x
boundary psi: dirichlet(0) on x
initial v = sin(pi * x / 2)
initial psi = sin(pi * x / 2) * exp(1i * x)
solve both using rk4(dt = 1e-3) until 0.01
";

#[test]
fn channels_and_complex_parts_in_f32() {
    let dir = scratch("mixed");
    run(&model(CHANNELS_AND_COMPLEX), &dir, Precision::F32);

    let v: ArrayD<f32> = ndarray_npy::read_npy(dir.join("v_000010.npy")).expect("v snapshot");
    assert_eq!(v.shape(), &[2, 17]);
    let image = read_image(&dir.join("v_000010.vti"));
    assert_eq!(image.extent, [(0, 16), (0, 0), (0, 0)]);
    let (name, components, values, is_f32) = &image.arrays[0];
    assert_eq!(name, "v");
    assert_eq!(*components, 2, "one component per channel");
    assert!(is_f32, "an f32 run writes Float32");
    for i in 0..17 {
        for c in 0..2 {
            assert_eq!(
                values[2 * i + c],
                f64::from(v[[c, i]]),
                "point {i} channel {c}"
            );
        }
    }

    let psi: ArrayD<Complex<f32>> =
        ndarray_npy::read_npy(dir.join("psi_000010.npy")).expect("psi snapshot");
    let image = read_image(&dir.join("psi_000010.vti"));
    let names: Vec<&str> = image.arrays.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(names, ["psi_re", "psi_im", "psi_abs"]);
    for i in 0..17 {
        let z = psi[IxDyn(&[i])];
        assert_eq!(image.arrays[0].2[i], f64::from(z.re));
        assert_eq!(image.arrays[1].2[i], f64::from(z.im));
        assert!((image.arrays[2].2[i] - f64::from(z.norm())).abs() < 1e-6);
    }
    assert_eq!(read_collection(&dir.join("psi.pvd")).len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_vtk_option_no_vtk_files() {
    let dir = scratch("off");
    let options = RunOptions {
        out_dir: Some(dir.clone()),
        ..RunOptions::default()
    };
    run_model(&model(HEAT2D), &options).expect("runs");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("output folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".npy")), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".vti") || n.ends_with(".pvd")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains(".tmp")),
        "no temporary file is left: {names:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
