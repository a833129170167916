//! Terminal concerns: colour, logging and top-level error messages.

use std::io::IsTerminal;

/// Returns true if output to standard error should be coloured: a terminal, and `NO_COLOR` unset.
pub fn stderr_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Sends `tracing` events to standard error; `RUST_LOG` overrides the level set by `-q`/`-v`.
///
/// `-v`, `-vv` and `-vvv` raise the level of npdec's own crates only. Cranelift logs every function
/// it compiles at debug level, so unless `RUST_LOG` names a `cranelift` target, its crates stay at
/// `warn` there too.
pub fn init_logging(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,npdec=info",
        (false, 2) => "warn,npdec=debug",
        _ => "warn,npdec=trace",
    };
    let directives = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => {
            if value.contains("cranelift") {
                value
            } else {
                format!("{value},cranelift=warn")
            }
        }
        _ => default.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_color())
        .without_time()
        .try_init();
}

/// Prints a warning that is not about a span of source, such as a model with nothing to run.
pub fn print_warning(message: &str) {
    if stderr_color() {
        eprintln!("\x1b[1;33mwarning\x1b[0m: {message}");
    } else {
        eprintln!("warning: {message}");
    }
}

/// Prints an error that is not about a span of source, such as an unreadable file.
pub fn print_error(message: &str) {
    if stderr_color() {
        eprintln!("\x1b[1;31merror\x1b[0m: {message}");
    } else {
        eprintln!("error: {message}");
    }
}

/// Prints a status line to stderr, unless `-q` asked for errors only.
pub fn status(quiet: bool, line: &str) {
    if !quiet {
        eprintln!("{line}");
    }
}
