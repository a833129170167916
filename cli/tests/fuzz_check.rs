//! The command never exits with anything but 0 or 1 on mutated models. The in-process fuzzer of the
//! checker, which runs far more cases, is `compiler/sema/tests/fuzz.rs`.

use std::path::Path;

/// SplitMix64, to mutate reproducibly.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn command_exits_with_zero_or_one_on_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let corpus: Vec<Vec<u8>> = std::fs::read_dir(root.join("examples"))
        .expect("examples folder")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "npde"))
        .map(|e| std::fs::read(e.path()).expect("readable example"))
        .collect();
    let mut state = 7u64;
    let folder = std::env::temp_dir().join(format!("npdec-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("temporary folder");
    for case in 0..40 {
        let path = folder.join(format!("case{case}.npde"));
        let mut input = corpus[next(&mut state) as usize % corpus.len()].clone();
        for _ in 0..3 {
            let at = next(&mut state) as usize % (input.len() + 1);
            match next(&mut state) % 3 {
                0 => input.insert(at, next(&mut state) as u8),
                1 if at < input.len() => {
                    let end = (at + (next(&mut state) % 30) as usize).min(input.len());
                    input.drain(at..end);
                }
                _ => input.truncate(at),
            }
        }
        std::fs::write(&path, &input).expect("write input");
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_npdec"))
            .args(["check", path.to_str().expect("utf-8 path")])
            .env("NO_COLOR", "1")
            .output()
            .expect("npdec runs")
            .status;
        assert!(
            matches!(status.code(), Some(0 | 1)),
            "case {case} exited with {status:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&folder);
}
