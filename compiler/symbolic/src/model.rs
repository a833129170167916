//! The declarations of a checked model.

use crate::expr::{CompareOp, Expr};
use npdec_diagnostics::Span;
use serde::Serialize;

macro_rules! id {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub struct $name(pub usize);
    )*};
}

id! {
    /// Index into [`Model::axes`].
    AxisId;
    /// Index into [`Model::fields`].
    FieldId;
    /// Index into [`Model::params`].
    ParamId;
    /// Index into [`Model::data`].
    DataId;
    /// Index into [`Model::equations`].
    EquationId;
}

/// What kind of coordinate an axis has.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum AxisKind {
    /// A physical interval `[min, max]`.
    Interval { min: f64, max: f64 },
    /// Unit-spaced points `0, 1, …, points − 1`: the width of a network layer or an image row.
    Index,
}

/// One dimension of a grid. Fields live on products of axes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Axis {
    pub name: String,
    pub kind: AxisKind,
    /// Number of grid points, at least 2.
    pub points: usize,
    /// True when the fields on this axis are periodic along it. A periodic interval excludes its
    /// right end point, which is the same point as the left one.
    pub periodic: bool,
    pub span: Span,
    /// Set for an axis that `pool` or `upsample` derived from a declared axis; `None` for a
    /// declared axis.
    pub resampling: Option<Resampling>,
}

/// How a derived axis relates to the declared axis it comes from: it has
/// `base.points · refine / coarsen` points, with `coarsen` and `refine` coprime and not both 1.
/// Pooling a fine axis by `coarsen` gives the coarse one: coarse point `i` sits at the centre of the
/// fine points `i·coarsen … (i + 1)·coarsen − 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Resampling {
    pub base: AxisId,
    pub coarsen: usize,
    pub refine: usize,
}

impl Axis {
    /// Returns the grid spacing `h`.
    pub fn spacing(&self) -> f64 {
        match self.kind {
            AxisKind::Index => 1.0,
            AxisKind::Interval { min, max } if self.periodic => (max - min) / self.points as f64,
            AxisKind::Interval { min, max } => (max - min) / (self.points - 1) as f64,
        }
    }

    /// Returns the coordinate of grid point `i`.
    pub fn coordinate(&self, i: usize) -> f64 {
        match self.kind {
            AxisKind::Index => i as f64,
            AxisKind::Interval { min, .. } => min + i as f64 * self.spacing(),
        }
    }
}

/// A field: the unknown of an equation, or a state the network evolves.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Field {
    pub name: String,
    pub axes: Vec<AxisId>,
    /// Number of components per grid point, 1 unless declared with `[c]`.
    pub channels: usize,
    pub complex: bool,
    pub span: Span,
}

/// How a parameter gets its first value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Initializer {
    /// An expression of the coordinates, evaluated on the parameter's axes (a constant for a scalar).
    Value(Expr),
    Zeros,
    Ones,
    Normal {
        mean: f64,
        std: f64,
    },
    Uniform {
        min: f64,
        max: f64,
    },
    /// Glorot (Xavier) uniform: `U(−a, a)` with `a = sqrt(6 / (fan_in + fan_out))`.
    Glorot,
    /// He normal: `N(0, 2 / fan_in)`.
    He,
}

/// A parameter: a coefficient, kernel, weight matrix, potential or refractive index.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Param {
    pub name: String,
    /// Grid axes the parameter varies along (a potential `V(x)`), in declaration order.
    pub axes: Vec<AxisId>,
    /// Tensor dimensions after the axes, e.g. `[8, 8, 3, 3]` for a kernel. Empty for a scalar.
    pub dims: Vec<usize>,
    /// True if the parameter has one value per time step (declared with `t` among its axes).
    pub per_step: bool,
    pub complex: bool,
    pub learnable: bool,
    pub init: Initializer,
    pub span: Span,
}

/// What a data source reads.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum DataFormat {
    /// IDX image and label files (gzipped or not), as MNIST is distributed.
    Idx { images: String, labels: String },
    /// A CSV file with one sample per row and the label in the given column.
    Csv {
        path: String,
        label_column: LabelColumn,
    },
    /// An NPY array, and optionally an NPY array of labels.
    Npy {
        path: String,
        labels: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum LabelColumn {
    First,
    Last,
    Index(usize),
}

/// How many leading samples form the training set; the rest is the test set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Split {
    Count(usize),
    Fraction(f64),
}

/// A data source. Paths are resolved relative to the model file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataSource {
    pub name: String,
    pub format: DataFormat,
    pub split: Option<Split>,
    /// Every input value is multiplied by this before use.
    pub scale: f64,
    /// Zeros added on both sides of every sample dimension (a 28 × 28 image with `pad 18` becomes
    /// 64 × 64, the image in the middle).
    pub pad: usize,
    /// Data augmentation: each training sample, viewed as an image, is translated by a random whole
    /// number of pixels in `-shift..=shift` along each of its two axes at every epoch (zeros fill
    /// the uncovered pixels). 0 leaves the samples as they are; the test set is never shifted.
    pub shift: usize,
    pub span: Span,
}

/// One additive term of an equation's right-hand side, kept apart so that later stages can tie each
/// layer they recognize to the source text it comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Term {
    pub expr: Expr,
    pub span: Span,
}

/// An equation in normal form.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Equation {
    /// The name of the equation declaration; a block of several equations shares it.
    pub name: String,
    /// The field this equation evolves (or solves for, when steady).
    pub field: FieldId,
    /// The channel this equation evolves when it names one channel of a multi-channel field.
    pub channel: Option<usize>,
    /// 0 for a steady equation `Σ terms = 0`, 1 for `∂u/∂t = Σ terms`, 2 for `∂²u/∂t² = Σ terms`.
    pub time_order: u8,
    pub terms: Vec<Term>,
    pub span: Span,
}

impl Equation {
    /// Returns the right-hand side as one expression: the sum of the terms.
    pub fn rhs(&self) -> Expr {
        let mut terms = self.terms.iter().map(|t| t.expr.clone());
        let first = terms.next().unwrap_or(Expr::Real(0.0));
        terms.fold(first, |sum, term| {
            Expr::binary(crate::BinaryOp::Add, sum, term)
        })
    }
}

/// Which end of an axis a boundary condition applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Side {
    Min,
    Max,
}

/// A boundary condition. Expressions may depend on the coordinates and on time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum BoundaryKind {
    /// `u = value`.
    Dirichlet(Expr),
    /// `∂u/∂n = value`, with `n` the outward normal.
    Neumann(Expr),
    /// `alpha·u + beta·∂u/∂n = value`.
    Robin {
        alpha: Expr,
        beta: Expr,
        value: Expr,
    },
    Periodic,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoundaryCondition {
    pub field: FieldId,
    pub axis: AxisId,
    pub side: Side,
    pub kind: BoundaryKind,
    pub span: Span,
}

/// `u = value` at `t = 0`, or `∂u/∂t = value` when `time_derivative` is 1.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InitialCondition {
    pub field: FieldId,
    pub time_derivative: u8,
    pub value: Expr,
    pub span: Span,
}

/// A named output computed from the final state, such as the class scores of a network.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Readout {
    pub name: String,
    pub expr: Expr,
    pub span: Span,
}

/// A time scheme and its options.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Scheme {
    /// Explicit (forward) Euler.
    Euler,
    /// The classical fourth-order Runge–Kutta method.
    Rk4,
    /// Second-order central differences in time for `∂²u/∂t²` equations.
    Leapfrog,
    /// Implicit, second order: the trapezoidal rule with a linear solve per step.
    CrankNicolson,
    /// Implicit, first order, with a linear solve per step.
    BackwardEuler,
    /// Strang splitting between the Laplacian (exact in Fourier space) and the pointwise terms.
    SplitStep,
    /// A steady (elliptic) solve by an iterative sparse method.
    Steady {
        tolerance: f64,
        max_iterations: usize,
    },
}

impl Scheme {
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Euler => "euler",
            Scheme::Rk4 => "rk4",
            Scheme::Leapfrog => "leapfrog",
            Scheme::CrankNicolson => "crank_nicolson",
            Scheme::BackwardEuler => "backward_euler",
            Scheme::SplitStep => "split_step",
            Scheme::Steady { .. } => "steady",
        }
    }
}

/// How a time-dependent solve advances: a scheme, a step and an end time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Discretization {
    pub scheme: Scheme,
    /// The time step. With `steps` given instead, the checker sets `dt = until / steps`.
    pub dt: f64,
    pub steps: usize,
    /// The end time (0 for a steady solve).
    pub until: f64,
    /// The order of accuracy of centered space derivatives: 2, 4, 6 or 8.
    pub space_order: u8,
}

/// `solve`: integrate equations in time (or solve them when steady) and save snapshots.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SolveTask {
    pub equations: Vec<EquationId>,
    pub discretization: Discretization,
    /// Save every field each `every` steps; the final state is always saved.
    pub every: Option<usize>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Loss {
    /// Mean squared error between an expression and a target.
    Mse { prediction: Expr, target: Expr },
    /// Softmax cross-entropy between scores and an integer class label.
    CrossEntropy { scores: Expr, label: Expr },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Optimizer {
    Sgd {
        lr: f64,
        momentum: f64,
    },
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    },
    Lbfgs {
        max_iterations: usize,
        history: usize,
        tolerance: f64,
    },
    /// Closed-form least squares for a linear readout matrix from the hidden states.
    Pseudoinverse {
        ridge: f64,
    },
}

/// How the learning rate of SGD or Adam changes over the epochs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Schedule {
    /// The learning rate the optimizer names, in every epoch.
    #[default]
    Constant,
    /// Cosine annealing without restarts (Loshchilov & Hutter 2017): epoch `e` of `E` (from 0)
    /// uses `lr · (1 + cos(π e / E)) / 2`.
    Cosine,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Metric {
    Accuracy,
    Loss,
    Mse,
}

/// The method training computes the gradient of the loss with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum GradientMethod {
    /// The exact gradient of the discretized network: its time steps reversed (the default).
    #[default]
    Discrete,
    /// The adjoint equation `−∂λ/∂t = (∂F/∂u)ᵀ λ` of the space-discretized system, solved
    /// backwards in time with the task's scheme; it tends to the discrete gradient as `Δt → 0`.
    Continuous,
}

/// `train`: fit the learnable parameters to a data source.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainTask {
    pub equations: Vec<EquationId>,
    pub data: DataId,
    pub discretization: Discretization,
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub epochs: usize,
    pub batch: usize,
    /// L2 regularization weight on the learnable parameters.
    pub l2: f64,
    /// The learning-rate schedule over the epochs.
    pub schedule: Schedule,
    /// The figures computed and reported for this task: those of the `metrics` clause, or
    /// without one, the loss and, for a `cross_entropy` loss, accuracy. The loss is reported
    /// whether it is listed or not.
    pub metrics: Vec<Metric>,
    pub gradient: GradientMethod,
    pub span: Span,
    /// The `on` clause that names the data source, where errors in the data are reported.
    pub data_span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Task {
    Solve(SolveTask),
    Train(TrainTask),
}

/// `expect`: a comparison that `npdec run` evaluates after the tasks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expect {
    /// The source text of the comparison, shown in results.
    pub text: String,
    /// A [`Expr::Compare`] whose sides reduce to numbers.
    pub expr: Expr,
    pub span: Span,
}

/// A figure of the last `train` task that an expectation may compare, such as
/// `expect test_accuracy >= 0.98`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TrainingMetric {
    /// The fraction of test samples classified correctly after the last epoch.
    TestAccuracy,
    /// The mean loss over the test set after the last epoch.
    TestLoss,
    /// The fraction of training samples classified correctly during the last epoch.
    TrainAccuracy,
    /// The mean training loss of the last epoch.
    TrainLoss,
    /// The mean squared error over the test set after the last epoch.
    TestMse,
    /// The mean squared error over the training samples during the last epoch.
    TrainMse,
}

impl TrainingMetric {
    /// Every metric, in the order the documentation lists them.
    pub const ALL: &'static [TrainingMetric] = &[
        TrainingMetric::TestAccuracy,
        TrainingMetric::TestLoss,
        TrainingMetric::TrainAccuracy,
        TrainingMetric::TrainLoss,
        TrainingMetric::TestMse,
        TrainingMetric::TrainMse,
    ];

    /// The name written in an expectation.
    pub fn name(self) -> &'static str {
        match self {
            TrainingMetric::TestAccuracy => "test_accuracy",
            TrainingMetric::TestLoss => "test_loss",
            TrainingMetric::TrainAccuracy => "train_accuracy",
            TrainingMetric::TrainLoss => "train_loss",
            TrainingMetric::TestMse => "test_mse",
            TrainingMetric::TrainMse => "train_mse",
        }
    }

    /// Returns the metric of this name.
    pub fn from_name(name: &str) -> Option<TrainingMetric> {
        TrainingMetric::ALL
            .iter()
            .copied()
            .find(|m| m.name() == name)
    }

    /// True for the metrics that only classification (a `cross_entropy` loss) has.
    pub fn needs_classes(self) -> bool {
        matches!(
            self,
            TrainingMetric::TestAccuracy | TrainingMetric::TrainAccuracy
        )
    }

    /// True for the metrics of the test set, which needs a `split` of the data.
    pub fn needs_test_set(self) -> bool {
        matches!(
            self,
            TrainingMetric::TestAccuracy | TrainingMetric::TestLoss | TrainingMetric::TestMse
        )
    }

    /// Returns the entry of a train task's `metrics` that this figure needs, or `None` for the
    /// loss, which every train task reports.
    pub fn needs_metric(self) -> Option<Metric> {
        match self {
            TrainingMetric::TestAccuracy | TrainingMetric::TrainAccuracy => Some(Metric::Accuracy),
            TrainingMetric::TestMse | TrainingMetric::TrainMse => Some(Metric::Mse),
            TrainingMetric::TestLoss | TrainingMetric::TrainLoss => None,
        }
    }
}

/// `expect test_accuracy >= 0.98`: a metric of the last train task compared with a constant,
/// evaluated by `npdec run` after training. `0.98 <= test_accuracy` is stored in the same form,
/// with the metric on the left.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricExpect {
    /// The source text of the comparison, shown in results.
    pub text: String,
    pub metric: TrainingMetric,
    pub op: CompareOp,
    pub bound: f64,
    pub span: Span,
}

/// A checked model.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Model {
    pub name: String,
    /// The name in the `model` statement, or the start of the file when it has none.
    pub span: Span,
    pub axes: Vec<Axis>,
    pub fields: Vec<Field>,
    pub params: Vec<Param>,
    pub data: Vec<DataSource>,
    pub equations: Vec<Equation>,
    pub boundaries: Vec<BoundaryCondition>,
    pub initials: Vec<InitialCondition>,
    pub readouts: Vec<Readout>,
    pub tasks: Vec<Task>,
    pub expects: Vec<Expect>,
    /// Expectations on training metrics, in source order.
    pub metric_expects: Vec<MetricExpect>,
}

impl Model {
    pub fn axis(&self, id: AxisId) -> &Axis {
        &self.axes[id.0]
    }

    /// Returns the axis that `pool` (`coarsen = factor`) or `upsample` (`refine = factor`) by a
    /// whole factor makes of `axis`, adding it to the model the first time. Resampling back to the
    /// declared resolution returns the declared axis. The caller checks that `factor` divides the
    /// points of `axis` when coarsening.
    pub fn resampled_axis(&mut self, axis: AxisId, coarsen: usize, refine: usize) -> AxisId {
        let (base, c, r) = match self.axis(axis).resampling {
            Some(resampling) => (
                resampling.base,
                resampling.coarsen * coarsen,
                resampling.refine * refine,
            ),
            None => (axis, coarsen, refine),
        };
        let divisor = gcd(c, r);
        let (c, r) = (c / divisor, r / divisor);
        if c == 1 && r == 1 {
            return base;
        }
        let resampling = Resampling {
            base,
            coarsen: c,
            refine: r,
        };
        if let Some(existing) = self
            .axes
            .iter()
            .position(|a| a.resampling == Some(resampling))
        {
            return AxisId(existing);
        }
        self.axes.push(derived_axis(self.axis(base), resampling));
        AxisId(self.axes.len() - 1)
    }

    /// Recomputes the coordinates and periodicity of every derived axis from its declared axis,
    /// after the checker has decided which declared axes are periodic.
    pub fn refresh_resampled_axes(&mut self) {
        for index in 0..self.axes.len() {
            if let Some(resampling) = self.axes[index].resampling {
                self.axes[index] = derived_axis(self.axis(resampling.base), resampling);
            }
        }
    }

    /// Returns the declared axis an axis comes from (itself for a declared axis).
    pub fn base_axis(&self, id: AxisId) -> AxisId {
        self.axis(id).resampling.map_or(id, |r| r.base)
    }

    pub fn field(&self, id: FieldId) -> &Field {
        &self.fields[id.0]
    }

    pub fn param(&self, id: ParamId) -> &Param {
        &self.params[id.0]
    }

    pub fn equation(&self, id: EquationId) -> &Equation {
        &self.equations[id.0]
    }

    /// Returns the boundary condition of a field on one side of an axis, if declared.
    pub fn boundary(&self, field: FieldId, axis: AxisId, side: Side) -> Option<&BoundaryCondition> {
        self.boundaries
            .iter()
            .find(|b| b.field == field && b.axis == axis && b.side == side)
    }

    /// Returns the initial condition of a field for `u` (0) or `∂u/∂t` (1), if declared.
    pub fn initial(&self, field: FieldId, time_derivative: u8) -> Option<&InitialCondition> {
        self.initials
            .iter()
            .find(|i| i.field == field && i.time_derivative == time_derivative)
    }

    /// Returns the number of grid points of a field (without channels).
    pub fn field_points(&self, id: FieldId) -> usize {
        self.field(id)
            .axes
            .iter()
            .map(|a| self.axis(*a).points)
            .product()
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Builds the axis `resampling` describes. An interval axis keeps its kind, with the spacing
/// scaled by `coarsen / refine` and the first point at the centre of the first block, so that
/// coarse point `i` is the mean position of the fine points it averages. An index axis stays
/// unit-spaced.
fn derived_axis(base: &Axis, resampling: Resampling) -> Axis {
    let ratio = resampling.coarsen as f64 / resampling.refine as f64;
    let points = base.points * resampling.refine / resampling.coarsen;
    let kind = match base.kind {
        AxisKind::Index => AxisKind::Index,
        AxisKind::Interval { min, .. } => {
            let spacing = base.spacing() * ratio;
            let min = min + (ratio - 1.0) * base.spacing() / 2.0;
            let intervals = if base.periodic { points } else { points - 1 };
            AxisKind::Interval {
                min,
                max: min + intervals as f64 * spacing,
            }
        }
    };
    let name = if resampling.refine == 1 {
        format!("{}/{}", base.name, resampling.coarsen)
    } else if resampling.coarsen == 1 {
        format!("{}*{}", base.name, resampling.refine)
    } else {
        format!("{}*{}/{}", base.name, resampling.refine, resampling.coarsen)
    };
    Axis {
        name,
        kind,
        points,
        periodic: base.periodic,
        span: base.span,
        resampling: Some(resampling),
    }
}
