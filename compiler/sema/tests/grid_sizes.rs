//! Point counts and spacings of interval grids sized by `points` or `step`, with and without a
//! periodic condition.

use npdec_diagnostics::SourceMap;
use npdec_sema::{check, CheckOptions, Checked};

fn check_source(text: &str) -> Checked {
    let mut sources = SourceMap::new();
    let file = sources.add("grid.npde".to_string(), text.to_string());
    check(&mut sources, file, &CheckOptions::default())
}

/// Returns `(points, spacing, periodic)` of the first axis of a model with one field `u` on `grid`
/// and the boundary statement `boundary`.
fn first_axis(grid: &str, boundary: &str) -> (usize, f64, bool) {
    let text = format!(
        "model g\n{grid}\nfield u(x)\nequation e: dt(u) = laplace(u)\n{boundary}\n\
         initial u = 0\nsolve e using euler(steps = 1) until 1\n"
    );
    let checked = check_source(&text);
    let model = checked
        .model
        .unwrap_or_else(|| panic!("{text} has errors: {:?}", checked.diagnostics));
    let axis = &model.axes[0];
    (axis.points, axis.spacing(), axis.periodic)
}

#[test]
fn step_grid_keeps_step_when_periodic() {
    let (points, spacing, periodic) =
        first_axis("grid x in [0, 1] step 0.25", "boundary u: periodic on x");
    assert!(periodic);
    assert_eq!(points, 4);
    assert_eq!(spacing, 0.25);
}

#[test]
fn step_grid_periodic_on_all_sides() {
    let (points, spacing, _) =
        first_axis("grid x in [0, 2] step 0.5", "boundary u: periodic on all");
    assert_eq!(points, 4);
    assert_eq!(spacing, 0.5);
}

#[test]
fn step_grid_includes_end_without_period() {
    let (points, spacing, periodic) = first_axis(
        "grid x in [0, 1] step 0.25",
        "boundary u: dirichlet(0) on x",
    );
    assert!(!periodic);
    assert_eq!(points, 5);
    assert_eq!(spacing, 0.25);
}

#[test]
fn points_grid_keeps_count_when_periodic() {
    let (points, spacing, _) = first_axis("grid x in [0, 1] points 4", "boundary u: periodic on x");
    assert_eq!(points, 4);
    assert_eq!(spacing, 0.25);
}

#[test]
fn periodic_step_not_dividing_is_error() {
    let checked = check_source(
        "model g\ngrid x in [0, 1] step 0.3\nfield u(x)\nequation e: dt(u) = laplace(u)\n\
         boundary u: periodic on x\ninitial u = 0\nsolve e using euler(steps = 1) until 1\n",
    );
    let codes: Vec<String> = checked
        .diagnostics
        .iter()
        .map(|d| format!("{:?}", d.code))
        .collect();
    assert!(checked.model.is_none());
    assert_eq!(codes, ["E0120"], "{:?}", checked.diagnostics);
}
