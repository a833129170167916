//! `docs/diagnostics.md`: every code has a section whose example program reports that code.

use npdec_diagnostics::{Code, SourceMap};
use npdec_sema::CheckOptions;
use std::collections::BTreeSet;
use std::path::Path;

const CATALOGUE: &str = include_str!("../../docs/diagnostics.md");

/// Returns the body of the first ```npde block after `marker` in `section`.
fn npde_block_after<'a>(section: &'a str, marker: &str) -> Option<&'a str> {
    let after_marker = &section[section.find(marker)? + marker.len()..];
    let body = &after_marker[after_marker.find("```npde\n")? + "```npde\n".len()..];
    Some(&body[..body.find("```")?])
}

#[test]
fn every_code_has_a_section() {
    for code in Code::ALL {
        let heading = format!("\n## {}: {}\n", code.as_str(), code.summary());
        assert!(
            CATALOGUE.contains(&heading),
            "docs/diagnostics.md has no heading `{}`",
            heading.trim()
        );
        let section = code.explanation().expect("the section exists").text;
        assert!(section.contains("**Example**"), "{code}: no **Example**");
        assert!(section.contains("**Fix**"), "{code}: no **Fix**");
        // Codes that only `npdec run` reports may show the fix as a command instead.
        let fix_is_command = !code.found_by_check()
            && section
                .find("**Fix**")
                .is_some_and(|at| section[at..].contains("```sh\n"));
        assert!(
            npde_block_after(section, "**Fix**").is_some() || fix_is_command,
            "{code}: the fix has no ```npde block"
        );
    }
}

#[test]
fn every_section_is_a_known_code() {
    for line in CATALOGUE.lines().filter(|l| l.starts_with("## ")) {
        let code = line[3..].split(':').next().unwrap_or_default();
        assert!(
            code.parse::<Code>().is_ok(),
            "docs/diagnostics.md documents `{code}`, which is not in Code::ALL"
        );
    }
}

#[test]
fn every_example_reports_its_code() {
    // Examples name data files as if they sat in `examples/`, next to `examples/data`.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .join("examples");
    let options = CheckOptions {
        base_dir: Some(examples),
    };
    let mut failures = Vec::new();
    for code in Code::ALL.iter().filter(|code| code.found_by_check()) {
        let section = code.explanation().expect("the section exists").text;
        let Some(program) = npde_block_after(section, "**Example**") else {
            failures.push(format!("{code}: the example has no ```npde block"));
            continue;
        };
        let mut sources = SourceMap::new();
        let file = sources.add(format!("{code}.npde"), program);
        let checked = npdec_sema::check(&mut sources, file, &options);
        let reported: BTreeSet<Code> = checked.diagnostics.iter().map(|d| d.code).collect();
        if reported != BTreeSet::from([*code]) {
            failures.push(format!(
                "{code}: the example reports {:?}, expected only {code}",
                reported.iter().map(|c| c.as_str()).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The examples of the warnings that `npdec run` reports while solving report their code, on the
/// terminal and at the start of their entry under `warnings` in `summary.json`.
#[test]
fn run_warning_examples_report_their_code() {
    let dir = std::env::temp_dir().join(format!("npdec_run_warnings_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    for code in [Code::W0005, Code::W0006, Code::W0007] {
        let section = code.explanation().expect("the section exists").text;
        let program = npde_block_after(section, "**Example**").expect("an example program");
        let file = dir.join(format!("{code}.npde"));
        std::fs::write(&file, program).expect("write the example");
        let out = dir.join(format!("{code}_out"));
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_npdec"))
            .arg("run")
            .arg(&file)
            .arg("--out")
            .arg(&out)
            .env("NO_COLOR", "1")
            .output()
            .expect("the npdec binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{code}: {stderr}");
        assert!(
            stderr.contains(&format!("[{code}] Warning: ")),
            "{code}: {stderr}"
        );
        let summary: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("summary.json")).expect("summary.json is written"),
        )
        .expect("summary.json is JSON");
        let warnings = summary["warnings"].as_array().expect("a list of warnings");
        assert_eq!(warnings.len(), 1, "{code}: {summary}");
        let warning = warnings[0].as_str().expect("a string");
        assert!(
            warning.starts_with(&format!("{code}: ")),
            "{code}: {warning}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The docs spell the help line of a rendered diagnostic as the renderer prints it, `Help:`.
#[test]
fn docs_spell_help_line_as_rendered() {
    let mut sources = SourceMap::new();
    let file = sources.add("x.npde", "x $ y\n");
    let diagnostic = npdec_diagnostics::Diagnostic::error(
        Code::E0001,
        "unknown character `$`",
        npdec_diagnostics::Span::new(file, 2, 3),
        "not a token",
    )
    .with_help("remove it");
    let rendered = npdec_diagnostics::render(
        &diagnostic,
        &sources,
        npdec_diagnostics::RenderOptions { color: false },
    );
    assert!(rendered.contains("Help: remove it"), "{rendered}");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let docs = std::fs::read_dir(root.join("docs"))
        .expect("docs folder")
        .map(|entry| entry.expect("docs entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .chain([root.join("README.md")]);
    for path in docs {
        let text = std::fs::read_to_string(&path).expect("readable doc");
        assert!(
            !text.contains("`help:`"),
            "{} writes `help:`, but diagnostics print `Help:`",
            path.display()
        );
    }
}
