//! A check, before a run allocates its fields, that they fit in the memory the machine has free.
//!
//! The allocator aborts the process when an allocation fails, so a model whose grid is too large
//! for the machine would otherwise end without a diagnostic.

use npdec_diagnostics::{Code, Diagnostic};
use npdec_symbolic::Model;

/// Copies of every field that any run keeps at once: the state, the next state and the rates of
/// an explicit step. Runge–Kutta stages, ghost layers and snapshots need more, so this is a lower
/// bound of the memory a run needs.
const MIN_FIELD_COPIES: f64 = 3.0;

/// Returns the memory available to a new allocation in bytes (`MemAvailable` of `/proc/meminfo`),
/// or `None` where the kernel does not report it.
pub fn available_memory_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kibibytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kibibytes * 1024.0)
}

/// Returns an error naming the largest field when [`MIN_FIELD_COPIES`] copies of the model's
/// fields, with `element_bytes` per real value, need more than `available` bytes.
pub fn check_field_memory(
    model: &Model,
    element_bytes: usize,
    available: f64,
) -> Result<(), Diagnostic> {
    let field_bytes: Vec<f64> = model
        .fields
        .iter()
        .map(|field| {
            let points: f64 = field
                .axes
                .iter()
                .map(|a| model.axis(*a).points as f64)
                .product();
            let parts = if field.complex { 2.0 } else { 1.0 };
            points * field.channels as f64 * parts * element_bytes as f64
        })
        .collect();
    let needed = MIN_FIELD_COPIES * field_bytes.iter().sum::<f64>();
    if needed <= available {
        return Ok(());
    }
    let Some((largest, bytes)) = field_bytes
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
    else {
        return Ok(());
    };
    let field = &model.fields[largest];
    Err(Diagnostic::error(
        Code::E0231,
        format!(
            "the fields of this model need at least {} of memory, but {} is available",
            format_bytes(needed),
            format_bytes(available)
        ),
        field.span,
        format!(
            "one copy of `{}` takes {}",
            field.name,
            format_bytes(*bytes)
        ),
    )
    .with_note(format!(
        "a run keeps at least {MIN_FIELD_COPIES} copies of every field: the state, the next state and the rates"
    ))
    .with_help("use fewer grid points, or `--precision f32` to halve the memory of each value"))
}

/// Formats a byte count with a binary prefix, such as `1.5 GiB`.
fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[0])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_prefixes() {
        assert_eq!(format_bytes(512.0), "512 bytes");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
        assert_eq!(format_bytes(3.0 * 1024.0_f64.powi(4)), "3.0 TiB");
    }

    #[test]
    fn available_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let bytes = available_memory_bytes().expect("/proc/meminfo has MemAvailable");
            assert!(bytes > 0.0);
        }
    }
}
