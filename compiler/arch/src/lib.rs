//! Architecture recognition: the neural network that a discretized NPDE is, layer by layer.
//!
//! An explicit Euler step of `∂u/∂t = Σ terms` is `u ← u + Δt·Σ terms`: a residual block whose branch
//! is the sum of the terms. Each term maps to layers:
//! - a stencil operator (`laplace`, `diff`, `div(c·grad)`, `upwind`) is a convolution with a fixed
//!   kernel of width `2·radius + 1`, whose padding is the boundary condition (Dirichlet: constant,
//!   Neumann: reflect, Robin: mixed, periodic: circular); a learnable coefficient in front of it makes
//!   the kernel learnable up to scale;
//! - `conv(K, u)` is a convolution with the learnable kernel `K[out, in, k…]`;
//! - `W @ u` is a dense (fully connected) layer, nonlocal in space;
//! - a pointwise function around a term is its activation;
//! - `data.sequence` in a term is the input of a recurrent cell;
//! - `pool(u, k)`, a restriction to the grid of `k` times fewer points per axis by cell averaging,
//!   is an average-pooling layer with a `k × … × k` window and stride `k`; `upsample(u, k)`, a
//!   prolongation by injection, is a nearest-neighbour upsampling layer.
//!
//! Across the steps of a task, parameters that do not depend on `t` are shared: with an input
//! sequence the network is recurrent (an RNN cell applied at every step), otherwise it is a
//! weight-tied residual network. Parameters declared with `t` give every step its own layer. With
//! `Δt = 1` and a `−u` term, the residual cancels: the leaky form `∂u/∂t = −u + σ(W u + b)` gives the
//! plain perceptron layer `u ← σ(W u + b)`. Readouts are the output layers.
//!
//! Every layer keeps the span of the term it comes from, so tools can show `file:line`.

mod recognize;
mod render;

pub use recognize::recognize;
pub use render::{count, render_dot, render_table};

use npdec_diagnostics::Span;
use serde::Serialize;

/// How a convolution pads its input at the boundary: the boundary condition, as a padding mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Dirichlet: the boundary values are fixed, a constant padding.
    Constant,
    /// Neumann: mirrored values across the boundary.
    Reflect,
    /// Robin: a mix of the two, set by the condition's coefficients.
    Mixed,
    /// Periodic: the grid wraps around.
    Circular,
    /// No condition is needed because the layer does not reach across the boundary.
    None,
}

impl Padding {
    pub fn name(self) -> &'static str {
        match self {
            Padding::Constant => "constant",
            Padding::Reflect => "reflect",
            Padding::Mixed => "mixed",
            Padding::Circular => "circular",
            Padding::None => "none",
        }
    }
}

/// What a recognized layer computes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LayerKind {
    /// `u + Δt·branch`: the skip connection of an explicit step.
    Residual { dt: f64 },
    /// The plain layer `u ← branch` of the leaky form with `Δt = τ`.
    Plain,
    /// A convolution; `learnable` is false for a finite-difference stencil with fixed weights.
    Convolution {
        kernel: Vec<usize>,
        in_channels: usize,
        out_channels: usize,
        padding: Padding,
        learnable: bool,
        operator: String,
    },
    /// A fully connected layer `W x` with `W[rows, columns]`.
    Dense { rows: usize, columns: usize },
    /// Average pooling with a window and stride of `factor` along each axis: grid restriction.
    /// The shapes are `[channels, points per axis…]`.
    Pool {
        factor: usize,
        input_shape: Vec<usize>,
        output_shape: Vec<usize>,
    },
    /// Nearest-neighbour upsampling by `factor` along each axis: grid prolongation.
    Upsample {
        factor: usize,
        input_shape: Vec<usize>,
        output_shape: Vec<usize>,
    },
    /// A pointwise activation.
    Activation { function: String },
    /// A pointwise term that is no layer of its own, such as a reaction `u(1 − u)` or a potential.
    Pointwise,
    /// The input of a recurrent cell: one slice of the sample per step.
    SequenceInput,
    /// Several stages per step, as Runge–Kutta methods have: a multi-branch block.
    MultiStage { stages: usize },
    /// An implicit step, a layer defined by a linear solve.
    Implicit { scheme: String },
    /// A step of split-step Fourier: a pointwise phase layer and a propagation in Fourier space.
    SpectralPropagation,
    /// An output layer computed from the final state.
    Readout { name: String },
}

impl LayerKind {
    /// Returns a short name such as `conv 3×3 8→8` or `dense 784→10`.
    pub fn short(&self) -> String {
        match self {
            LayerKind::Residual { .. } => "residual".to_string(),
            LayerKind::Plain => "plain".to_string(),
            LayerKind::Convolution {
                kernel,
                in_channels,
                out_channels,
                learnable,
                ..
            } => {
                let size: Vec<String> = kernel.iter().map(|k| k.to_string()).collect();
                let fixed = if *learnable { "" } else { " fixed" };
                format!(
                    "conv {} {in_channels}→{out_channels}{fixed}",
                    size.join("×")
                )
            }
            LayerKind::Dense { rows, columns } => format!("dense {columns}→{rows}"),
            LayerKind::Pool {
                factor,
                input_shape,
                ..
            } => format!(
                "avg pool {}",
                vec![factor.to_string(); input_shape.len() - 1].join("×")
            ),
            LayerKind::Upsample {
                factor,
                input_shape,
                ..
            } => format!(
                "upsample {} nearest",
                vec![factor.to_string(); input_shape.len() - 1].join("×")
            ),
            LayerKind::Activation { function } => function.clone(),
            LayerKind::Pointwise => "pointwise".to_string(),
            LayerKind::SequenceInput => "sequence input".to_string(),
            LayerKind::MultiStage { stages } => format!("{stages}-stage"),
            LayerKind::Implicit { scheme } => format!("implicit ({scheme})"),
            LayerKind::SpectralPropagation => "phase + Fourier propagation".to_string(),
            LayerKind::Readout { name } => format!("readout {name}"),
        }
    }
}

/// One recognized layer, tied to the source term it comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Layer {
    pub index: usize,
    #[serde(flatten)]
    pub kind: LayerKind,
    /// Shapes as text, for example `u: 8×28×28`.
    pub input: String,
    pub output: String,
    /// Number of learnable values the layer owns (0 for fixed stencils and activations).
    pub parameters: usize,
    /// The source term in the language's syntax.
    pub term: String,
    /// The equation or readout the layer belongs to.
    pub equation: String,
    #[serde(skip)]
    pub span: Span,
    /// The one-based line of `span`, filled in by the caller that knows the source.
    pub line: Option<usize>,
}

/// How the steps of a task relate to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Depth {
    /// Every step shares its parameters and an input sequence enters at each step.
    Recurrent,
    /// Every step shares its parameters: a weight-tied network.
    Tied,
    /// Every step has its own parameters: a deep feed-forward network.
    Untied,
    /// No learnable parameters at all: a fixed network, as a plain PDE solve is.
    Fixed,
}

/// The network one task runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Architecture {
    /// `solve heat` or `train npde`.
    pub task: String,
    /// Number of time steps: the depth of the unrolled network.
    pub steps: usize,
    pub depth: Depth,
    /// The layers of one step, then the readouts.
    pub layers: Vec<Layer>,
    /// Number of learnable values in the whole network, counting per-step parameters once per step.
    pub parameters: usize,
    /// A one-line summary such as `4 × residual(conv 3×3 1→1 fixed + relu) → readout y`.
    pub summary: String,
}
