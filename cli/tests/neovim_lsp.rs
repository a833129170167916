//! A real editor drives the language server: headless Neovim opens a file with an error, attaches
//! `npdec lsp`, and writes back the diagnostics it received.
//!
//! Neovim comes from Debian's `neovim` package, which `.ci/run` installs. Without it the test says so
//! and passes, except under CI (`CI` set), where a missing editor is a failure.

use std::path::{Path, PathBuf};
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

/// Opens two files of one folder with the shipped plugin, then writes the number of npdec clients
/// and the diagnostics of the second file.
const PLUGIN_SCRIPT: &str = r#"
vim.cmd('edit ' .. FIRST)
vim.cmd('edit ' .. SECOND)
local ok = vim.wait(20000, function() return #vim.diagnostic.get(0) > 0 end, 50)
local lines = {}
if not ok then table.insert(lines, 'timeout') end
local count = 0
for _, client in pairs(vim.lsp.get_active_clients()) do
  if client.name == 'npdec' then count = count + 1 end
end
table.insert(lines, 'clients ' .. count)
for _, d in ipairs(vim.diagnostic.get(0)) do
  table.insert(lines, tostring(d.code))
end
vim.fn.writefile(lines, OUTPUT)
vim.cmd('qa!')
"#;

#[test]
fn neovim_plugin_shares_one_client() {
    if Command::new("nvim").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Neovim is missing; .ci/run installs the Debian package `neovim`"
        );
        eprintln!("skipped: Neovim is not installed (apt-get install neovim)");
        return;
    }
    let folder: PathBuf =
        std::env::temp_dir().join(format!("npdec-nvim-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("temporary folder");
    let first = folder.join("first.npde");
    let second = folder.join("second.npde");
    std::fs::write(&first, "grid x in [0, 1] points 11\n").expect("write model");
    std::fs::write(&second, "grid x in [0, 1] points 11\nconst a = b\n").expect("write model");
    let output = folder.join("clients.txt");
    let script = folder.join("plugin_test.lua");
    let prelude = format!(
        "FIRST = {:?}\nSECOND = {:?}\nOUTPUT = {:?}\n",
        first.display().to_string(),
        second.display().to_string(),
        output.display().to_string()
    );
    std::fs::write(&script, prelude + PLUGIN_SCRIPT).expect("write script");
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../editors/nvim/npdec.lua");
    // The plugin starts `npdec` from the PATH.
    let binary_folder = Path::new(env!("CARGO_BIN_EXE_npdec"))
        .parent()
        .expect("the binary is in a folder");
    let path = std::env::join_paths(std::iter::once(binary_folder.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");

    let status = Command::new("nvim")
        .args(["--headless", "--clean", "-n"])
        .arg("-c")
        .arg(format!("luafile {}", plugin.display()))
        .arg("-c")
        .arg(format!("luafile {}", script.display()))
        .env("PATH", path)
        .current_dir(&folder)
        .status()
        .expect("nvim runs");
    assert!(status.success(), "nvim exited with {status}");
    let result = std::fs::read_to_string(&output).expect("the script wrote its result");
    assert!(
        !result.contains("timeout"),
        "no diagnostics arrived: {result}"
    );
    assert!(result.contains("clients 1"), "{result}");
    assert!(result.contains("E0100"), "{result}");
    let _ = std::fs::remove_dir_all(&folder);
}
