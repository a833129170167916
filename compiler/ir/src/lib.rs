//! Finite-difference discretization and the dataflow IR.
