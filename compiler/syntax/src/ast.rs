//! The syntax tree. Every node carries the byte span of the source it was parsed from.
//!
//! The tree keeps what was written, not what it means: clause names such as `points` or `until` are
//! plain identifiers here, and the checker decides which ones each declaration accepts. This keeps the
//! grammar small and lets the checker list the valid choices when one is misspelled.

use npdec_diagnostics::Span;

/// A name as written, with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A parsed file: its items in source order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Module {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    /// `use std::ops::laplace`, `use std::ops::*`, `use std::ops::{a, b}`.
    Use(UseItem),
    /// `model heat1d`: the model's name, used for the output folder.
    Model(Ident),
    /// `grid x in [0, 1] points 101`, `grid (x, y) in ([0, 1], [0, 2]) points (65, 129)`.
    Grid {
        axes: Vec<Ident>,
        clauses: Vec<Clause>,
    },
    /// `field u(x, y)[3]: complex`.
    Field {
        name: Ident,
        axes: Vec<Ident>,
        channels: Option<Expr>,
        ty: Option<Ident>,
    },
    /// `const nu: real = 0.01`.
    Const {
        name: Ident,
        ty: Option<Ident>,
        value: Expr,
    },
    /// `param W(t)[64, 64]: real ~ glorot learnable`.
    Param(ParamItem),
    /// `data mnist = idx("images.gz", "labels.gz") split 8000 scale 1/255`.
    Data {
        name: Ident,
        source: Expr,
        clauses: Vec<Clause>,
    },
    /// `equation heat: dt(u) = nu * laplace(u)`, or a block of equations in braces.
    Equation {
        name: Ident,
        equations: Vec<EquationSyntax>,
    },
    /// `boundary u: dirichlet(0) on x.min, y`.
    Boundary {
        field: Expr,
        condition: Expr,
        sides: Vec<Expr>,
    },
    /// `initial u = sin(pi * x)` or `initial dt(u) = 0`.
    Initial { target: Expr, value: Expr },
    /// `readout y = W @ u + b`.
    Readout { name: Ident, value: Expr },
    /// `fn swish(x) = x * sigmoid(x)`.
    Function {
        name: Ident,
        params: Vec<Ident>,
        body: Expr,
    },
    /// `solve heat using rk4(dt = 1e-4) until 0.1 every 100`.
    Task {
        kind: TaskKind,
        equations: Vec<Ident>,
        clauses: Vec<Clause>,
    },
    /// `expect max(abs(u - exact)) < 1e-3`.
    Expect(Expr),
    /// An item that failed to parse; its diagnostic was already reported.
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    Solve,
    Train,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UseItem {
    /// The module path, such as `std`, `ops`.
    pub path: Vec<Ident>,
    pub imports: UseImports,
}

#[derive(Clone, Debug, PartialEq)]
pub enum UseImports {
    /// `use std::ops`: the last path segment names a module whose declarations all come into scope.
    Module,
    /// `use std::ops::*`.
    Glob(Span),
    /// `use std::ops::laplace` or `use std::ops::{a, b}`: the names listed.
    Names(Vec<Ident>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamItem {
    pub name: Ident,
    /// Axes in parentheses; `t` among them means one value per time step.
    pub axes: Vec<Ident>,
    pub dims: Vec<Expr>,
    pub ty: Option<Ident>,
    pub init: Option<ParamInit>,
    pub mode: Option<(ParamMode, Span)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ParamInit {
    /// `= expr`: a value, or an expression of the coordinates.
    Value(Expr),
    /// `~ glorot`, `~ normal(0, 0.1)`: a random or named initializer.
    Initializer(Expr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamMode {
    Learnable,
    Fixed,
}

/// `lhs = rhs` inside an equation declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct EquationSyntax {
    pub lhs: Expr,
    pub rhs: Expr,
    pub span: Span,
}

/// A clause such as `points 101` or `metrics accuracy, loss`: a name and one or more values.
#[derive(Clone, Debug, PartialEq)]
pub struct Clause {
    pub name: Ident,
    pub values: Vec<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Number(f64),
    Imaginary(f64),
    String(String),
    Name(Ident),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Compare(CompareOp, Box<Expr>, Box<Expr>),
    Call {
        callee: Ident,
        args: Vec<Arg>,
    },
    /// `u[0]`: one channel of a field, or an entry of a vector.
    Index {
        base: Box<Expr>,
        indices: Vec<Expr>,
    },
    /// `x.min`.
    Member {
        base: Box<Expr>,
        member: Ident,
    },
    Tuple(Vec<Expr>),
    List(Vec<Expr>),
}

/// A call argument, positional or named (`dt = 1e-4`).
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Plus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    MatMul,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Pow => "^",
            BinaryOp::MatMul => "@",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Less => "<",
            CompareOp::LessEqual => "<=",
            CompareOp::Greater => ">",
            CompareOp::GreaterEqual => ">=",
            CompareOp::Equal => "==",
            CompareOp::NotEqual => "!=",
        }
    }
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Expr { kind, span }
    }

    /// Returns the name if this expression is a bare name.
    pub fn as_name(&self) -> Option<&Ident> {
        match &self.kind {
            ExprKind::Name(ident) => Some(ident),
            _ => None,
        }
    }
}
