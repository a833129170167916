//! A real editor drives the language server: headless Neovim opens a file with an error, attaches
//! `npdec lsp`, and writes back the diagnostics it received.
//!
//! Neovim comes from Debian's `neovim` package, which `.ci/run` installs. Without it the test says so
//! and passes, except under CI (`CI` set), where a missing editor is a failure.

use std::path::PathBuf;
use std::process::Command;

const SCRIPT: &str = r#"
local client = vim.lsp.start_client({ name = 'npdec', cmd = { NPDEC, 'lsp' }, root_dir = vim.fn.getcwd() })
vim.lsp.buf_attach_client(0, client)
local ok = vim.wait(20000, function() return #vim.diagnostic.get(0) > 0 end, 50)
local lines = {}
if not ok then table.insert(lines, 'timeout') end
for _, d in ipairs(vim.diagnostic.get(0)) do
  local message = string.gsub(d.message, '\n', ' | ')
  table.insert(lines, string.format('%d:%d:%s:%s', d.lnum, d.col, tostring(d.code), message))
end
vim.fn.writefile(lines, OUTPUT)
vim.lsp.stop_client(client)
vim.cmd('qa!')
"#;

#[test]
fn neovim_shows_the_diagnostic() {
    if Command::new("nvim").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Neovim is missing; .ci/run installs the Debian package `neovim`"
        );
        eprintln!("skipped: Neovim is not installed (apt-get install neovim)");
        return;
    }
    let folder: PathBuf = std::env::temp_dir().join(format!("npdec-nvim-{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("temporary folder");
    let model = folder.join("broken.npde");
    std::fs::write(
        &model,
        "grid x in [0, 1] points 11\nfield u(x)\nequation heat: dt(u) = nu * laplace(u)\n",
    )
    .expect("write model");
    let output = folder.join("diagnostics.txt");
    let script = folder.join("attach.lua");
    let prelude = format!(
        "NPDEC = {:?}\nOUTPUT = {:?}\n",
        env!("CARGO_BIN_EXE_npdec"),
        output.display().to_string()
    );
    std::fs::write(&script, prelude + SCRIPT).expect("write script");

    let status = Command::new("nvim")
        .args(["--headless", "--clean", "-n"])
        .arg(&model)
        .arg("-c")
        .arg(format!("luafile {}", script.display()))
        .current_dir(&folder)
        .status()
        .expect("nvim runs");
    assert!(status.success(), "nvim exited with {status}");
    let diagnostics = std::fs::read_to_string(&output).expect("the script wrote the diagnostics");
    assert!(
        !diagnostics.contains("timeout"),
        "no diagnostics arrived: {diagnostics}"
    );
    let first = diagnostics
        .lines()
        .find(|l| l.contains("E0100"))
        .unwrap_or_else(|| panic!("no E0100 in {diagnostics}"));
    assert!(first.starts_with("2:23:E0100:unknown name `nu`"), "{first}");
    assert!(first.contains("| help: "), "{first}");
    let _ = std::fs::remove_dir_all(&folder);
}
