//! The part of an equation's hover that comes from compiling it: the finite-difference stencils its
//! discretization applies, and the neural layers it generates.
//!
//! Both are computed from the checked model the way `npdec run` and `npdec explain` compute them:
//! the stencils from the dataflow graph of each task that advances the equation (`npdec-ir`), the
//! layers by architecture recognition (`npdec-arch`). A task that does not discretize (a train task
//! whose initial state is a data sample, for one) contributes no stencils.

use npdec_ir::graph::{Graph, NodeId, NodeKind, Stencil};
use npdec_symbolic::{EquationId, Model, SolveTask, Task};
use std::collections::HashSet;
use std::fmt::Write as _;

/// Returns Markdown for the equations named `name`, or `None` when no task uses them.
pub fn describe(model: &Model, name: &str) -> Option<String> {
    let equations: Vec<EquationId> = (0..model.equations.len())
        .map(EquationId)
        .filter(|id| model.equation(*id).name == name)
        .collect();
    if equations.is_empty() {
        return None;
    }

    let mut text = String::new();
    let mut seen: HashSet<String> = HashSet::new();
    for task in &model.tasks {
        let Some(solve) = as_solve(task) else {
            continue;
        };
        if !solve.equations.iter().any(|e| equations.contains(e)) {
            continue;
        }
        let Ok(graph) = npdec_ir::discretize_solve(model, &solve) else {
            continue;
        };
        for stencil in equation_stencils(model, &graph, &equations) {
            let block = render_stencil(&stencil);
            if seen.insert(block.clone()) {
                text.push_str(&block);
            }
        }
    }
    if !text.is_empty() {
        text.insert_str(0, "stencils (the weights include the grid spacing):\n");
    }

    let mut layers = String::new();
    for architecture in npdec_arch::recognize(model) {
        let own: Vec<_> = architecture
            .layers
            .iter()
            .filter(|l| l.equation == name)
            .collect();
        if own.is_empty() {
            continue;
        }
        let _ = writeln!(
            layers,
            "\n`{}`: {}",
            architecture.task, architecture.summary
        );
        for layer in own {
            let _ = writeln!(
                layers,
                "- {} ({}) ← `{}`",
                layer.kind.short(),
                npdec_arch::count(layer.parameters, "parameter"),
                layer.term
            );
        }
    }
    if !layers.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str("layers it generates:\n");
        text.push_str(&layers);
    }
    (!text.is_empty()).then_some(text)
}

/// Returns the task as a solve: a train task discretizes like a solve of its equations.
fn as_solve(task: &Task) -> Option<SolveTask> {
    match task {
        Task::Solve(solve) => Some(solve.clone()),
        Task::Train(train) => Some(SolveTask {
            equations: train.equations.clone(),
            discretization: train.discretization.clone(),
            every: None,
            span: train.span,
        }),
    }
}

/// Collects the stencil nodes that the right-hand sides of `equations` read, in graph order.
fn equation_stencils(model: &Model, graph: &Graph, equations: &[EquationId]) -> Vec<Stencil> {
    let Some((step_id, step)) = graph.time_step() else {
        return Vec::new();
    };
    // The inputs of the time step are the right-hand sides, one per update, in update order.
    let roots = graph.inputs(step_id);
    let mut pending: Vec<NodeId> = Vec::new();
    for (update, root) in step.updates.iter().zip(roots) {
        let advanced = equations.iter().any(|id| {
            let equation = model.equation(*id);
            equation.field == update.field && equation.channel == update.channel
        });
        if advanced {
            pending.push(root);
        }
    }

    let mut visited: HashSet<NodeId> = HashSet::new();
    let mut found: Vec<(NodeId, Stencil)> = Vec::new();
    while let Some(id) = pending.pop() {
        if !visited.insert(id) {
            continue;
        }
        if let NodeKind::Stencil(stencil) = &graph.node(id).kind {
            found.push((id, stencil.clone()));
        }
        pending.extend(graph.inputs(id));
    }
    found.sort_by_key(|(id, _)| id.index());
    found.into_iter().map(|(_, stencil)| stencil).collect()
}

/// Renders one stencil: a row of weights in 1-D, a table over two axes in 2-D, a list otherwise.
fn render_stencil(stencil: &Stencil) -> String {
    let dimensions = stencil.taps.first().map_or(0, |t| t.offset.len());
    let mut text = format!(
        "\n`{}`, {} points:\n```text\n",
        stencil.label,
        stencil.taps.len()
    );
    match dimensions {
        1 => {
            let mut taps: Vec<(i32, f64)> = stencil
                .taps
                .iter()
                .map(|t| (t.offset[0], t.weight))
                .collect();
            taps.sort_by_key(|t| t.0);
            let cells: Vec<(String, String)> = taps
                .iter()
                .map(|(o, w)| (format!("{o:+}"), format_weight(*w)))
                .collect();
            let width = cells
                .iter()
                .map(|(o, w)| o.len().max(w.len()))
                .max()
                .unwrap_or(1);
            let offsets: Vec<String> = cells.iter().map(|(o, _)| format!("{o:>width$}")).collect();
            let weights: Vec<String> = cells.iter().map(|(_, w)| format!("{w:>width$}")).collect();
            let _ = writeln!(text, "offset  {}", offsets.join("  "));
            let _ = writeln!(text, "weight  {}", weights.join("  "));
        }
        2 => {
            let rows = stencil.radius.first().copied().unwrap_or(0) as i32;
            let columns = stencil.radius.get(1).copied().unwrap_or(0) as i32;
            let weight_at = |i: i32, j: i32| {
                stencil
                    .taps
                    .iter()
                    .find(|t| t.offset[0] == i && t.offset[1] == j)
                    .map_or_else(|| "·".to_string(), |t| format_weight(t.weight))
            };
            let mut table: Vec<Vec<String>> = Vec::new();
            let mut header = vec![String::new()];
            header.extend((-columns..=columns).map(|j| format!("{j:+}")));
            table.push(header);
            for i in -rows..=rows {
                let mut row = vec![format!("{i:+}")];
                row.extend((-columns..=columns).map(|j| weight_at(i, j)));
                table.push(row);
            }
            let width = table
                .iter()
                .flatten()
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(1);
            for row in table {
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| format!("{}{c}", " ".repeat(width - c.chars().count())))
                    .collect();
                let _ = writeln!(text, "{}", cells.join("  ").trim_end());
            }
            let _ = writeln!(
                text,
                "(rows: offset along the first axis, columns: the second)"
            );
        }
        _ => {
            for tap in &stencil.taps {
                let offset: Vec<String> = tap.offset.iter().map(|o| format!("{o:+}")).collect();
                let _ = writeln!(
                    text,
                    "({})  {}",
                    offset.join(", "),
                    format_weight(tap.weight)
                );
            }
        }
    }
    text.push_str("```\n");
    text
}

/// Formats a weight with at most 6 significant digits and no trailing zeros.
fn format_weight(weight: f64) -> String {
    if weight == weight.round() && weight.abs() < 1e7 {
        return format!("{}", weight as i64);
    }
    let text = format!("{weight:.5e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-3..7).contains(&exponent) {
        // Plain notation reads better in this range.
        let plain = format!("{:.*}", (5 - exponent).max(0) as usize, weight);
        let plain = if plain.contains('.') {
            plain
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            plain
        };
        return plain;
    }
    format!("{mantissa}e{exponent}")
}

#[cfg(test)]
mod tests {
    use super::format_weight;

    #[test]
    fn weights_formatted_compactly() {
        assert_eq!(format_weight(10000.0), "10000");
        assert_eq!(format_weight(-20000.0), "-20000");
        assert_eq!(format_weight(-833.3333333333), "-833.333");
        assert_eq!(format_weight(0.083333333), "0.0833333");
        assert_eq!(format_weight(1.5e-9), "1.5e-9");
        assert_eq!(format_weight(2.5e12), "2.5e12");
    }
}
