//! The checker's state: the scope of declarations and the model being built.

use crate::expr::Typed;
use crate::CheckOptions;
use npdec_diagnostics::{Code, Diagnostic, SourceMap, Span};
use npdec_symbolic::{AxisId, DataId, EquationId, FieldId, Model, ParamId};
use npdec_syntax::ast::{self, Ident, ItemKind};
use std::collections::HashMap;

/// Keywords of the language, for completion in editors and the REPL.
pub const KEYWORDS: &[&str] = npdec_syntax::lexer::Token::KEYWORDS;

/// Names built into the language: operators, functions and the values `t` and `pi`.
pub fn builtin_names() -> &'static [&'static str] {
    BUILTINS
}

pub(crate) const BUILTINS: &[&str] = &[
    "t", "pi", "input", "label", "dt", "dt2", "diff", "laplace", "grad", "div", "upwind", "conv",
    "pool", "upsample", "tanh", "relu", "sigmoid", "exp", "log", "sin", "cos", "abs", "sqrt",
    "conj", "re", "im", "max", "min", "softmax", "sum", "mean", "norm", "integral",
];

/// The evaluation state of a constant, so that cycles are found instead of overflowing the stack.
#[derive(Clone, Debug)]
pub(crate) enum Lazy {
    Pending,
    InProgress,
    Done(Option<Typed>),
}

#[derive(Clone, Debug)]
pub(crate) enum DeclKind {
    Axis(Option<AxisId>),
    Field(Option<FieldId>),
    Const {
        value: ast::Expr,
        ty: Option<Ident>,
        state: Lazy,
    },
    Param(Option<ParamId>),
    Data(Option<DataId>),
    /// A user or library function; `module` names the standard-library module it comes from, whose
    /// other functions its body may call.
    Function {
        params: Vec<Ident>,
        body: ast::Expr,
        module: Option<String>,
    },
    Readout {
        value: ast::Expr,
        state: Lazy,
    },
    Equation(Vec<EquationId>),
    /// A name whose declaration failed to parse or whose import failed. That error is already
    /// reported, so uses of the name are accepted without further diagnostics.
    Unparsed,
}

impl DeclKind {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            DeclKind::Axis(_) => "grid axis",
            DeclKind::Field(_) => "field",
            DeclKind::Const { .. } => "constant",
            DeclKind::Param(_) => "parameter",
            DeclKind::Data(_) => "data source",
            DeclKind::Function { .. } => "function",
            DeclKind::Readout { .. } => "readout",
            DeclKind::Equation(_) => "equation",
            DeclKind::Unparsed => "declaration",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Decl {
    pub name: String,
    pub span: Span,
    pub kind: DeclKind,
    pub used: bool,
    /// Declarations imported from the standard library are never reported as unused.
    pub imported: bool,
}

/// An imported name, tracked to report unused imports.
#[derive(Clone, Debug)]
pub(crate) struct Import {
    pub span: Span,
    pub names: Vec<String>,
    pub module: String,
}

pub(crate) struct Checker<'s> {
    pub sources: &'s mut SourceMap,
    pub options: &'s CheckOptions,
    pub diagnostics: Vec<Diagnostic>,
    pub decls: Vec<Decl>,
    pub names: HashMap<String, usize>,
    pub imports: Vec<Import>,
    pub model: Model,
    /// Function parameters in scope while a function body is lowered, innermost last.
    pub locals: Vec<HashMap<String, Typed>>,
    /// Functions being inlined, to reject recursion.
    pub call_stack: Vec<String>,
    pub model_name_span: Option<Span>,
    /// Built-in names the model uses, so importing one from `std` does not count as unused.
    pub used_builtins: std::collections::HashSet<String>,
    /// The standard-library module whose function body is being inlined, innermost last.
    pub module_stack: Vec<String>,
    /// True when a statement of the file failed to parse. The check for missing conditions is skipped
    /// then, since the missing condition may sit in that statement.
    pub has_unparsed_items: bool,
    /// True when an equation, boundary or initial statement did not lower, after an error in it or
    /// in a declaration it uses. The check for missing conditions is skipped then.
    pub conditions_incomplete: bool,
}

impl<'s> Checker<'s> {
    pub(crate) fn new(sources: &'s mut SourceMap, options: &'s CheckOptions, name: String) -> Self {
        Checker {
            sources,
            options,
            diagnostics: Vec::new(),
            decls: Vec::new(),
            names: HashMap::new(),
            imports: Vec::new(),
            model: Model {
                name,
                ..Model::default()
            },
            locals: Vec::new(),
            call_stack: Vec::new(),
            model_name_span: None,
            used_builtins: Default::default(),
            module_stack: Vec::new(),
            has_unparsed_items: false,
            conditions_incomplete: false,
        }
    }

    pub(crate) fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Declares a name, reporting a duplicate or a clash with a built-in name.
    pub(crate) fn declare(
        &mut self,
        ident: &Ident,
        kind: DeclKind,
        imported: bool,
    ) -> Option<usize> {
        if BUILTINS.contains(&ident.name.as_str()) {
            self.error(
                Diagnostic::error(
                    Code::E0101,
                    format!("`{}` is a built-in name", ident.name),
                    ident.span,
                    "cannot be declared",
                )
                .with_help("choose another name"),
            );
            return None;
        }
        if let Some(&previous) = self.names.get(&ident.name) {
            let earlier = &self.decls[previous];
            if imported && earlier.imported {
                // Importing the same standard-library name twice is harmless.
                return Some(previous);
            }
            let diagnostic = Diagnostic::error(
                Code::E0101,
                format!("`{}` is declared twice", ident.name),
                ident.span,
                "declared again here",
            )
            .with_label(
                earlier.span,
                format!("first declared here as a {}", earlier.kind.describe()),
            )
            .with_help("rename one of the two declarations");
            self.error(diagnostic);
            return None;
        }
        self.decls.push(Decl {
            name: ident.name.clone(),
            span: ident.span,
            kind,
            used: false,
            imported,
        });
        self.names.insert(ident.name.clone(), self.decls.len() - 1);
        Some(self.decls.len() - 1)
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }

    /// Runs every checking step over a parsed file.
    pub(crate) fn check_module(&mut self, module: &ast::Module) {
        self.collect(module);
        self.lower_grids(module);
        self.lower_fields(module);
        self.lower_params(module);
        self.lower_data(module);
        self.lower_consts();
        self.lower_equations(module);
        self.lower_boundaries(module);
        self.model.refresh_resampled_axes();
        self.lower_initials(module);
        self.lower_readouts();
        self.lower_tasks(module);
        self.lower_expects(module);

        // A statement that failed to parse or to check may hold the missing condition or the missing
        // use, so the whole-model checks run only when nothing they depend on failed.
        if !self.has_unparsed_items && !self.conditions_incomplete {
            self.check_conditions_complete();
        }
        if self.error_count() == 0 {
            self.check_unused();
        }
    }

    fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Registers every named declaration, so that names may be used before their declaration.
    fn collect(&mut self, module: &ast::Module) {
        for item in &module.items {
            match &item.kind {
                ItemKind::Use(use_item) => self.import(use_item, item.span),
                ItemKind::Model(name) => {
                    if let Some(first) = self.model_name_span {
                        self.error(
                            Diagnostic::error(
                                Code::E0101,
                                "the model is named twice",
                                name.span,
                                "second `model` statement",
                            )
                            .with_label(first, "first named here")
                            .with_help("keep one `model` statement"),
                        );
                    } else {
                        self.model.name = name.name.clone();
                        self.model.span = name.span;
                        self.model_name_span = Some(name.span);
                    }
                }
                ItemKind::Grid { axes, .. } => {
                    for axis in axes {
                        self.declare(axis, DeclKind::Axis(None), false);
                    }
                }
                ItemKind::Field { name, .. } => {
                    self.declare(name, DeclKind::Field(None), false);
                }
                ItemKind::Const { name, ty, value } => {
                    self.declare(
                        name,
                        DeclKind::Const {
                            value: value.clone(),
                            ty: ty.clone(),
                            state: Lazy::Pending,
                        },
                        false,
                    );
                }
                ItemKind::Param(param) => {
                    self.declare(&param.name, DeclKind::Param(None), false);
                }
                ItemKind::Data { name, .. } => {
                    self.declare(name, DeclKind::Data(None), false);
                }
                ItemKind::Function { name, params, body } => {
                    self.declare(
                        name,
                        DeclKind::Function {
                            params: params.clone(),
                            body: body.clone(),
                            module: None,
                        },
                        false,
                    );
                }
                ItemKind::Readout { name, value } => {
                    self.declare(
                        name,
                        DeclKind::Readout {
                            value: value.clone(),
                            state: Lazy::Pending,
                        },
                        false,
                    );
                }
                ItemKind::Equation { name, .. } => {
                    self.declare(name, DeclKind::Equation(Vec::new()), false);
                }
                ItemKind::Boundary { .. }
                | ItemKind::Initial { .. }
                | ItemKind::Task { .. }
                | ItemKind::Expect(_) => {}
                ItemKind::Error => self.has_unparsed_items = true,
            }
        }
        // Names from statements that failed to parse come last, so that they never clash with a
        // declaration that did parse.
        for item in &module.items {
            if let ItemKind::Error = item.kind {
                for name in self.names_in_unparsed(item.span) {
                    if self.lookup(&name.name).is_none() && !BUILTINS.contains(&name.name.as_str())
                    {
                        self.declare(&name, DeclKind::Unparsed, false);
                    }
                }
            }
        }
    }

    /// Returns the names that a statement which failed to parse was declaring, such as `u` in
    /// `field u x`, `x` and `y` in `grid (x, y) in [0, 1] point 11`, or `heat` in
    /// `equaton heat: dt(u) = laplace(u)`, where a line starts with a misspelled keyword.
    fn names_in_unparsed(&self, span: Span) -> Vec<Ident> {
        use npdec_syntax::lexer::Token;
        let text = self
            .sources
            .get(span.file)
            .text
            .get(span.range())
            .unwrap_or("");
        let tokens = npdec_syntax::lexer::tokenize(span.file, text, &mut Vec::new());
        let ident = |index: usize| match tokens.get(index) {
            Some((start, Token::Ident(name), end)) => Some(Ident {
                name: name.clone(),
                span: Span::new(
                    span.file,
                    span.start as usize + start,
                    span.start as usize + end,
                ),
            }),
            _ => None,
        };
        // The statement starts at the first token. A misspelled keyword at the start of a later line
        // starts another statement, which the parser swallowed into this one.
        let mut starts: Vec<(usize, &str)> = Vec::new();
        for (index, (start, token, _)) in tokens.iter().enumerate() {
            let starts_line = index == 0
                || text
                    .get(tokens[index - 1].2..*start)
                    .is_some_and(|gap| gap.contains('\n'));
            let keyword = match token {
                Token::Ident(name) if starts_line => Token::statement_keyword_typo(name),
                _ if index == 0 => Some(token.text()),
                _ => None,
            };
            if let Some(keyword) = keyword {
                starts.push((index, keyword));
            }
        }
        let mut names = Vec::new();
        for (index, keyword) in starts {
            match keyword {
                "field" | "const" | "param" | "data" | "equation" | "readout" | "fn" => {
                    names.extend(ident(index + 1))
                }
                "grid" if matches!(tokens.get(index + 1), Some((_, Token::LParen, _))) => names
                    .extend((index + 2..).step_by(2).map_while(|i| {
                        let name = ident(i)?;
                        matches!(
                            tokens.get(i + 1),
                            Some((_, Token::Comma | Token::RParen, _))
                        )
                        .then_some(name)
                    })),
                "grid" => names.extend(ident(index + 1)),
                _ => {}
            }
        }
        names
    }

    /// Ends checking and returns the model with all diagnostics.
    pub(crate) fn finish(mut self) -> (Model, Vec<Diagnostic>) {
        self.model.refresh_resampled_axes();
        (self.model, self.diagnostics)
    }

    /// Warns about declarations and imports that nothing uses.
    fn check_unused(&mut self) {
        // A file without equations or tasks is a library of functions, which exist to be imported.
        let is_library = self.model.equations.is_empty() && self.model.tasks.is_empty();
        let mut warnings = Vec::new();
        for decl in &self.decls {
            if decl.used || decl.imported || decl.name.starts_with('_') {
                continue;
            }
            if is_library && matches!(decl.kind, DeclKind::Function { .. }) {
                continue;
            }
            match &decl.kind {
                // Equations are used by tasks; an equation no task solves is still worth a warning.
                DeclKind::Param(Some(id)) if self.model.params[id.0].learnable => {
                    warnings.push(
                        Diagnostic::error(
                            Code::E0140,
                            format!("learnable parameter `{}` is never used", decl.name),
                            decl.span,
                            "training would never change it",
                        )
                        .with_help(
                            "use it in an equation or readout, mark it `fixed`, or remove it",
                        ),
                    );
                }
                DeclKind::Param(None)
                | DeclKind::Axis(None)
                | DeclKind::Field(None)
                | DeclKind::Data(None) => {}
                kind => warnings.push(
                    Diagnostic::warning(
                        Code::W0001,
                        format!("{} `{}` is never used", kind.describe(), decl.name),
                        decl.span,
                        "declared here",
                    )
                    .with_help(format!(
                        "remove it, or prefix its name with `_` to keep it: `_{}`",
                        decl.name
                    )),
                ),
            }
        }
        for import in &self.imports {
            let used = import.names.iter().any(|n| {
                self.used_builtins.contains(n) || self.lookup(n).is_some_and(|i| self.decls[i].used)
            });
            if !used && !import.names.is_empty() {
                warnings.push(
                    Diagnostic::warning(
                        Code::W0002,
                        format!("unused import from `{}`", import.module),
                        import.span,
                        "nothing imported here is used",
                    )
                    .with_help("remove this `use`"),
                );
            }
        }
        self.diagnostics.extend(warnings);
    }
}
