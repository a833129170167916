//! Helpers shared by the interpreter's integration tests: running built models and measuring orders.

#![allow(dead_code)]

use npdec_ir::model_builder::ModelBuilder;
use npdec_runtime::{run_model, Precision, RunOptions, RunReport};
use npdec_symbolic::Model;

/// Runs a model and returns its report, failing the test on diagnostics.
pub fn run(model: &Model, precision: Precision) -> RunReport {
    let options = RunOptions {
        precision,
        ..RunOptions::default()
    };
    match run_model(model, &options) {
        Ok(report) => report,
        Err(diagnostics) => panic!("run failed: {diagnostics:#?}"),
    }
}

/// Runs a model whose first expectation is an error measure and returns that error.
pub fn error_of(builder: ModelBuilder, precision: Precision) -> f64 {
    let model = builder.build();
    let report = run(&model, precision);
    for program in npdec_ir::discretize_model(&model)
        .expect("discretizes")
        .solves
    {
        npdec_ir::verify(&program).expect("the discretized graph verifies");
    }
    report.expects[0].value
}

/// Returns the observed orders `log(e_k / e_{k+1}) / log(ratio)` between successive refinements.
pub fn observed_orders(errors: &[f64], ratio: f64) -> Vec<f64> {
    errors
        .windows(2)
        .map(|w| (w[0] / w[1]).ln() / ratio.ln())
        .collect()
}

/// Asserts that every observed order is within 0.15 of the theoretical one.
pub fn assert_orders(name: &str, errors: &[f64], ratio: f64, expected: f64) {
    let orders = observed_orders(errors, ratio);
    println!("{name}: errors {errors:?} orders {orders:.3?}");
    for (k, order) in orders.iter().enumerate() {
        assert!(
            (order - expected).abs() <= 0.15,
            "{name}: refinement {k} has order {order:.3}, expected {expected} (errors {errors:?})"
        );
    }
}
