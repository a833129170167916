//! The files of `run_model` are written atomically and as early as possible: a failed write keeps
//! the previous file, and a task that fails keeps the snapshots of the tasks before it.

use npdec_diagnostics::SourceMap;
use npdec_runtime::output::write_atomically;
use npdec_runtime::{run_model, RunOptions, StabilityPolicy};
use npdec_symbolic::Model;
use std::path::PathBuf;

fn model(source: &str) -> Model {
    let mut sources = SourceMap::new();
    let file = sources.add("test.npde".to_string(), source.to_string());
    let checked = npdec_sema::check(&mut sources, file, &Default::default());
    checked
        .model
        .unwrap_or_else(|| panic!("does not check: {:#?}", checked.diagnostics))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("npdec-output-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn failed_write_keeps_old_file() {
    let dir = scratch("atomic");
    let path = dir.join("summary.json");
    std::fs::write(&path, "old").expect("first version");

    let error = write_atomically(&path, |temporary| {
        std::fs::write(temporary, "half of the new")?;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(error.contains("summary.json"), "{error}");
    assert!(error.contains("disk full"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).expect("still there"), "old");
    assert_eq!(
        file_names(&dir),
        ["summary.json"],
        "the temporary file is removed"
    );

    write_atomically(&path, |temporary| std::fs::write(temporary, "new")).expect("written");
    assert_eq!(std::fs::read_to_string(&path).expect("replaced"), "new");
    assert_eq!(file_names(&dir), ["summary.json"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn temporary_name_keeps_extension() {
    let dir = scratch("extension");
    let path = dir.join("u.png");
    let mut seen = None;
    write_atomically(&path, |temporary| {
        seen = Some(temporary.to_path_buf());
        std::fs::write(temporary, "image")
    })
    .expect("written");
    let seen = seen.expect("the closure ran");
    assert_eq!(
        seen.parent(),
        Some(dir.as_path()),
        "same folder, so rename is atomic"
    );
    assert_eq!(seen.extension().and_then(|e| e.to_str()), Some("png"));
    assert_ne!(seen, path);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two solve tasks; the second takes a step four times its stability limit.
const TWO_SOLVES: &str = "model two
grid x in [0, 1] points 21
field u(x)
field w(x)
equation slow: dt(u) = 0.1 * laplace(u)
equation fast: dt(w) = laplace(w)
boundary u: dirichlet(0) on x
boundary w: dirichlet(0) on x
initial u = sin(pi * x)
initial w = sin(pi * x)
solve slow using euler(dt = 1e-3) until 0.01 every 5
solve fast using euler(dt = 5e-3) until 0.01
";

#[test]
fn failed_task_keeps_earlier_snapshots() {
    let dir = scratch("later-failure");
    let options = RunOptions {
        out_dir: Some(dir.clone()),
        vtk: true,
        stability: StabilityPolicy::Strict,
        ..RunOptions::default()
    };
    let errors = run_model(&model(TWO_SOLVES), &options).unwrap_err();
    assert_eq!(
        errors[0].code,
        npdec_diagnostics::Code::E0242,
        "{errors:#?}"
    );

    let names = file_names(&dir);
    for kept in [
        "solve0_u.pvd",
        "solve0_u_000005.npy",
        "solve0_u_000005.vti",
        "solve0_u_000010.npy",
        "solve0_u_000010.vti",
    ] {
        assert!(names.iter().any(|n| n == kept), "{kept} missing: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains("solve1_")),
        "the failed task wrote nothing: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains(".tmp")),
        "no temporary file is left: {names:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
