//! The catalogue of diagnostic codes.
//!
//! A code never changes meaning once released, so editors and scripts can match on it. The long
//! explanation of each code (what it means, an example, the fix) lives in `docs/diagnostics.md`, which
//! is compiled into the binary: `npdec explain E0100` prints the section of that page, and a test
//! checks that every code has one.

use serde::{Serialize, Serializer};

macro_rules! codes {
    ($($variant:ident = $text:literal, $summary:literal;)*) => {
        /// A stable diagnostic code such as `E0100`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in catalogue order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// Returns the code as written in diagnostics, for example `E0100`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// Returns the one-line summary used as the heading in the catalogue.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Code::$variant => $summary,)*
                }
            }
        }
    };
}

codes! {
    // Lexical and syntax errors.
    E0001 = "E0001", "unknown character";
    E0002 = "E0002", "unterminated string literal";
    E0003 = "E0003", "invalid number literal";
    E0004 = "E0004", "model file cannot be read";
    E0010 = "E0010", "unexpected token";
    E0011 = "E0011", "unexpected end of file";
    E0012 = "E0012", "input too deeply nested";
    // Names, modules and calls.
    E0100 = "E0100", "unknown name";
    E0101 = "E0101", "name declared twice";
    E0102 = "E0102", "unknown module";
    E0103 = "E0103", "name not found in module";
    E0104 = "E0104", "unknown function";
    E0105 = "E0105", "wrong number of arguments";
    E0106 = "E0106", "unknown or repeated named argument";
    E0107 = "E0107", "missing required argument";
    E0108 = "E0108", "recursive function";
    E0109 = "E0109", "invalid use of a declaration";
    // Declarations and their clauses.
    E0110 = "E0110", "unknown clause";
    E0111 = "E0111", "clause given twice";
    E0112 = "E0112", "missing clause";
    E0120 = "E0120", "invalid grid";
    E0121 = "E0121", "unknown axis";
    E0122 = "E0122", "invalid shape or channel count";
    E0123 = "E0123", "unknown value type";
    E0130 = "E0130", "value is not a constant";
    E0131 = "E0131", "invalid constant value";
    E0140 = "E0140", "learnable parameter never used";
    E0141 = "E0141", "unknown initializer";
    // Types, shapes and grids.
    E0200 = "E0200", "complex value where a real one is required";
    E0201 = "E0201", "channel count mismatch";
    E0202 = "E0202", "grid mismatch";
    E0203 = "E0203", "matrix shape mismatch";
    E0204 = "E0204", "convolution kernel shape mismatch";
    E0205 = "E0205", "derivative along an axis the operand does not have";
    E0206 = "E0206", "operator needs a field";
    E0207 = "E0207", "invalid operand";
    E0208 = "E0208", "invalid pooling or upsampling";
    // Equations and conditions.
    E0210 = "E0210", "invalid equation left-hand side";
    E0211 = "E0211", "field has more than one equation";
    E0212 = "E0212", "steady equation without an unknown field";
    E0220 = "E0220", "missing initial condition";
    E0221 = "E0221", "missing boundary condition";
    E0222 = "E0222", "conflicting boundary conditions";
    E0223 = "E0223", "unknown boundary condition kind";
    E0224 = "E0224", "invalid boundary side";
    E0225 = "E0225", "periodic condition on one side only";
    E0226 = "E0226", "invalid initial condition";
    // Discretization and tasks.
    E0230 = "E0230", "invalid space order";
    E0231 = "E0231", "fields too large for the available memory";
    E0240 = "E0240", "unknown time scheme";
    E0241 = "E0241", "scheme does not fit the equation";
    E0242 = "E0242", "invalid time stepping";
    E0243 = "E0243", "unknown equation in task";
    E0250 = "E0250", "unknown data format";
    E0251 = "E0251", "data file not found";
    E0252 = "E0252", "output folder not writable";
    E0260 = "E0260", "unknown loss, optimizer, metric or gradient method";
    E0261 = "E0261", "invalid training setup";
    E0270 = "E0270", "expectation is not a comparison";
    E0271 = "E0271", "invalid training metric in an expectation";
    // Builds.
    E0280 = "E0280", "nothing for the chosen `--emit` to build";
    // Warnings.
    W0001 = "W0001", "unused declaration";
    W0002 = "W0002", "unused import";
    W0003 = "W0003", "task falls back to the interpreter";
    W0004 = "W0004", "model without a task";
    W0005 = "W0005", "time step above the stability limit";
    W0006 = "W0006", "solution not finite";
    W0007 = "W0007", "linear solver did not converge";
    W0008 = "W0008", "softmax before a cross-entropy loss";
}

impl Code {
    /// Returns false for the codes that no model text reports: those that `npdec run` reports
    /// while running, such as a task the JIT cannot compile, and E0004 for a file that cannot be
    /// read. `npdec check` finds every other code in the model's text.
    pub fn found_by_check(self) -> bool {
        !matches!(
            self,
            Code::E0004
                | Code::W0003
                | Code::W0004
                | Code::W0005
                | Code::W0006
                | Code::W0007
                | Code::E0231
                | Code::E0252
                | Code::E0280
        )
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Code {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let upper = s.trim().to_ascii_uppercase();
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == upper)
            .ok_or(())
    }
}

/// The documented explanation of a code: its section of `docs/diagnostics.md`.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub code: Code,
    /// The markdown of the section, from its heading to the next one.
    pub text: &'static str,
}

const CATALOGUE: &str = include_str!("../../../docs/diagnostics.md");

impl Code {
    /// Returns the section of `docs/diagnostics.md` about this code, if the page has one.
    pub fn explanation(self) -> Option<Explanation> {
        let heading = format!("## {}", self.as_str());
        let start = CATALOGUE.find(&heading)?;
        let rest = &CATALOGUE[start..];
        let end = rest[heading.len()..]
            .find("\n## ")
            .map_or(rest.len(), |i| i + heading.len() + 1);
        Some(Explanation {
            code: self,
            text: rest[..end].trim_end(),
        })
    }
}
