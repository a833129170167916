//! The error type of the hardware backends. Every failure is returned as a `HardwareError` value;
//! no function of this crate panics on bad input.

use std::fmt;
use std::path::PathBuf;

/// A failure while mapping a weight matrix onto hardware or writing the emitted files.
#[derive(Debug)]
pub enum HardwareError {
    /// The weight matrix has no rows or no columns.
    EmptyMatrix { layer: String },
    /// A weight is NaN or infinite.
    NonFiniteWeight {
        layer: String,
        row: usize,
        column: usize,
    },
    /// A mesh was requested for a matrix that is not square.
    NotSquare { rows: usize, columns: usize },
    /// A mesh was requested for a matrix whose `U* U` differs from the identity by more than the
    /// tolerance.
    NotUnitary { max_deviation: f64, tolerance: f64 },
    /// The singular value decomposition did not converge within its iteration budget.
    SvdFailed {
        layer: String,
        max_iterations: usize,
    },
    /// The matrix rebuilt from the emitted phases and attenuators differs from the input.
    RebuildMismatch {
        layer: String,
        part: &'static str,
        max_abs_error: f64,
        tolerance: f64,
    },
    /// A layer name cannot be used as a file stem.
    InvalidLayerName { name: String },
    /// Two layers share one name, so their files would overwrite each other.
    DuplicateLayerName { name: String },
    /// The conductance range of a crossbar is empty, negative or not finite.
    InvalidConductanceRange { g_min: f64, g_max: f64 },
    /// The input voltage scale of a crossbar is zero, negative or not finite.
    InvalidVoltageScale { volts_per_unit: f64 },
    /// The input vector of a crossbar does not match the number of weight columns.
    InputLengthMismatch { expected: usize, found: usize },
    /// A robustness setting is outside its valid range.
    InvalidRobustnessSetting { message: String },
    /// A diffractive stack or its emission options are not usable.
    InvalidDiffractive { message: String },
    /// Reading or writing a file failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Serialising a JSON file failed.
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Writing a GDSII file failed.
    Gds { path: PathBuf, message: String },
}

impl fmt::Display for HardwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HardwareError::EmptyMatrix { layer } => {
                write!(f, "weight matrix `{layer}` is empty: it needs at least one row and one column")
            }
            HardwareError::NonFiniteWeight { layer, row, column } => write!(
                f,
                "weight matrix `{layer}` has a NaN or infinite entry at row {row}, column {column}"
            ),
            HardwareError::NotSquare { rows, columns } => write!(
                f,
                "a Clements mesh needs a square unitary matrix, found {rows} x {columns}"
            ),
            HardwareError::NotUnitary {
                max_deviation,
                tolerance,
            } => write!(
                f,
                "matrix is not unitary: max |U* U - I| = {max_deviation:.3e} exceeds the tolerance {tolerance:.1e}"
            ),
            HardwareError::SvdFailed {
                layer,
                max_iterations,
            } => write!(
                f,
                "singular value decomposition of `{layer}` did not converge in {max_iterations} iterations"
            ),
            HardwareError::RebuildMismatch {
                layer,
                part,
                max_abs_error,
                tolerance,
            } => write!(
                f,
                "rebuild check failed for `{layer}`: {part} rebuilt from the emitted settings differs by \
                 {max_abs_error:.3e} (max abs), tolerance {tolerance:.1e}"
            ),
            HardwareError::InvalidLayerName { name } => write!(
                f,
                "invalid layer name `{name}`: expected a non-empty name of ASCII letters, digits, `_`, `-` or `.`, \
                 not starting with `.`"
            ),
            HardwareError::DuplicateLayerName { name } => {
                write!(f, "layer name `{name}` is used twice; each layer needs its own file names")
            }
            HardwareError::InvalidConductanceRange { g_min, g_max } => write!(
                f,
                "invalid conductance range [{g_min:e}, {g_max:e}] S: expected finite values with 0 < g_min < g_max"
            ),
            HardwareError::InvalidVoltageScale { volts_per_unit } => write!(
                f,
                "invalid input voltage scale {volts_per_unit:e} V per unit: expected a finite positive value"
            ),
            HardwareError::InputLengthMismatch { expected, found } => write!(
                f,
                "crossbar input has {found} values, expected {expected} (one per weight column)"
            ),
            HardwareError::InvalidRobustnessSetting { message } => {
                write!(f, "invalid robustness setting: {message}")
            }
            HardwareError::InvalidDiffractive { message } => {
                write!(f, "invalid diffractive stack: {message}")
            }
            HardwareError::Io { path, source } => {
                write!(f, "failed to write `{}`: {source}", path.display())
            }
            HardwareError::Json { path, source } => {
                write!(f, "failed to serialise `{}`: {source}", path.display())
            }
            HardwareError::Gds { path, message } => {
                write!(f, "failed to write GDSII file `{}`: {message}", path.display())
            }
        }
    }
}

impl HardwareError {
    /// Names `path` in place of the file an I/O, JSON or GDSII error names, such as the temporary
    /// file of an atomic write.
    pub(crate) fn with_path(self, path: &std::path::Path) -> Self {
        match self {
            HardwareError::Io { source, .. } => HardwareError::Io {
                path: path.to_path_buf(),
                source,
            },
            HardwareError::Json { source, .. } => HardwareError::Json {
                path: path.to_path_buf(),
                source,
            },
            HardwareError::Gds { message, .. } => HardwareError::Gds {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        }
    }
}

impl std::error::Error for HardwareError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HardwareError::Io { source, .. } => Some(source),
            HardwareError::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}
