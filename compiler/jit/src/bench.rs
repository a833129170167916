//! The stencil benchmark behind `npdec bench`: diffusion sweeps against the memory bandwidth
//! measured in the same run.
//!
//! The cases match the comparison with Devito: float32, spacing 1, a zero Dirichlet boundary,
//! uniform random data in [0, 1), explicit Euler with `c = ν·Δt/h²` = 0.1 at order 2 and 0.05 at
//! order 8:
//! - `diffusion2d_o2`: 5-point Laplacian on 4096²;
//! - `diffusion3d_o2` and `diffusion3d_o8`: 7-point and 25-point Laplacians on 256³.
//!
//! Points per second are `N^d × steps / wall time of the time loop`. The roofline fraction divides
//! the traffic of one sweep per step (one read and one write of the field per point) by the
//! bandwidth of a STREAM-style copy or triad (the higher) with the same thread count. Compile time
//! runs from the model text to a callable step: check, discretization, passes and code generation.

use crate::passes::optimize;
use crate::{EulerStepper, JitOptions, Unsupported};
use npdec_diagnostics::SourceMap;
use npdec_runtime::Value;
use npdec_symbolic::FieldId;
use serde::Serialize;
use std::time::Instant;

/// One measured case.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchRecord {
    pub case: String,
    pub threads: usize,
    /// Billions of grid points updated per second.
    pub gpts_per_s: f64,
    /// Achieved traffic of one sweep per step over the measured bandwidth.
    pub roofline_fraction: f64,
    /// From model text to a callable step kernel, in milliseconds.
    pub compile_ms: f64,
    /// Steps per blocked pass (1 without temporal blocking), at most the steps of the run.
    pub steps_per_pass: usize,
    /// The bandwidth the roofline fraction divides by: the higher of copy and triad, in GB/s.
    pub bandwidth_gb_s: f64,
}

/// The memory bandwidth measured with a thread count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BandwidthRecord {
    pub threads: usize,
    /// `b[i] = a[i]`, counting one read and one write per element, in GB/s.
    pub copy_gb_s: f64,
    /// `a[i] = b[i] + s·c[i]`, counting two reads and one write, in GB/s.
    pub triad_gb_s: f64,
}

/// Everything one benchmark run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    pub records: Vec<BenchRecord>,
    pub bandwidth: Vec<BandwidthRecord>,
}

/// Sizes and thread counts of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Points per axis of the 2-D case.
    pub points_2d: usize,
    /// Points per axis of the 3-D cases.
    pub points_3d: usize,
    pub steps: usize,
    pub threads: Vec<usize>,
    /// Elements per array of the bandwidth measurement (f32).
    pub stream_elements: usize,
    /// Run several steps per pass over the grid where the step allows it.
    pub temporal_blocking: bool,
    /// Steps per blocked pass; `None` picks them from the cache size.
    pub block_steps: Option<usize>,
    /// The cases to run, by name; empty runs every case.
    pub cases: Vec<String>,
}

/// The names of the cases, in the order they run.
pub const CASES: [&str; 3] = ["diffusion2d_o2", "diffusion3d_o2", "diffusion3d_o8"];

impl Default for BenchOptions {
    /// The sizes of the comparison with Devito.
    fn default() -> Self {
        BenchOptions {
            points_2d: 4096,
            points_3d: 256,
            steps: 100,
            threads: vec![1, 2],
            stream_elements: 1 << 25,
            temporal_blocking: true,
            block_steps: None,
            cases: Vec::new(),
        }
    }
}

/// Returns the model text of a diffusion case.
fn diffusion_source(dimensions: usize, points: usize, order: u8, steps: usize) -> String {
    let c = if order == 2 { 0.1 } else { 0.05 };
    let names = ["x", "y", "z"][..dimensions].join(", ");
    let last = points - 1;
    format!(
        "model diffusion{dimensions}d\n\
         grid ({names}) in [0, {last}] points {points}\n\
         field u({names})\n\
         const nu = {c}\n\
         equation heat: dt(u) = nu * laplace(u)\n\
         boundary u: dirichlet(0) on {names}\n\
         initial u = 0\n\
         solve heat using euler(dt = 1) until {steps} order {order}\n"
    )
}

/// Checks, discretizes and optimizes a model text and compiles its Euler step.
pub fn compile_source(source: &str, options: &JitOptions) -> Result<EulerStepper<f32>, String> {
    let mut sources = SourceMap::new();
    let file = sources.add("bench.npde", source.to_string());
    let checked = npdec_sema::check(&mut sources, file, &npdec_sema::CheckOptions::default());
    let model = checked.model.ok_or_else(|| {
        format!(
            "the benchmark model does not check: {:?}",
            checked.diagnostics
        )
    })?;
    let program = npdec_ir::discretize_model(&model)
        .map_err(|d| format!("the benchmark model does not discretize: {d:?}"))?;
    let graph = program
        .solves
        .first()
        .ok_or("the benchmark model has no solve")?;
    let graph = optimize(graph);
    EulerStepper::<f32>::new(&graph, None, options).map_err(|e: Unsupported| e.to_string())
}

/// Returns uniform random numbers in [0, 1) from SplitMix64 (Steele, Lea and Flood, 2014).
fn random_values(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// Measures copy and triad bandwidth with `threads` threads, best of three runs each.
pub fn measure_bandwidth(threads: usize, elements: usize) -> Result<BandwidthRecord, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?;
    let mut a = vec![1.0f32; elements];
    let mut b = vec![2.0f32; elements];
    let c = vec![0.5f32; elements];
    let chunk = elements.div_ceil(threads);
    let bytes = std::mem::size_of::<f32>() as f64 * elements as f64;
    let mut copy = 0.0f64;
    let mut triad = 0.0f64;
    for repetition in 1..=3 {
        let started = Instant::now();
        pool.scope(|scope| {
            for (target, source) in b.chunks_mut(chunk).zip(a.chunks(chunk)) {
                scope.spawn(move |_| target.copy_from_slice(source));
            }
        });
        let copy_seconds = started.elapsed().as_secs_f64();
        copy = copy.max(2.0 * bytes / copy_seconds / 1e9);

        let started = Instant::now();
        pool.scope(|scope| {
            for ((target, x), y) in a
                .chunks_mut(chunk)
                .zip(b.chunks(chunk))
                .zip(c.chunks(chunk))
            {
                scope.spawn(move |_| {
                    for ((t, x), y) in target.iter_mut().zip(x).zip(y) {
                        *t = x + 3.0 * y;
                    }
                });
            }
        });
        let triad_seconds = started.elapsed().as_secs_f64();
        triad = triad.max(3.0 * bytes / triad_seconds / 1e9);
        tracing::debug!(
            threads,
            repetition,
            copy_ms = %format_args!("{:.2}", copy_seconds * 1e3),
            triad_ms = %format_args!("{:.2}", triad_seconds * 1e3),
            "timed a bandwidth repetition"
        );
    }
    std::hint::black_box(&a);
    tracing::info!(
        threads,
        elements,
        copy_gb_s = %format_args!("{copy:.1}"),
        triad_gb_s = %format_args!("{triad:.1}"),
        "measured the memory bandwidth, best of 3 repetitions"
    );
    Ok(BandwidthRecord {
        threads,
        copy_gb_s: copy,
        triad_gb_s: triad,
    })
}

/// Logs the schedule that the JIT chose for a case: its blocking, compile time and kernels.
fn log_plan(name: &str, threads: usize, compile_ms: f64, stepper: &EulerStepper<f32>) {
    let kernels = &stepper.compiled.plan.kernels;
    tracing::info!(
        case = name,
        threads,
        compile_ms = %format_args!("{compile_ms:.2}"),
        codegen_ms = %format_args!("{:.2}", stepper.compile_time().as_secs_f64() * 1e3),
        kernels = kernels.len(),
        blocking = %match stepper.blocking() {
            Ok(steps) => format!(
                "up to {steps} steps per pass on {} slab(s)",
                stepper.blocked_slabs()
            ),
            Err(reason) => format!("off, one sweep per step: {reason}"),
        },
        "compiled the case"
    );
    let names: Vec<&str> = kernels.iter().map(|kernel| kernel.name.as_str()).collect();
    tracing::debug!(case = name, kernels = ?names, "kernels of the step");
}

/// Runs one case: compiles it from text, fills the field with random data and times the steps.
fn run_case(
    name: &str,
    source: &str,
    threads: usize,
    options: &BenchOptions,
    bandwidth: &BandwidthRecord,
) -> Result<BenchRecord, String> {
    let steps = options.steps;
    let options = JitOptions {
        threads,
        temporal_blocking: options.temporal_blocking,
        block_steps: options.block_steps,
        ..JitOptions::default()
    };
    let started = Instant::now();
    let mut stepper = compile_source(source, &options)?;
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    log_plan(name, threads, compile_ms, &stepper);

    let points = stepper.points_per_step();
    let shape = stepper
        .state(FieldId(0))
        .map(|v| v.shape().to_vec())
        .ok_or("the benchmark field has no state")?;
    let values = random_values(points, 42);
    let array = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), values)
        .map_err(|e| e.to_string())?;
    stepper.set_state(FieldId(0), &Value::Real(array));

    let started = Instant::now();
    stepper.run(steps);
    let seconds = started.elapsed().as_secs_f64();
    let points_per_second = points as f64 * steps as f64 / seconds;
    tracing::info!(
        case = name,
        threads,
        steps,
        points,
        ms = %format_args!("{:.2}", seconds * 1e3),
        "timed the steps"
    );
    let bytes_per_point = 2.0 * std::mem::size_of::<f32>() as f64;
    let roof = bandwidth.copy_gb_s.max(bandwidth.triad_gb_s) * 1e9;
    Ok(BenchRecord {
        case: name.to_string(),
        threads,
        gpts_per_s: points_per_second / 1e9,
        roofline_fraction: points_per_second * bytes_per_point / roof,
        compile_ms,
        steps_per_pass: stepper.blocking().unwrap_or(1).min(steps.max(1)),
        bandwidth_gb_s: roof / 1e9,
    })
}

/// Runs every case with every thread count, measuring the bandwidth first.
pub fn run_benchmarks(options: &BenchOptions) -> Result<BenchReport, String> {
    if let Some(unknown) = options
        .cases
        .iter()
        .find(|name| !CASES.contains(&name.as_str()))
    {
        return Err(format!(
            "unknown benchmark case `{unknown}`; the cases are {}",
            CASES.join(", ")
        ));
    }
    tracing::info!(
        steps = options.steps,
        threads = ?options.threads,
        temporal_blocking = options.temporal_blocking,
        block_steps = ?options.block_steps,
        points_2d = options.points_2d,
        points_3d = options.points_3d,
        "running the stencil benchmark"
    );
    let mut bandwidth = Vec::new();
    for threads in &options.threads {
        bandwidth.push(measure_bandwidth(*threads, options.stream_elements)?);
    }
    let cases = [
        diffusion_source(2, options.points_2d, 2, options.steps),
        diffusion_source(3, options.points_3d, 2, options.steps),
        diffusion_source(3, options.points_3d, 8, options.steps),
    ];
    let mut records = Vec::new();
    for (name, source) in CASES.iter().zip(&cases) {
        if !options.cases.is_empty() && !options.cases.iter().any(|c| c == name) {
            continue;
        }
        for (threads, measured) in options.threads.iter().zip(&bandwidth) {
            records.push(run_case(name, source, *threads, options, measured)?);
        }
    }
    Ok(BenchReport { records, bandwidth })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_reports_every_case() {
        let options = BenchOptions {
            points_2d: 64,
            points_3d: 20,
            steps: 3,
            threads: vec![1, 2],
            stream_elements: 1 << 16,
            temporal_blocking: true,
            block_steps: None,
            cases: Vec::new(),
        };
        let report = run_benchmarks(&options).expect("benchmark runs");
        assert_eq!(report.bandwidth.len(), 2);
        assert_eq!(report.records.len(), 6);
        let names: Vec<&str> = report.records.iter().map(|r| r.case.as_str()).collect();
        assert_eq!(
            names,
            [
                "diffusion2d_o2",
                "diffusion2d_o2",
                "diffusion3d_o2",
                "diffusion3d_o2",
                "diffusion3d_o8",
                "diffusion3d_o8"
            ]
        );
        for record in &report.records {
            assert!(
                record.gpts_per_s.is_finite() && record.gpts_per_s > 0.0,
                "{record:?}"
            );
            assert!(
                record.roofline_fraction.is_finite() && record.roofline_fraction > 0.0,
                "{record:?}"
            );
            assert!(record.compile_ms > 0.0, "{record:?}");
        }
    }

    #[test]
    fn selected_cases_and_threads_only() {
        let options = BenchOptions {
            points_2d: 64,
            points_3d: 20,
            steps: 2,
            threads: vec![2],
            stream_elements: 1 << 16,
            cases: vec!["diffusion3d_o8".into()],
            ..BenchOptions::default()
        };
        let report = run_benchmarks(&options).expect("benchmark runs");
        assert_eq!(report.records.len(), 1);
        let record = &report.records[0];
        assert_eq!(
            (record.case.as_str(), record.threads),
            ("diffusion3d_o8", 2)
        );
        assert!(record.bandwidth_gb_s > 0.0 && record.steps_per_pass >= 1);
        let unknown = BenchOptions {
            cases: vec!["diffusion4d".into()],
            ..options
        };
        let error = run_benchmarks(&unknown).expect_err("an unknown case is refused");
        assert!(
            error.contains("`diffusion4d`") && error.contains("diffusion3d_o8"),
            "{error}"
        );
    }

    #[test]
    fn diffusion_source_checks() {
        let stepper = compile_source(&diffusion_source(3, 12, 8, 2), &JitOptions::default())
            .expect("compiles");
        assert_eq!(stepper.points_per_step(), 12 * 12 * 12);
    }
}
