//! The stencil benchmark: diffusion sweeps of the comparison with Devito, with the memory
//! bandwidth measured in the same run. `NPDEC_BENCH_QUICK=1` shrinks the grids for a smoke run.
//!
//! Run with `cargo bench -p npdec-jit --bench stencils`; it prints one JSON object per case.

use npdec_jit::bench::{run_benchmarks, BenchOptions};

fn main() {
    let mut options = BenchOptions::default();
    if std::env::var_os("NPDEC_BENCH_QUICK").is_some() {
        options = BenchOptions {
            points_2d: 512,
            points_3d: 64,
            steps: 10,
            ..options
        };
    }
    match run_benchmarks(&options) {
        Ok(report) => {
            for bandwidth in &report.bandwidth {
                println!("{}", serde_json::to_string(bandwidth).unwrap_or_default());
            }
            for record in &report.records {
                println!("{}", serde_json::to_string(record).unwrap_or_default());
            }
        }
        Err(message) => {
            eprintln!("error: the benchmark failed: {message}");
            std::process::exit(1);
        }
    }
}
