//! Benchmark: parsing and checking a generated model of about 1,000 lines.
//!
//! The target is under 50 ms per check. Run with `cargo bench -p npdec --bench check`.

use criterion::{criterion_group, criterion_main, Criterion};
use npdec_diagnostics::SourceMap;
use std::fmt::Write;

/// Builds a model of `blocks` independent 2-D diffusion–reaction problems, 20 lines each.
fn generated_model(blocks: usize) -> String {
    let mut text = String::from(
        "model generated\nuse std::equations::{heat, fisher_kpp}\nuse std::activations::*\n\n",
    );
    for i in 0..blocks {
        let _ = write!(
            text,
            "# block {i}\n\
             grid (x{i}, y{i}) in ([0, 1], [0, 2]) points (33, 65)\n\
             field u{i}(x{i}, y{i})\n\
             field v{i}(x{i}, y{i})\n\
             const nu{i} = 0.01 * (1 + {i} / 100)\n\
             const r{i} = 2 * nu{i} + pi / 10\n\
             param D{i} = 0.1 fixed\n\
             param k{i}(x{i}, y{i}) = 1 + 0.5 * sin(pi * x{i}) * cos(pi * y{i}) fixed\n\
             fn source{i}(a, b) = exp(-((a - 0.5)^2 + (b - 1)^2) / 0.02)\n\
             equation system{i} {{\n\
                 dt(u{i}) = heat(u{i}, nu{i}) + div(k{i} * grad(u{i})) - u{i} * v{i}^2 + source{i}(x{i}, y{i})\n\
                 dt(v{i}) = fisher_kpp(v{i}, D{i}, r{i}) + softplus(u{i}) - diff(v{i}, x{i}, y{i})\n\
             }}\n\
             boundary u{i}: dirichlet(sin(pi * y{i}) * exp(-t)) on x{i}\n\
             boundary u{i}: neumann(0) on y{i}\n\
             boundary v{i}: dirichlet(0) on x{i}\n\
             boundary v{i}: robin(1, 0.5, 0) on y{i}\n\
             initial u{i} = sin(pi * x{i}) * sin(pi * y{i} / 2)\n\
             initial v{i} = 0.1 * cos(2 * pi * x{i})\n\
             solve system{i} using rk4(dt = 1e-4) until 0.01 order 4 every 10\n\
             expect max(abs(u{i})) < 10\n\
             \n"
        );
    }
    text
}

fn check_generated(c: &mut Criterion) {
    let text = generated_model(50);
    let lines = text.lines().count();
    {
        let mut sources = SourceMap::new();
        let file = sources.add("generated.npde", text.clone());
        let checked = npdec_sema::check(&mut sources, file, &npdec_sema::CheckOptions::default());
        assert!(
            !checked.has_errors(),
            "the generated model must be valid: {:#?}",
            checked.diagnostics.first()
        );
    }
    c.bench_function(&format!("parse and check {lines} lines"), |b| {
        b.iter(|| {
            let mut sources = SourceMap::new();
            let file = sources.add("generated.npde", text.clone());
            npdec_sema::check(&mut sources, file, &npdec_sema::CheckOptions::default())
        })
    });
}

criterion_group!(benches, check_generated);
criterion_main!(benches);
