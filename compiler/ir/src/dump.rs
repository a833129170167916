//! A stable text form of graphs, for golden tests and `npdec explain`.
//!
//! One line per node in insertion order: `%id = kind details (inputs) : type`. Weights print with
//! seven significant digits so that the text does not change with the last bits of a float.

use crate::graph::{GhostRule, Graph, Grid, NodeKind, PointwiseExpr, ValueType};
use npdec_symbolic::{AxisKind, BinaryOp, CompareOp, UnaryOp};
use std::fmt::Write;

/// Returns the text form of a graph.
pub fn dump_graph(graph: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph {}", graph.name);
    for axis in &graph.axes {
        let kind = match axis.kind {
            AxisKind::Interval { min, max } => format!("[{}, {}]", number(min), number(max)),
            AxisKind::Index => "index".to_string(),
        };
        let periodic = if axis.periodic { " periodic" } else { "" };
        let _ = writeln!(
            out,
            "axis {} {kind} points {}{periodic}",
            axis.name, axis.points
        );
    }
    for id in graph.node_ids() {
        let node = graph.node(id);
        let inputs: Vec<String> = graph
            .inputs(id)
            .iter()
            .map(|i| format!("%{}", i.index()))
            .collect();
        let details = details(graph, &node.kind);
        let _ = writeln!(
            out,
            "%{} = {}{} ({}) : {}",
            id.index(),
            node.kind.name(),
            details,
            inputs.join(", "),
            value_type(graph, &node.value)
        );
    }
    out
}

fn number(value: f64) -> String {
    if value == 0.0 {
        "0".to_string()
    } else {
        format!("{value:.6e}")
    }
}

fn value_type(graph: &Graph, value: &ValueType) -> String {
    let grid = match &value.grid {
        Grid::Scalar => "scalar".to_string(),
        Grid::Points { axes, halo } => {
            let parts: Vec<String> = axes
                .iter()
                .zip(halo)
                .map(|(a, h)| format!("{}+{h}", graph.axis(*a).name))
                .collect();
            format!("[{}]", parts.join(", "))
        }
        Grid::Tensor { dims } => format!("tensor{dims:?}"),
    };
    let kind = if value.complex { "complex" } else { "real" };
    if value.channels == 1 {
        format!("{grid} {kind}")
    } else {
        format!("{grid} {kind} x{}", value.channels)
    }
}

fn details(graph: &Graph, kind: &NodeKind) -> String {
    match kind {
        NodeKind::State { field } => format!(" {}", graph.field(*field).name),
        NodeKind::Param { param } => format!(" {}", graph.param(*param).name),
        NodeKind::Boundary { field, axes } => {
            let f = graph.field(*field);
            let rules: Vec<String> = axes
                .iter()
                .zip(&f.axes)
                .map(|(p, a)| {
                    format!(
                        "{}: {} | {}",
                        graph.axis(*a).name,
                        ghost_rule(graph, &p.min),
                        ghost_rule(graph, &p.max)
                    )
                })
                .collect();
            format!(" {} {{{}}}", f.name, rules.join("; "))
        }
        NodeKind::Pointwise(expr) => format!(" {}", pointwise(graph, expr)),
        NodeKind::Stencil(stencil) => {
            let taps: Vec<String> = stencil
                .taps
                .iter()
                .map(|t| format!("{:?}: {}", t.offset, number(t.weight)))
                .collect();
            format!(" {} {{{}}}", stencil.label, taps.join(", "))
        }
        NodeKind::DivGrad { axes, .. } => format!(" axes {axes:?}"),
        NodeKind::Upwind {
            position, order, ..
        } => format!(" axis {position} order {order}"),
        NodeKind::Dense => String::new(),
        NodeKind::Convolution { kernel } => format!(" {}", graph.param(*kernel).name),
        NodeKind::Resample { factor, .. } => format!(" by {factor}"),
        NodeKind::Reduce(op) => format!(" {op:?}").to_lowercase(),
        NodeKind::Initial {
            field,
            time_derivative,
        } => {
            format!(
                " {}{}",
                graph.field(*field).name,
                if *time_derivative == 1 { "'" } else { "" }
            )
        }
        NodeKind::TimeStep(step) => {
            let updates: Vec<String> = step
                .updates
                .iter()
                .map(|u| {
                    let name = &graph.field(u.field).name;
                    let channel = u.channel.map_or(String::new(), |c| format!("[{c}]"));
                    let spectral = u.spectral_laplace.map_or(String::new(), |s| {
                        format!(" spectral {}+{}i", number(s.re), number(s.im))
                    });
                    format!(
                        "{name}{channel} order {} dirichlet {}{spectral}",
                        u.time_order,
                        u.dirichlet.len()
                    )
                })
                .collect();
            format!(
                " {} dt {} steps {} {{{}}}",
                step.scheme.name(),
                number(step.dt),
                step.steps,
                updates.join("; ")
            )
        }
        NodeKind::Expect { index, op, .. } => format!(" {index} {}", compare_symbol(*op)),
    }
}

fn ghost_rule(graph: &Graph, rule: &GhostRule) -> String {
    match rule {
        GhostRule::Unconstrained => "none".to_string(),
        GhostRule::Periodic => "periodic".to_string(),
        GhostRule::Dirichlet { value, weights } => match weights.first() {
            Some(row) => format!(
                "dirichlet {} degree {}",
                pointwise(graph, value),
                row.len().saturating_sub(1)
            ),
            None => format!("dirichlet {}", pointwise(graph, value)),
        },
        GhostRule::Robin {
            alpha,
            beta,
            value,
            neumann: true,
            ..
        } => {
            let _ = (alpha, beta);
            format!("neumann {}", pointwise(graph, value))
        }
        GhostRule::Robin {
            alpha, beta, value, ..
        } => {
            format!(
                "robin {} {} {}",
                pointwise(graph, alpha),
                pointwise(graph, beta),
                pointwise(graph, value)
            )
        }
    }
}

fn compare_symbol(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Less => "<",
        CompareOp::LessEqual => "<=",
        CompareOp::Greater => ">",
        CompareOp::GreaterEqual => ">=",
        CompareOp::Equal => "==",
        CompareOp::NotEqual => "!=",
    }
}

/// Returns a pointwise expression in prefix-free infix form with full parentheses.
pub fn pointwise(graph: &Graph, expr: &PointwiseExpr) -> String {
    match expr {
        PointwiseExpr::Input {
            index,
            channel: None,
        } => format!("in{index}"),
        PointwiseExpr::Input {
            index,
            channel: Some(c),
        } => format!("in{index}[{c}]"),
        PointwiseExpr::Real(v) => number(*v),
        PointwiseExpr::Complex(re, im) => format!("({}+{}i)", number(*re), number(*im)),
        PointwiseExpr::Coordinate(axis) => graph.axis(*axis).name.clone(),
        PointwiseExpr::Time => "t".to_string(),
        PointwiseExpr::Unary(UnaryOp::Neg, a) => format!("-{}", pointwise(graph, a)),
        PointwiseExpr::Binary(op, a, b) => {
            let symbol = match op {
                BinaryOp::Add => "+",
                BinaryOp::Sub => "-",
                BinaryOp::Mul => "*",
                BinaryOp::Div => "/",
                BinaryOp::Pow => "^",
            };
            format!("({} {symbol} {})", pointwise(graph, a), pointwise(graph, b))
        }
        PointwiseExpr::Compare(op, a, b) => format!(
            "({} {} {})",
            pointwise(graph, a),
            compare_symbol(*op),
            pointwise(graph, b)
        ),
        PointwiseExpr::Call(function, args) => {
            let args: Vec<String> = args.iter().map(|a| pointwise(graph, a)).collect();
            format!("{}({})", function.name(), args.join(", "))
        }
    }
}
