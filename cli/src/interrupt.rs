//! Cleanup when `npdec run` or `npdec build` is interrupted by Ctrl-C (SIGINT), SIGTERM or SIGHUP.
//!
//! Every output is written to a hidden temporary file in its folder and then renamed, so an
//! interrupted process leaves only whole files under their final names. The handler also removes
//! this process's temporary files, whose names carry its process id, names the epoch of the
//! training checkpoint that this process wrote, if any, and exits with status 130.

use npdec_learn::checkpoint::read_checkpoint;
use npdec_runtime::train::training::CHECKPOINT_FILE;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Folders below the output folder searched for temporary files; outputs sit at most this deep.
const SEARCH_DEPTH: usize = 2;

/// Installs a handler that removes this process's temporary files under `folder` and exits with
/// status 130 on an interrupt.
pub fn remove_temporaries_on_interrupt(folder: PathBuf) {
    let process = std::process::id();
    let started = SystemTime::now();
    let installed = ctrlc::set_handler(move || {
        let removed = remove_temporaries(&folder, process, SEARCH_DEPTH);
        let removed = if removed > 0 {
            format!(
                ", {} removed",
                npdec_arch::count(removed, "unfinished file")
            )
        } else {
            String::new()
        };
        let checkpoint = match checkpoint_epoch_since(&folder, started) {
            Some(epoch) => format!(
                "; the checkpoint after epoch {epoch} is kept, and `--resume` continues from it"
            ),
            None => String::new(),
        };
        eprintln!("interrupted: files written before the interrupt are kept{removed}{checkpoint}");
        std::process::exit(130);
    });
    if let Err(error) = installed {
        tracing::warn!(%error, "cannot install the interrupt handler; an interrupted run may leave temporary files");
    }
}

/// Returns the epoch of the training checkpoint in `folder` when it was written at or after
/// `started`, that is by this process, and `None` when there is none or it is older.
fn checkpoint_epoch_since(folder: &Path, started: SystemTime) -> Option<usize> {
    let path = folder.join(CHECKPOINT_FILE);
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < started {
        return None;
    }
    read_checkpoint(&path)
        .ok()
        .map(|checkpoint| checkpoint.epoch)
}

/// Returns true for the temporary names of the atomic writers of process `process`:
/// `.NAME.PID.tmp`, `.NAME.PID.tmp.EXT` and `.NAME.tmp-PID`.
fn is_temporary_of(name: &str, process: u32) -> bool {
    name.starts_with('.')
        && (name.ends_with(&format!(".{process}.tmp"))
            || name.contains(&format!(".{process}.tmp."))
            || name.ends_with(&format!(".tmp-{process}")))
}

/// Removes the temporary files of `process` in `folder` and `depth` levels of subfolders, and
/// returns how many it removed.
fn remove_temporaries(folder: &Path, process: u32, depth: usize) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth > 0 {
            removed += remove_temporaries(&path, process, depth - 1);
        } else if kind.is_file()
            && is_temporary_of(&entry.file_name().to_string_lossy(), process)
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_of_each_writer_match() {
        assert!(is_temporary_of(".W.netlist.json.6512.tmp", 6512));
        assert!(is_temporary_of(".u.png.6512.tmp.png", 6512));
        assert!(is_temporary_of(".checkpoint.npdc.tmp-6512", 6512));
        assert!(!is_temporary_of(".W.netlist.json.6513.tmp", 6512));
        assert!(!is_temporary_of("W.netlist.json", 6512));
        assert!(!is_temporary_of(".hidden.65121.tmp", 6512));
    }

    #[test]
    fn removal_keeps_finished_and_foreign_files() {
        let folder = std::env::temp_dir().join(format!("npdec_interrupt_{}", std::process::id()));
        let nested = folder.join("series");
        std::fs::create_dir_all(&nested).expect("scratch folder");
        for name in ["u.npy", ".u.npy.1.tmp.npy", ".v.npy.99.tmp.npy"] {
            std::fs::write(folder.join(name), b"x").expect("write file");
        }
        std::fs::write(nested.join(".checkpoint.npdc.tmp-1"), b"x").expect("write file");

        assert_eq!(remove_temporaries(&folder, 1, SEARCH_DEPTH), 2);
        assert!(folder.join("u.npy").exists());
        assert!(folder.join(".v.npy.99.tmp.npy").exists());
        assert!(!folder.join(".u.npy.1.tmp.npy").exists());
        assert!(!nested.join(".checkpoint.npdc.tmp-1").exists());
        let _ = std::fs::remove_dir_all(&folder);
    }
}
