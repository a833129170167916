//! `npdec explain CODE`: the documented explanation of a diagnostic code.

use npdec_diagnostics::Code;
use std::process::ExitCode;

pub fn run(code: &str) -> Result<ExitCode, String> {
    let parsed: Code = code.parse().map_err(|()| {
        format!("`{code}` is not a diagnostic code; codes look like E0100 or W0001 (see docs/diagnostics.md)")
    })?;
    let explanation = parsed
        .explanation()
        .ok_or_else(|| format!("no explanation is documented for {parsed}"))?;
    println!("{}", explanation.text);
    Ok(ExitCode::SUCCESS)
}
