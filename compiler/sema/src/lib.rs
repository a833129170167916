//! The semantic checker: from syntax trees to a checked [`Model`].
//!
//! Checking runs in a fixed order, each step reporting into one diagnostic list and going on after an
//! error so a file shows all its independent problems at once:
//!
//! 1. parse the file and the standard-library modules it `use`s;
//! 2. collect every declaration into one scope (names may be used before they are declared);
//! 3. lower grids, fields, parameters and data sources;
//! 4. lower equations into normal form, then boundary and initial conditions;
//! 5. lower tasks and expectations;
//! 6. whole-model checks: missing conditions, unused declarations.
//!
//! Expressions are lowered together with their type (real or complex) and shape (scalar, grid
//! function with channels, or tensor), so type, shape, channel and grid errors are found here and
//! never reach discretization.

mod clauses;
mod decls;
mod equations;
mod expr;
mod modules;
mod scope;
mod tasks;

use npdec_diagnostics::{suggest, Diagnostic, FileId, SourceMap, Span};
use npdec_symbolic::Model;
use std::path::{Path, PathBuf};

pub use modules::{stdlib_module_names, stdlib_source, STDLIB_MODULES};
pub use scope::{builtin_names, KEYWORDS};

/// Options of one check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// The folder that data paths are relative to: the model file's folder. Data files are only
    /// looked for when this is set.
    pub base_dir: Option<PathBuf>,
}

/// The outcome of checking one file.
#[derive(Debug)]
pub struct Checked {
    /// The model, when there was no error (warnings allowed).
    pub model: Option<Model>,
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// The syntax tree of the checked file, for tools such as the language server.
    pub module: npdec_syntax::ast::Module,
    /// The model as far as checking got: with errors, declarations that failed are missing. Editors
    /// use it to describe names in files that do not check yet.
    pub partial: Model,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Checks one file already added to `sources`. Standard-library modules it uses are added too.
pub fn check(sources: &mut SourceMap, file: FileId, options: &CheckOptions) -> Checked {
    let text = sources.get(file).text.clone();
    let (module, mut diagnostics) = npdec_syntax::parse(file, &text);
    let default_name = model_name_from_file(&sources.get(file).name);
    let mut checker = scope::Checker::new(sources, options, default_name);
    checker.model.span = Span::new(file, 0, 0);
    checker.diagnostics.append(&mut diagnostics);
    checker.check_module(&module);
    let (model, mut diagnostics) = checker.finish();
    diagnostics.sort_by(|a, b| {
        (a.span().file, a.span().start, a.code).cmp(&(b.span().file, b.span().start, b.code))
    });
    diagnostics.dedup();
    let partial = model.clone();
    let model = if diagnostics.iter().any(Diagnostic::is_error) {
        None
    } else {
        Some(model)
    };
    Checked {
        partial,
        model,
        diagnostics,
        module,
    }
}

/// Reads and checks a file from disk. A read error is returned as `Err`.
pub fn check_path(path: &Path) -> std::io::Result<(SourceMap, Checked)> {
    let text = std::fs::read_to_string(path)?;
    let mut sources = SourceMap::new();
    let file = sources.add(path.display().to_string(), text);
    let options = CheckOptions {
        base_dir: Some(path.parent().map(Path::to_path_buf).unwrap_or_default()),
    };
    let checked = check(&mut sources, file, &options);
    Ok((sources, checked))
}

fn model_name_from_file(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned())
}
