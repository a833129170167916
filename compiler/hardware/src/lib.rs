//! Hardware backends of npdec: a dense weight matrix becomes a photonic Mach–Zehnder mesh
//! ([`photonic`], files written by [`emit_photonic`]) or a resistive crossbar SPICE netlist
//! ([`spice`], written by [`emit_spice`]). Each emitter rebuilds the weights from what it wrote
//! and rejects a layout that does not reproduce them.

pub mod error;
pub mod photonic;
pub mod random;

pub use error::HardwareError;
