//! The IR verifier: the catalogue of invariants every graph satisfies after discretization and after
//! every pass.
//!
//! Structure
//! - S1: the graph is acyclic.
//! - S2: a node's incoming edges carry the operand positions `0 .. n`, each once, where `n` is the
//!   arity of its kind: 0 for `state` and `param`; 1 for `boundary`, `stencil`, `reduce` and `initial`;
//!   2 for `div_grad`, `upwind`, `dense`, `convolution` and `expect`; the number of inputs the
//!   expression reads for `pointwise`; the number of updates for `time_step`.
//! - S3: sinks (`initial`, `time_step`, `expect`) have no users; every other node has at least one.
//! - S4: a graph has at most one `time_step`.
//! - S5: every field, parameter and axis id indexes the graph's declarations.
//!
//! Types
//! - T1: `state` has the field's axes, halo 0, its channels and its complex flag.
//! - T2: `boundary` reads the `state` of the same field and has one padding per field axis; its halo
//!   is the paddings' halo. A periodic axis has periodic rules on both sides and a halo of at most its
//!   point count; other axes have no periodic rule. `unconstrained` sides have halo 0. Every
//!   Dirichlet and Robin rule has one weight row per ghost layer, and face values read no input.
//! - T3: `pointwise` grid inputs have exactly the node's grid and halo; other inputs are scalars.
//!   Selected channels exist; coordinates are axes of the node's grid.
//! - T4: `stencil`: one radius per axis, taps within the radius, input halo at least the radius, output
//!   halo the input halo minus the radius.
//! - T5: `div_grad`: coefficient and operand share a grid; the output halo is one less on each listed
//!   axis. `upwind`: the velocity has the output grid; the operand halo is larger by the order on the
//!   upwind axis, and the taps stay within the order.
//! - T6: `dense` multiplies a square tensor `[n, n]` with a halo-0 value on one axis of `n` points.
//!   `convolution` reads a tensor `[out, in, k…]` with odd `k` and an operand with `in` channels and a
//!   halo larger by `(k − 1) / 2`.
//! - T7: `reduce` reads a halo-0 grid value; its output is a scalar.
//! - T8: `initial` and each `time_step` input have the field's grid with halo 0 and one channel or the
//!   field's channel count (one for a single-channel update). Dirichlet faces name an axis of the
//!   field. `expect` inputs are scalars.
//! - T9: `pool` and `upsample` read a halo-0 grid value with the node's channels, one input axis per
//!   output axis, the fine axis `factor` times as many points as the coarse one, and give halo 0.

use crate::graph::{GhostRule, Graph, Grid, NodeId, NodeKind, PointwiseExpr, ValueType};

/// One broken invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyError {
    pub node: Option<NodeId>,
    pub message: String,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.node {
            Some(node) => write!(f, "%{}: {}", node.index(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Checks every invariant of the module documentation and returns all violations.
pub fn verify(graph: &Graph) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    if let Err(node) = graph.topological_order() {
        errors.push(VerifyError {
            node: Some(node),
            message: "S1: the graph has a cycle through this node".into(),
        });
        return Err(errors);
    }
    let time_steps = graph.find(|k| matches!(k, NodeKind::TimeStep(_))).len();
    if time_steps > 1 {
        errors.push(VerifyError {
            node: None,
            message: format!("S4: {time_steps} time steps, expected at most 1"),
        });
    }
    for id in graph.node_ids() {
        let mut check = Checker {
            graph,
            id,
            errors: &mut errors,
        };
        check.node();
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

struct Checker<'a> {
    graph: &'a Graph,
    id: NodeId,
    errors: &'a mut Vec<VerifyError>,
}

impl Checker<'_> {
    fn fail(&mut self, message: String) {
        self.errors.push(VerifyError {
            node: Some(self.id),
            message,
        });
    }

    fn ensure(&mut self, condition: bool, message: impl FnOnce() -> String) {
        if !condition {
            self.fail(message());
        }
    }

    fn input_value(&self, position: usize) -> Option<&ValueType> {
        self.graph
            .inputs(self.id)
            .get(position)
            .map(|i| &self.graph.node(*i).value)
    }

    fn node(&mut self) {
        let graph = self.graph;
        let node = graph.node(self.id);
        let inputs = graph.inputs(self.id);
        let arity = match &node.kind {
            NodeKind::State { .. } | NodeKind::Param { .. } => 0,
            NodeKind::Boundary { .. }
            | NodeKind::Stencil(_)
            | NodeKind::Resample { .. }
            | NodeKind::Reduce(_)
            | NodeKind::Initial { .. } => 1,
            NodeKind::DivGrad { .. }
            | NodeKind::Upwind { .. }
            | NodeKind::Dense
            | NodeKind::Convolution { .. }
            | NodeKind::Expect { .. } => 2,
            NodeKind::Pointwise(expr) => expr.input_count(),
            NodeKind::TimeStep(step) => step.updates.len(),
        };
        let positions = graph.operand_positions(self.id);
        self.ensure(positions == (0..arity).collect::<Vec<_>>(), || {
            format!(
                "S2: {} has operand positions {positions:?}, expected 0..{arity}",
                node.kind.name()
            )
        });
        if positions.len() != arity {
            return;
        }
        let sink = matches!(
            node.kind,
            NodeKind::Initial { .. } | NodeKind::TimeStep(_) | NodeKind::Expect { .. }
        );
        let users = graph.users(self.id).len();
        self.ensure(sink == (users == 0), || {
            if sink {
                format!("S3: sink {} has {users} users", node.kind.name())
            } else {
                format!("S3: {} is never used", node.kind.name())
            }
        });
        if !self.ids_in_range() {
            return;
        }
        self.types(&inputs);
    }

    fn ids_in_range(&mut self) -> bool {
        let graph = self.graph;
        let node = graph.node(self.id);
        let field_ok = |f: &npdec_symbolic::FieldId| f.0 < graph.fields.len();
        let ok = match &node.kind {
            NodeKind::State { field }
            | NodeKind::Boundary { field, .. }
            | NodeKind::Initial { field, .. } => field_ok(field),
            NodeKind::Param { param } | NodeKind::Convolution { kernel: param } => {
                param.0 < graph.params.len()
            }
            NodeKind::TimeStep(step) => step.updates.iter().all(|u| field_ok(&u.field)),
            NodeKind::Pointwise(_)
            | NodeKind::Stencil(_)
            | NodeKind::DivGrad { .. }
            | NodeKind::Upwind { .. }
            | NodeKind::Dense
            | NodeKind::Resample { .. }
            | NodeKind::Reduce(_)
            | NodeKind::Expect { .. } => true,
        };
        let axes_ok = match &node.value.grid {
            Grid::Points { axes, halo } => {
                axes.len() == halo.len() && axes.iter().all(|a| a.0 < graph.axes.len())
            }
            Grid::Scalar | Grid::Tensor { .. } => true,
        };
        self.ensure(ok && axes_ok, || {
            "S5: an id does not index the graph's declarations".into()
        });
        ok && axes_ok
    }

    fn types(&mut self, inputs: &[NodeId]) {
        let graph = self.graph;
        let node = graph.node(self.id);
        let value = &node.value;
        let (axes, halo) = match &value.grid {
            Grid::Points { axes, halo } => (axes.clone(), halo.clone()),
            Grid::Scalar | Grid::Tensor { .. } => (Vec::new(), Vec::new()),
        };
        match &node.kind {
            NodeKind::State { field } => {
                let f = graph.field(*field);
                let expected = ValueType {
                    grid: Grid::Points {
                        axes: f.axes.clone(),
                        halo: vec![0; f.axes.len()],
                    },
                    channels: f.channels,
                    complex: f.complex,
                };
                self.ensure(*value == expected, || {
                    format!("T1: state of `{}` has type {value:?}", f.name)
                });
            }
            NodeKind::Param { .. } => {}
            NodeKind::Boundary {
                field,
                axes: paddings,
            } => self.boundary(*field, paddings, inputs[0], &axes, &halo),
            NodeKind::Pointwise(expr) => {
                for (position, input) in inputs.iter().enumerate() {
                    let input_value = &graph.node(*input).value;
                    match &input_value.grid {
                        Grid::Scalar => {}
                        Grid::Points { .. } => self.ensure(input_value.grid == value.grid, || {
                            format!(
                                "T3: input {position} has grid {:?}, the node {:?}",
                                input_value.grid, value.grid
                            )
                        }),
                        Grid::Tensor { .. } => {
                            self.fail(format!("T3: input {position} is a tensor"))
                        }
                    }
                }
                let mut problems = Vec::new();
                expr.walk(&mut |e| match e {
                    PointwiseExpr::Input {
                        index,
                        channel: Some(c),
                    } if *c >= graph.node(inputs[*index]).value.channels => {
                        problems.push(format!("T3: channel {c} of input {index} does not exist"));
                    }
                    PointwiseExpr::Coordinate(axis) if !axes.contains(axis) => {
                        problems.push(format!(
                            "T3: coordinate of axis {} outside the node's grid",
                            axis.0
                        ));
                    }
                    _ => {}
                });
                problems.into_iter().for_each(|p| self.fail(p));
            }
            NodeKind::Stencil(stencil) => {
                let Some(Grid::Points {
                    halo: input_halo, ..
                }) = self.input_value(0).map(|v| v.grid.clone())
                else {
                    return self.fail("T4: stencil input is not a grid value".into());
                };
                self.ensure(
                    stencil.radius.len() == axes.len() && !stencil.taps.is_empty(),
                    || "T4: radius or taps do not match the grid".into(),
                );
                for tap in &stencil.taps {
                    let inside = tap.offset.len() == axes.len()
                        && tap
                            .offset
                            .iter()
                            .zip(&stencil.radius)
                            .all(|(o, r)| o.unsigned_abs() as usize <= *r);
                    self.ensure(inside, || {
                        format!(
                            "T4: tap {:?} outside radius {:?}",
                            tap.offset, stencil.radius
                        )
                    });
                }
                let fits = input_halo.len() == halo.len()
                    && input_halo
                        .iter()
                        .zip(&stencil.radius)
                        .zip(&halo)
                        .all(|((i, r), o)| *i >= *r && i - r == *o);
                self.ensure(fits, || {
                    format!(
                        "T4: input halo {input_halo:?}, radius {:?}, output halo {halo:?}",
                        stencil.radius
                    )
                });
            }
            NodeKind::DivGrad {
                axes: positions,
                spacing,
            } => {
                let coefficient = self.input_value(0).map(|v| v.grid.clone());
                let operand = self.input_value(1).map(|v| v.grid.clone());
                self.ensure(positions.len() == spacing.len(), || {
                    "T5: one spacing per axis expected".into()
                });
                let expected_halo: Vec<usize> = halo
                    .iter()
                    .enumerate()
                    .map(|(p, h)| h + usize::from(positions.contains(&p)))
                    .collect();
                let expected = Grid::Points {
                    axes: axes.clone(),
                    halo: expected_halo,
                };
                self.ensure(
                    coefficient.as_ref() == Some(&expected) || coefficient == Some(Grid::Scalar),
                    || "T5: coefficient grid".into(),
                );
                self.ensure(operand.as_ref() == Some(&expected), || {
                    format!("T5: operand grid {operand:?}, expected {expected:?}")
                });
            }
            NodeKind::Upwind {
                position,
                order,
                backward,
                forward,
            } => {
                let velocity = self.input_value(0).map(|v| v.grid.clone());
                self.ensure(
                    velocity.as_ref() == Some(&value.grid) || velocity == Some(Grid::Scalar),
                    || "T5: velocity grid".into(),
                );
                let mut expected_halo = halo.clone();
                if let Some(h) = expected_halo.get_mut(*position) {
                    *h += usize::from(*order);
                }
                let expected = Grid::Points {
                    axes: axes.clone(),
                    halo: expected_halo,
                };
                let operand = self.input_value(1).map(|v| v.grid.clone());
                self.ensure(operand.as_ref() == Some(&expected), || {
                    format!("T5: upwind operand grid {operand:?}, expected {expected:?}")
                });
                let within = backward
                    .iter()
                    .chain(forward)
                    .all(|(o, _)| o.unsigned_abs() <= u32::from(*order));
                self.ensure(within, || "T5: upwind taps exceed the order".into());
            }
            NodeKind::Dense => {
                let matrix = self.input_value(0).map(|v| v.grid.clone());
                let operand = self.input_value(1).map(|v| v.grid.clone());
                let n = axes.first().map(|a| graph.axis(*a).points);
                let square = matches!(&matrix, Some(Grid::Tensor { dims }) if dims.len() == 2 && dims[0] == dims[1] && Some(dims[1]) == n);
                self.ensure(
                    axes.len() == 1
                        && halo == [0]
                        && square
                        && operand.as_ref() == Some(&value.grid),
                    || format!("T6: dense of {matrix:?} and {operand:?}"),
                );
            }
            NodeKind::Convolution { .. } => {
                let kernel = self.input_value(0).map(|v| v.grid.clone());
                let operand = self.input_value(1).cloned();
                let Some(Grid::Tensor { dims }) = kernel else {
                    return self.fail("T6: kernel is not a tensor".into());
                };
                let Some(operand) = operand else { return };
                let odd = dims.len() == axes.len() + 2 && dims[2..].iter().all(|k| k % 2 == 1);
                self.ensure(
                    odd && operand.channels == dims[1] && value.channels == dims[0],
                    || format!("T6: kernel {dims:?}"),
                );
                if odd {
                    let expected_halo: Vec<usize> = halo
                        .iter()
                        .zip(&dims[2..])
                        .map(|(h, k)| h + (k - 1) / 2)
                        .collect();
                    let expected = Grid::Points {
                        axes: axes.clone(),
                        halo: expected_halo,
                    };
                    self.ensure(operand.grid == expected, || {
                        format!("T6: operand grid {:?}", operand.grid)
                    });
                }
            }
            NodeKind::Resample { kind, factor } => {
                let input = self.input_value(0).cloned();
                let Some(input) = input else { return };
                let Grid::Points {
                    axes: in_axes,
                    halo: in_halo,
                } = &input.grid
                else {
                    return self.fail("T9: resample of a value without a grid".into());
                };
                let fits = in_axes.len() == axes.len()
                    && in_axes.iter().zip(axes.iter()).all(|(i, o)| {
                        let (fine, coarse) = match kind {
                            npdec_symbolic::Resample::Pool => (i, o),
                            npdec_symbolic::Resample::Upsample => (o, i),
                        };
                        graph.axis(*fine).points == graph.axis(*coarse).points * factor
                    });
                self.ensure(
                    fits && *factor >= 2
                        && halo.iter().all(|h| *h == 0)
                        && in_halo.iter().all(|h| *h == 0)
                        && input.channels == value.channels,
                    || format!("T9: {} by {factor} from {:?}", node.kind.name(), input.grid),
                );
            }
            NodeKind::Reduce(_) => {
                let input = self.input_value(0).map(|v| v.grid.clone());
                let zero_halo = matches!(&input, Some(Grid::Points { halo, .. }) if halo.iter().all(|h| *h == 0));
                self.ensure(zero_halo && value.grid == Grid::Scalar, || {
                    "T7: reduce needs a halo-0 grid input and a scalar output".into()
                });
            }
            NodeKind::Initial { field, .. } => self.field_value(*field, false, 0),
            NodeKind::TimeStep(step) => {
                for (position, update) in step.updates.iter().enumerate() {
                    self.field_value(update.field, update.channel.is_some(), position);
                    let rank = graph.field(update.field).axes.len();
                    self.ensure(update.dirichlet.iter().all(|f| f.axis < rank), || {
                        "T8: Dirichlet face on a missing axis".into()
                    });
                }
            }
            NodeKind::Expect { .. } => {
                let scalar =
                    (0..2).all(|p| self.input_value(p).is_some_and(|v| v.grid == Grid::Scalar));
                self.ensure(scalar, || "T8: expect inputs must be scalars".into());
            }
        }
    }

    fn field_value(
        &mut self,
        field: npdec_symbolic::FieldId,
        single_channel: bool,
        position: usize,
    ) {
        let f = self.graph.field(field);
        let Some(input) = self.input_value(position).cloned() else {
            return;
        };
        let expected = Grid::Points {
            axes: f.axes.clone(),
            halo: vec![0; f.axes.len()],
        };
        let channels_ok = input.channels == 1 || (!single_channel && input.channels == f.channels);
        self.ensure(input.grid == expected && channels_ok, || {
            format!("T8: input {position} for `{}` has type {input:?}", f.name)
        });
    }

    fn boundary(
        &mut self,
        field: npdec_symbolic::FieldId,
        paddings: &[crate::graph::AxisPadding],
        input: NodeId,
        axes: &[npdec_symbolic::AxisId],
        halo: &[usize],
    ) {
        let graph = self.graph;
        let f = graph.field(field);
        let reads_state =
            matches!(graph.node(input).kind, NodeKind::State { field: g } if g == field);
        self.ensure(reads_state, || {
            "T2: boundary input is not the state of its field".into()
        });
        self.ensure(
            axes == f.axes.as_slice() && paddings.len() == axes.len(),
            || "T2: one padding per field axis expected".into(),
        );
        for (position, padding) in paddings.iter().enumerate() {
            let Some(axis) = f.axes.get(position).map(|a| graph.axis(*a)) else {
                continue;
            };
            self.ensure(halo.get(position) == Some(&padding.halo), || {
                format!("T2: padding halo {} differs from the value's", padding.halo)
            });
            for rule in [&padding.min, &padding.max] {
                match rule {
                    GhostRule::Periodic => {
                        self.ensure(axis.periodic && padding.halo <= axis.points, || {
                            format!("T2: periodic rule on axis `{}`", axis.name)
                        });
                    }
                    GhostRule::Unconstrained => {
                        self.ensure(!axis.periodic && padding.halo == 0, || {
                            format!("T2: unconstrained side of `{}` with ghosts", axis.name)
                        });
                    }
                    GhostRule::Dirichlet { value, weights } => {
                        self.ensure(
                            !axis.periodic
                                && weights.len() == padding.halo
                                && value.input_count() == 0,
                            || format!("T2: Dirichlet rule on `{}`", axis.name),
                        );
                    }
                    GhostRule::Robin {
                        alpha,
                        beta,
                        value,
                        weights,
                        slope_weights,
                        ..
                    } => {
                        let no_inputs =
                            alpha.input_count() + beta.input_count() + value.input_count() == 0;
                        self.ensure(
                            !axis.periodic
                                && weights.len() == padding.halo
                                && slope_weights.len() == padding.halo
                                && no_inputs,
                            || format!("T2: Robin rule on `{}`", axis.name),
                        );
                    }
                }
            }
        }
    }
}
