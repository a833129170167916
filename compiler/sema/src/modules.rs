//! The standard library: `.npde` modules compiled into the binary, and `use` resolution.
//!
//! `use std::M` imports every function of module `M`; `use std::M::name`, `use std::M::{a, b}` and
//! `use std::M::*` import the names listed (or all). Built-in operators such as `laplace` are always in
//! scope; importing them from the module that documents them is allowed and has no effect.
//! Library functions are also declared under their qualified name `M::name`, so that a library
//! function calling another one of its module works whatever the user imported.

use crate::scope::{Checker, DeclKind, Import};
use npdec_diagnostics::{one_of, Code, Diagnostic, Span};
use npdec_syntax::ast::{ItemKind, UseImports, UseItem};

/// The standard-library modules: name, built-in names they document, and source.
pub const STDLIB_MODULES: &[(&str, &[&str], &str)] = &[
    (
        "ops",
        &[
            "dt", "dt2", "diff", "laplace", "grad", "div", "upwind", "conv", "pool", "upsample",
            "sum", "mean", "norm", "integral", "max", "min",
        ],
        include_str!("../../../stdlib/ops.npde"),
    ),
    (
        "activations",
        &[
            "tanh", "relu", "sigmoid", "exp", "log", "sin", "cos", "abs", "sqrt", "softmax",
            "conj", "re", "im",
        ],
        include_str!("../../../stdlib/activations.npde"),
    ),
    (
        "equations",
        &[],
        include_str!("../../../stdlib/equations.npde"),
    ),
    ("layers", &[], include_str!("../../../stdlib/layers.npde")),
];

/// Returns the names of the standard-library modules.
pub fn stdlib_module_names() -> Vec<&'static str> {
    STDLIB_MODULES.iter().map(|m| m.0).collect()
}

/// Returns the source of a standard-library module.
pub fn stdlib_source(module: &str) -> Option<&'static str> {
    STDLIB_MODULES.iter().find(|m| m.0 == module).map(|m| m.2)
}

impl Checker<'_> {
    pub(crate) fn import(&mut self, item: &UseItem, span: Span) {
        let path: Vec<&str> = item.path.iter().map(|i| i.name.as_str()).collect();
        if path[0] != "std" {
            self.error(
                Diagnostic::error(Code::E0102, format!("unknown module `{}`", path[0]), item.path[0].span, "not a module")
                    .with_help("modules live in the standard library: write `use std::ops`, `use std::activations`, `use std::equations` or `use std::layers`"),
            );
            return;
        }
        let Some(module_ident) = item.path.get(1) else {
            self.error(
                Diagnostic::error(
                    Code::E0102,
                    "`use std` needs a module name",
                    span,
                    "which module?",
                )
                .with_help(format!("name one of {}", one_of(&stdlib_module_names()))),
            );
            return;
        };
        let Some(&(module, builtins, source)) =
            STDLIB_MODULES.iter().find(|m| m.0 == module_ident.name)
        else {
            let suggestion = crate::suggest::closest(&module_ident.name, stdlib_module_names());
            let mut diagnostic = Diagnostic::error(
                Code::E0102,
                format!("unknown module `std::{}`", module_ident.name),
                module_ident.span,
                "no such module in the standard library",
            )
            .with_help(format!(
                "the modules are {}",
                one_of(&stdlib_module_names())
            ));
            if let Some(s) = suggestion {
                diagnostic = diagnostic
                    .with_note(format!("a module with a similar name exists: `std::{s}`"));
            }
            self.error(diagnostic);
            return;
        };
        let functions = self.load_module(module, source);

        // `use std::M::name` arrives as a three-segment module path.
        let (requested, glob) = match (&item.imports, item.path.len()) {
            (UseImports::Module, 2) => (None, false),
            (UseImports::Module, 3) => (Some(vec![item.path[2].clone()]), false),
            (UseImports::Glob(_), 2) => (None, true),
            (UseImports::Names(names), 2) => (Some(names.clone()), false),
            _ => {
                self.error(
                    Diagnostic::error(
                        Code::E0102,
                        "module paths have two parts",
                        span,
                        "too many `::` segments",
                    )
                    .with_help(format!(
                        "write `use std::{module}` or `use std::{module}::name`"
                    )),
                );
                return;
            }
        };
        let mut imported = Vec::new();
        match requested {
            None => {
                // `use std::M` and `use std::M::*` both import every name of the module.
                let _ = glob;
                for name in &functions {
                    imported.push(name.clone());
                    self.alias(module, name, span);
                }
                imported.extend(builtins.iter().map(|b| b.to_string()));
            }
            Some(names) => {
                for name in names {
                    if builtins.contains(&name.name.as_str()) {
                        imported.push(name.name.clone());
                    } else if functions.contains(&name.name) {
                        imported.push(name.name.clone());
                        self.alias(module, &name.name, name.span);
                    } else {
                        let candidates: Vec<&str> = functions
                            .iter()
                            .map(String::as_str)
                            .chain(builtins.iter().copied())
                            .collect();
                        let mut diagnostic = Diagnostic::error(
                            Code::E0103,
                            format!("`{}` is not in `std::{module}`", name.name),
                            name.span,
                            "not found in this module",
                        );
                        let elsewhere = STDLIB_MODULES.iter().find_map(|(other, _, source)| {
                            source
                                .contains(&format!("fn {}(", name.name))
                                .then_some(*other)
                        });
                        diagnostic = match (
                            elsewhere,
                            crate::suggest::closest(&name.name, candidates.iter().copied()),
                        ) {
                            (Some(other), _) => diagnostic.with_help(format!(
                                "`{}` is in `std::{other}`: write `use std::{other}::{}`",
                                name.name, name.name
                            )),
                            (None, Some(s)) => diagnostic.with_help(format!("did you mean `{s}`?")),
                            (None, None) => diagnostic.with_help(format!(
                                "`std::{module}` contains {}",
                                one_of(&candidates)
                            )),
                        };
                        self.error(diagnostic);
                        // Uses of the name would only repeat this error.
                        if self.lookup(&name.name).is_none() {
                            self.declare(&name, DeclKind::Unparsed, true);
                        }
                    }
                }
            }
        }
        self.imports.push(Import {
            span,
            names: imported,
            module: format!("std::{module}"),
        });
    }

    /// Parses a library module once and declares its functions under qualified names.
    fn load_module(&mut self, module: &str, source: &str) -> Vec<String> {
        let file_name = format!("stdlib/{module}.npde");
        let first_load = self.sources.find(&file_name).is_none();
        let file = self
            .sources
            .find(&file_name)
            .unwrap_or_else(|| self.sources.add(file_name.clone(), source));
        let (parsed, diagnostics) = npdec_syntax::parse(file, source);
        if first_load {
            self.diagnostics.extend(diagnostics);
        }
        let mut functions = Vec::new();
        for item in &parsed.items {
            if let ItemKind::Function { name, params, body } = &item.kind {
                functions.push(name.name.clone());
                if first_load {
                    let qualified = format!("{module}::{}", name.name);
                    let kind = DeclKind::Function {
                        params: params.clone(),
                        body: body.clone(),
                        module: Some(module.to_string()),
                    };
                    self.decls.push(crate::scope::Decl {
                        name: qualified.clone(),
                        span: name.span,
                        kind,
                        used: false,
                        imported: true,
                    });
                    self.names.insert(qualified, self.decls.len() - 1);
                }
            }
        }
        functions
    }

    /// Makes a library function visible under its short name.
    fn alias(&mut self, module: &str, name: &str, span: Span) {
        let qualified = &self.decls[self.names[&format!("{module}::{name}")]];
        let kind = qualified.kind.clone();
        let ident = npdec_syntax::ast::Ident {
            name: name.to_string(),
            span,
        };
        self.declare(&ident, kind, true);
    }
}
