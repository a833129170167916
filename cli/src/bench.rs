//! `npdec bench`: stencil sweeps of the JIT beside the memory bandwidth measured in the same run.

use npdec_jit::bench::{run_benchmarks, BenchOptions};
use std::process::ExitCode;

/// What `npdec bench` runs and how it prints.
pub struct Selection {
    pub json: bool,
    /// Case names; empty runs every case.
    pub cases: Vec<String>,
    /// Thread counts; empty runs 1 and 2.
    pub threads: Vec<usize>,
    pub steps: Option<usize>,
    pub temporal_blocking: bool,
    pub block_steps: Option<usize>,
}

pub fn run(selection: Selection) -> Result<ExitCode, String> {
    let mut options = BenchOptions {
        temporal_blocking: selection.temporal_blocking,
        block_steps: selection.block_steps,
        cases: selection.cases,
        ..BenchOptions::default()
    };
    if let Some(steps) = selection.steps {
        options.steps = steps;
    }
    if !selection.threads.is_empty() {
        options.threads = selection.threads;
    }
    let report = run_benchmarks(&options)?;
    if selection.json {
        // One object per case and thread count: case, threads, gpts_per_s, roofline_fraction,
        // compile_ms, steps_per_pass, bandwidth_gb_s.
        for record in &report.records {
            println!(
                "{}",
                serde_json::to_string(record).map_err(|e| e.to_string())?
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    for bandwidth in &report.bandwidth {
        println!(
            "bandwidth, {}: copy {:.1} GB/s, triad {:.1} GB/s",
            npdec_arch::count(bandwidth.threads, "thread"),
            bandwidth.copy_gb_s,
            bandwidth.triad_gb_s
        );
    }
    println!(
        "{:<18} {:>7} {:>10} {:>9} {:>11} {:>15}",
        "case", "threads", "Gpts/s", "roofline", "compile ms", "steps per pass"
    );
    for record in &report.records {
        println!(
            "{:<18} {:>7} {:>10.3} {:>8.0}% {:>11.1} {:>15}",
            record.case,
            record.threads,
            record.gpts_per_s,
            record.roofline_fraction * 100.0,
            record.compile_ms,
            record.steps_per_pass
        );
    }
    Ok(ExitCode::SUCCESS)
}
