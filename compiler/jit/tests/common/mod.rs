//! Helpers shared by the integration tests: models from `.npde` text, random states, and the
//! relative error between two values.

#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};
use npdec_diagnostics::SourceMap;
use npdec_ir::graph::{Graph, NodeKind};
use npdec_ir::{discretize_model, verify};
use npdec_runtime::evaluate::field_shape;
use npdec_runtime::{Real, Value};

/// Checks and discretizes a model source and returns the graph of its first solve.
pub fn solve_graph(source: &str) -> Graph {
    let mut sources = SourceMap::new();
    let file = sources.add("test.npde", source.to_string());
    let checked = npdec_sema::check(&mut sources, file, &npdec_sema::CheckOptions::default());
    let messages: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{d:?}"))
        .collect();
    let model = checked
        .model
        .unwrap_or_else(|| panic!("model does not check:\n{source}\n{}", messages.join("\n")));
    let program = discretize_model(&model)
        .unwrap_or_else(|e| panic!("model does not discretize: {e:?}\n{source}"));
    let graph = program
        .solves
        .into_iter()
        .next()
        .expect("the model has a solve task");
    if let Err(errors) = verify(&graph) {
        panic!("invalid graph: {errors:?}");
    }
    graph
}

/// SplitMix64 (Steele, Lea and Flood, OOPSLA 2014): a small seeded generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a uniform number in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Returns a uniform random state in `[0, 1)` for every field of the graph that has a state node.
pub fn random_states<T: Real>(graph: &Graph, rng: &mut Rng) -> Vec<Option<Value<T>>> {
    let mut states = vec![None; graph.fields.len()];
    for id in graph.find(|k| matches!(k, NodeKind::State { .. })) {
        let NodeKind::State { field } = graph.node(id).kind else {
            continue;
        };
        let shape = field_shape(graph, field);
        let count: usize = shape.iter().product();
        let values: Vec<T> = (0..count).map(|_| T::of(rng.uniform())).collect();
        states[field.0] = Some(Value::Real(
            ArrayD::from_shape_vec(IxDyn(&shape), values).expect("shape matches"),
        ));
    }
    states
}

/// Returns `max |a − b| / max |b|`: the error relative to the size of the reference.
pub fn relative_error<T: Real>(a: &Value<T>, b: &Value<T>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let (a, b) = (a.real_part(), b.real_part());
    let scale = b
        .iter()
        .fold(0.0f64, |m, x| m.max(x.to_f64_lossy().abs()))
        .max(f64::MIN_POSITIVE);
    let difference = a.iter().zip(b.iter()).fold(0.0f64, |m, (x, y)| {
        let d = (x.to_f64_lossy() - y.to_f64_lossy()).abs();
        if d.is_nan() {
            f64::INFINITY
        } else {
            m.max(d)
        }
    });
    difference / scale
}
