//! The checked model: what a `.npde` file means once names, types and shapes are resolved.
//!
//! The semantic checker (`npdec-sema`) produces a [`Model`]; discretization (`npdec-ir`) consumes it.
//! Nothing here refers to syntax: names are resolved to ids, constants are folded to numbers,
//! user functions are inlined, and every equation is in the normal form
//! `∂ᵏu/∂tᵏ = Σ terms` (or `residual = 0` for a steady equation).
//!
//! Invariants that the checker guarantees and later stages rely on:
//! - every id indexes the matching vector of the model;
//! - every field with a time-dependent equation has an initial condition (two for second order in time)
//!   and a boundary condition on both sides of each of its interval axes;
//! - an axis is periodic exactly when every field on it has periodic conditions on both of its sides;
//! - real fields have real right-hand sides;
//! - derivatives only name axes of the operand's fields.

mod display;
pub mod expr;
pub mod model;

pub use expr::{BinaryOp, CompareOp, Expr, Function, ReduceOp, Resample, UnaryOp};
pub use model::*;
