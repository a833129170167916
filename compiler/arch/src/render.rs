//! Text and Graphviz renderings of recognized architectures.

use crate::{Architecture, Layer};
use std::fmt::Write;

/// Renders the layer table and the summary line of one architecture. `source` returns the text of
/// the source column for a layer, such as `heat1d.npde:9`.
pub fn render_table(architecture: &Architecture, source: impl Fn(&Layer) -> String) -> String {
    let header = ["#", "layer", "shape", "params", "term", "source"];
    let rows: Vec<[String; 6]> = architecture
        .layers
        .iter()
        .map(|layer| {
            let shape = if layer.input == layer.output {
                layer.input.clone()
            } else {
                format!("{} → {}", layer.input, layer.output)
            };
            let source = source(layer);
            let term = if layer.term.chars().count() > 48 {
                format!("{}…", layer.term.chars().take(47).collect::<String>())
            } else {
                layer.term.clone()
            };
            [
                layer.index.to_string(),
                layer.kind.short(),
                shape,
                layer.parameters.to_string(),
                term,
                source,
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {}, {}",
        architecture.task,
        count(architecture.steps, "step"),
        count(architecture.parameters, "learnable parameter")
    );
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let _ = writeln!(out, "  {}", line(&header.map(String::from)));
    for row in &rows {
        let _ = writeln!(out, "  {}", line(row));
    }
    let _ = writeln!(out, "  {}", architecture.summary);
    out
}

/// Renders the layers of one architecture as a Graphviz digraph, one node per layer in order.
pub fn render_dot(architecture: &Architecture) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "digraph \"{}\" {{",
        architecture.task.replace('"', "'")
    );
    let _ = writeln!(
        out,
        "  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];"
    );
    let _ = writeln!(
        out,
        "  label=\"{}\";",
        architecture.summary.replace('"', "'")
    );
    for layer in &architecture.layers {
        let label = format!("{}\\n{}", layer.kind.short(), layer.term.replace('"', "'"));
        let _ = writeln!(out, "  l{} [label=\"{label}\"];", layer.index);
    }
    for pair in architecture.layers.windows(2) {
        let _ = writeln!(out, "  l{} -> l{};", pair[0].index, pair[1].index);
    }
    out.push_str("}\n");
    out
}

/// Formats a count with its noun, singular for one: `1 step`, `2 steps`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
