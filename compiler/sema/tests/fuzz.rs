//! Mutation fuzzing of the front end: no input may make checking panic, and every diagnostic must
//! point inside its file and render.
//!
//! Inputs are random bytes and mutations of the example and library models (deleted, repeated and
//! swapped ranges, inserted tokens, truncations, splices of two files). The run is deterministic for
//! a seed. CI runs a bounded number of cases; a long run is
//! `NPDEC_FUZZ_SECONDS=600 cargo test --release -p npdec-sema --test fuzz -- --nocapture`.
//! `NPDEC_FUZZ_CASES` and `NPDEC_FUZZ_SEED` set the count and the seed. A failing input is written to
//! `target/fuzz-failures/`.

use npdec_diagnostics::{render, to_json, RenderOptions, SourceMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// SplitMix64: a small, well-mixed generator, enough to drive mutations reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&str] = &[
    "use",
    "model",
    "grid",
    "field",
    "const",
    "param",
    "data",
    "equation",
    "boundary",
    "initial",
    "readout",
    "fn",
    "solve",
    "train",
    "expect",
    "on",
    "learnable",
    "fixed",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    "::",
    ":",
    ".",
    "=",
    "~",
    "+",
    "-",
    "*",
    "/",
    "^",
    "@",
    "<",
    "<=",
    "==",
    "x",
    "u",
    "t",
    "pi",
    "dt(u)",
    "laplace(",
    "diff(u, x",
    "1e308",
    "1e999",
    "0",
    "-1",
    "2i",
    "\"",
    "\"a.gz\"",
    "#",
    "\n",
    "ψ",
    "∂",
    "x.min",
    "periodic",
    "dirichlet(0)",
    "split_step",
    "steady",
    "order 3",
    "points 1",
    "[1, 0]",
    "conv(K, u)",
    "W @ u",
    "softmax(",
    "input",
    "label",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> Vec<Vec<u8>> {
    let root = repo_root();
    let mut files = Vec::new();
    for folder in ["examples", "stdlib", "tests/check/err", "tests/check/ok"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "npde") {
                files.push(std::fs::read(entry.path()).expect("corpus file is readable"));
            }
        }
    }
    assert!(
        files.len() >= 10,
        "the corpus should hold the examples and the standard library"
    );
    files
}

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut input = corpus[rng.below(corpus.len())].clone();
    if rng.below(20) == 0 {
        return (0..rng.below(300)).map(|_| rng.next() as u8).collect();
    }
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            1 if len > 0 => {
                let start = rng.below(len);
                let end = (start + rng.below(40)).min(len);
                input.drain(start..end);
            }
            2 if len > 0 => {
                let start = rng.below(len);
                let end = (start + rng.below(60)).min(len);
                let copy = input[start..end].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            3 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let at = rng.below(len + 1);
                input.splice(at..at, token.iter().copied());
            }
            4 if len > 0 => input.truncate(rng.below(len)),
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                input.splice(at..at, other[..cut].iter().copied());
            }
            6 => {
                let mut lines: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
                if lines.len() > 1 {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(a, b);
                }
                input = lines.join(&b'\n');
            }
            _ => {
                let at = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                for _ in 0..rng.below(5) {
                    input.splice(at..at, token.iter().copied());
                }
            }
        }
    }
    input
}

/// Checks one input and verifies the diagnostics; returns a description of any violation.
fn check_one(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input).into_owned();
    let mut sources = SourceMap::new();
    let file = sources.add("fuzz.npde", text);
    let checked = npdec_sema::check(&mut sources, file, &npdec_sema::CheckOptions::default());
    for diagnostic in &checked.diagnostics {
        for label in &diagnostic.labels {
            let source = sources.get(label.span.file);
            let range = label.span.range();
            if range.start > range.end
                || range.end > source.text.len()
                || source.text.get(range.clone()).is_none()
            {
                return Err(format!(
                    "{} has a label outside its file or inside a character: {range:?}",
                    diagnostic.code
                ));
            }
        }
        if diagnostic.message.is_empty() || diagnostic.message.ends_with('.') {
            return Err(format!(
                "{} has a malformed headline: {:?}",
                diagnostic.code, diagnostic.message
            ));
        }
        let rendered = render(diagnostic, &sources, RenderOptions::default());
        if !rendered.contains(diagnostic.code.as_str()) {
            return Err(format!("rendering of {} lost the code", diagnostic.code));
        }
        let _ = to_json(diagnostic, &sources);
    }
    if checked.model.is_some() == checked.has_errors() {
        return Err(
            "a model was returned although there are errors, or none without errors".to_string(),
        );
    }
    Ok(())
}

#[test]
fn mutated_inputs_never_panic() {
    let cases: u64 = std::env::var("NPDEC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let seconds: Option<u64> = std::env::var("NPDEC_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok());
    let seed: u64 = std::env::var("NPDEC_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6e70_6465);
    let corpus = corpus();

    // Checking recurses over expressions; a large stack keeps the run about panics, as the command's
    // own limits on nesting are what protect the default stack.
    let handle = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let mut rng = Rng(seed);
            let start = Instant::now();
            let deadline = seconds.map(|s| start + Duration::from_secs(s));
            let mut count = 0u64;
            loop {
                match deadline {
                    Some(deadline) if Instant::now() >= deadline => break,
                    None if count >= cases => break,
                    _ => {}
                }
                let input = mutate(&mut rng, &corpus);
                let outcome = std::panic::catch_unwind(|| check_one(&input));
                let failure = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(violation)) => Some(violation),
                    Err(panic) => Some(format!(
                        "panic: {}",
                        panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    )),
                };
                if let Some(failure) = failure {
                    let folder = repo_root().join("target/fuzz-failures");
                    let _ = std::fs::create_dir_all(&folder);
                    let path = folder.join(format!("case-{count}.npde"));
                    let _ = std::fs::write(&path, &input);
                    return Err(format!(
                        "case {count} failed ({failure}); input saved to {}",
                        path.display()
                    ));
                }
                count += 1;
            }
            println!(
                "fuzzed {count} inputs in {:.1} s without a failure",
                start.elapsed().as_secs_f64()
            );
            Ok(count)
        })
        .expect("the fuzzing thread starts");
    let result = handle
        .join()
        .expect("the fuzzing thread does not panic outside catch_unwind");
    let count = result.unwrap_or_else(|message| panic!("{message}"));
    assert!(count > 0);
}
