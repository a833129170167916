//! Builders for checked models in Rust code, for tests and benchmarks that run without the front end.
//!
//! ```
//! use npdec_ir::model_builder::{expr::*, ModelBuilder};
//! use npdec_symbolic::Scheme;
//!
//! let mut b = ModelBuilder::new("heat");
//! let x = b.interval("x", 0.0, 1.0, 41);
//! let u = b.field("u", &[x]);
//! let heat = b.equation(u, 1, vec![mul(real(0.1), laplace(field(u)))]);
//! b.dirichlet_everywhere(u, real(0.0));
//! b.initial(u, 0, sin(mul(real(std::f64::consts::PI), coordinate(x))));
//! b.solve(&[heat], Scheme::Euler, 1e-4, 100, 2);
//! let model = b.build();
//! assert_eq!(model.fields.len(), 1);
//! ```

use npdec_diagnostics::Span;
use npdec_symbolic::*;

/// Builds a [`Model`] declaration by declaration.
pub struct ModelBuilder {
    model: Model,
}

impl ModelBuilder {
    pub fn new(name: &str) -> Self {
        ModelBuilder {
            model: Model {
                name: name.to_string(),
                ..Model::default()
            },
        }
    }

    fn axis(&mut self, name: &str, kind: AxisKind, points: usize, periodic: bool) -> AxisId {
        self.model.axes.push(Axis {
            name: name.to_string(),
            kind,
            points,
            periodic,
            span: Span::default(),
            resampling: None,
        });
        AxisId(self.model.axes.len() - 1)
    }

    /// Adds an interval axis whose points include both end points.
    pub fn interval(&mut self, name: &str, min: f64, max: f64, points: usize) -> AxisId {
        self.axis(name, AxisKind::Interval { min, max }, points, false)
    }

    /// Adds a periodic interval axis, which excludes its right end point.
    pub fn periodic(&mut self, name: &str, min: f64, max: f64, points: usize) -> AxisId {
        self.axis(name, AxisKind::Interval { min, max }, points, true)
    }

    /// Adds a real single-channel field; periodic axes get periodic conditions on both sides.
    pub fn field(&mut self, name: &str, axes: &[AxisId]) -> FieldId {
        self.field_with(name, axes, 1, false)
    }

    pub fn field_with(
        &mut self,
        name: &str,
        axes: &[AxisId],
        channels: usize,
        complex: bool,
    ) -> FieldId {
        self.model.fields.push(Field {
            name: name.to_string(),
            axes: axes.to_vec(),
            channels,
            complex,
            span: Span::default(),
        });
        let id = FieldId(self.model.fields.len() - 1);
        for axis in axes {
            if self.model.axis(*axis).periodic {
                self.boundary(id, *axis, Side::Min, BoundaryKind::Periodic);
                self.boundary(id, *axis, Side::Max, BoundaryKind::Periodic);
            }
        }
        id
    }

    /// Adds a scalar parameter with a value expression.
    pub fn param(&mut self, name: &str, axes: &[AxisId], value: Expr) -> ParamId {
        self.param_with(name, axes, Vec::new(), Initializer::Value(value))
    }

    pub fn param_with(
        &mut self,
        name: &str,
        axes: &[AxisId],
        dims: Vec<usize>,
        init: Initializer,
    ) -> ParamId {
        self.model.params.push(Param {
            name: name.to_string(),
            axes: axes.to_vec(),
            dims,
            per_step: false,
            complex: false,
            learnable: false,
            init,
            span: Span::default(),
        });
        ParamId(self.model.params.len() - 1)
    }

    /// Adds `∂ᵏu/∂tᵏ = Σ terms` (or `Σ terms = 0` for `time_order` 0).
    pub fn equation(&mut self, field: FieldId, time_order: u8, terms: Vec<Expr>) -> EquationId {
        let terms = terms
            .into_iter()
            .map(|expr| Term {
                expr,
                span: Span::default(),
            })
            .collect();
        let name = format!("eq{}", self.model.equations.len());
        self.model.equations.push(Equation {
            name,
            field,
            channel: None,
            time_order,
            terms,
            span: Span::default(),
        });
        EquationId(self.model.equations.len() - 1)
    }

    pub fn boundary(&mut self, field: FieldId, axis: AxisId, side: Side, kind: BoundaryKind) {
        self.model
            .boundaries
            .retain(|b| !(b.field == field && b.axis == axis && b.side == side));
        self.model.boundaries.push(BoundaryCondition {
            field,
            axis,
            side,
            kind,
            span: Span::default(),
        });
    }

    /// Sets `u = value` on both sides of every non-periodic axis of the field.
    pub fn dirichlet_everywhere(&mut self, field: FieldId, value: Expr) {
        for axis in self.model.field(field).axes.clone() {
            if !self.model.axis(axis).periodic {
                for side in [Side::Min, Side::Max] {
                    self.boundary(field, axis, side, BoundaryKind::Dirichlet(value.clone()));
                }
            }
        }
    }

    pub fn initial(&mut self, field: FieldId, time_derivative: u8, value: Expr) {
        self.model.initials.push(InitialCondition {
            field,
            time_derivative,
            value,
            span: Span::default(),
        });
    }

    /// Adds a solve task with `steps` steps of `dt` (for a steady scheme both are ignored).
    pub fn solve(
        &mut self,
        equations: &[EquationId],
        scheme: Scheme,
        dt: f64,
        steps: usize,
        space_order: u8,
    ) {
        let steady = matches!(scheme, Scheme::Steady { .. });
        let discretization = Discretization {
            scheme,
            dt,
            steps,
            until: if steady { 0.0 } else { dt * steps as f64 },
            space_order,
        };
        self.model.tasks.push(Task::Solve(SolveTask {
            equations: equations.to_vec(),
            discretization,
            every: None,
            span: Span::default(),
        }));
    }

    /// Saves snapshots every `every` steps in the last solve task.
    pub fn save_every(&mut self, every: usize) {
        if let Some(Task::Solve(task)) = self.model.tasks.last_mut() {
            task.every = Some(every);
        }
    }

    pub fn expect(&mut self, text: &str, expr: Expr) {
        self.model.expects.push(Expect {
            text: text.to_string(),
            expr,
            span: Span::default(),
        });
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn build(self) -> Model {
        self.model
    }
}

/// Short constructors for expressions.
pub mod expr {
    use npdec_symbolic::*;

    pub fn real(v: f64) -> Expr {
        Expr::Real(v)
    }

    pub fn complex(re: f64, im: f64) -> Expr {
        Expr::Complex(re, im)
    }

    pub fn coordinate(axis: AxisId) -> Expr {
        Expr::Coordinate(axis)
    }

    pub fn time() -> Expr {
        Expr::Time
    }

    pub fn field(id: FieldId) -> Expr {
        Expr::Field(id)
    }

    pub fn param(id: ParamId) -> Expr {
        Expr::Param(id)
    }

    pub fn add(a: Expr, b: Expr) -> Expr {
        Expr::binary(BinaryOp::Add, a, b)
    }

    pub fn sub(a: Expr, b: Expr) -> Expr {
        Expr::binary(BinaryOp::Sub, a, b)
    }

    pub fn mul(a: Expr, b: Expr) -> Expr {
        Expr::binary(BinaryOp::Mul, a, b)
    }

    pub fn div(a: Expr, b: Expr) -> Expr {
        Expr::binary(BinaryOp::Div, a, b)
    }

    pub fn pow(a: Expr, b: Expr) -> Expr {
        Expr::binary(BinaryOp::Pow, a, b)
    }

    pub fn neg(a: Expr) -> Expr {
        Expr::Unary(UnaryOp::Neg, Box::new(a))
    }

    pub fn call(function: Function, a: Expr) -> Expr {
        Expr::Call(function, vec![a])
    }

    pub fn sin(a: Expr) -> Expr {
        call(Function::Sin, a)
    }

    pub fn cos(a: Expr) -> Expr {
        call(Function::Cos, a)
    }

    pub fn exp(a: Expr) -> Expr {
        call(Function::Exp, a)
    }

    pub fn abs(a: Expr) -> Expr {
        call(Function::Abs, a)
    }

    pub fn laplace(a: Expr) -> Expr {
        Expr::Laplace(Box::new(a))
    }

    /// `∂ⁿa/∂axes…`, one entry per differentiation.
    pub fn derivative(a: Expr, axes: &[AxisId]) -> Expr {
        Expr::Derivative {
            operand: Box::new(a),
            axes: axes.to_vec(),
        }
    }

    pub fn div_grad(coefficient: Expr, operand: Expr) -> Expr {
        Expr::DivGrad {
            coefficient: Box::new(coefficient),
            operand: Box::new(operand),
        }
    }

    pub fn upwind(velocity: Expr, operand: Expr, axis: AxisId, order: u8) -> Expr {
        Expr::Upwind {
            velocity: Box::new(velocity),
            operand: Box::new(operand),
            axis,
            order,
        }
    }

    pub fn reduce(op: ReduceOp, a: Expr) -> Expr {
        Expr::Reduce(op, Box::new(a))
    }

    pub fn less(a: Expr, b: Expr) -> Expr {
        Expr::Compare(CompareOp::Less, Box::new(a), Box::new(b))
    }

    /// `max(abs(a − b))`, the maximum error of `a` against `b`.
    pub fn max_error(a: Expr, b: Expr) -> Expr {
        reduce(ReduceOp::Max, abs(sub(a, b)))
    }
}
