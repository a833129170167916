//! Checkpoint files: the parameters, the optimizer state, the epoch and the random number
//! generator state of a training run, written atomically so that resuming continues the run
//! bit for bit.
//!
//! # Format (version 1)
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `NPDECKPT` |
//! | 8 | header length `H`, little-endian u64 |
//! | `H` | header: UTF-8 JSON, described below |
//! | rest | payload: every array's values as little-endian IEEE 754 f64, one array after another |
//!
//! The header is a JSON object with these fields:
//! - `format`: `"npdec-checkpoint"`, and `version`: 1;
//! - `epoch`, `rng` (the [`RngState`] or null) and `metadata` (any JSON the caller stores, such
//!   as the metrics history);
//! - `optimizer`: its kind and scalar settings, e.g. `{"kind": "adam", "learning_rate": …,
//!   "step_count": …}`;
//! - `arrays`: the `name`, `shape` and `offset` (in values from the payload start) of each array.
//!   Parameter arrays are named `parameter/NAME` and optimizer vectors `optimizer/NAME`;
//! - `payload_bytes` and `payload_crc32` (CRC-32 of the payload, IEEE polynomial).
//!
//! Arrays travel in binary so that every value, NaN included, survives exactly. Scalars in the
//! header are exact too, because serde_json is built with `float_roundtrip`.
//!
//! # Atomic writes
//!
//! A checkpoint is written to a temporary file in the target's folder, flushed to disk
//! (`fsync`), renamed over the target, and the folder is flushed, so a crash at any moment
//! leaves either the old checkpoint or the new one, never a mix. A crash may leave the temporary
//! file `.NAME.tmp-PID` behind; it is never read and the next write of that process replaces it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::RngState;
use crate::optim::{Adam, Lbfgs, LbfgsOptions, OptimizerState, Sgd};

const MAGIC: &[u8; 8] = b"NPDECKPT";
const FORMAT: &str = "npdec-checkpoint";
const VERSION: u32 = 1;
/// Headers larger than this are rejected before allocating, as a sign of a corrupt length.
const MAX_HEADER_BYTES: u64 = 1 << 30;

/// A checkpoint file that could not be written or read.
#[derive(Debug)]
pub struct CheckpointError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for CheckpointError {}

/// A named f64 array with its shape, values in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedArray {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl NamedArray {
    pub fn new(name: impl Into<String>, shape: Vec<usize>, values: Vec<f64>) -> NamedArray {
        NamedArray {
            name: name.into(),
            shape,
            values,
        }
    }
}

/// Everything needed to continue a training run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The number of completed epochs.
    pub epoch: usize,
    pub rng: Option<RngState>,
    pub parameters: Vec<NamedArray>,
    pub optimizer: OptimizerState,
    pub metadata: serde_json::Value,
}

impl Checkpoint {
    /// Checks that the checkpoint contains exactly the expected parameters, by name and shape, in
    /// any order.
    pub fn check_parameters(&self, expected: &[(&str, &[usize])]) -> Result<(), String> {
        for (name, shape) in expected {
            match self.parameters.iter().find(|p| p.name == *name) {
                None => return Err(format!("the checkpoint has no parameter `{name}`")),
                Some(p) if p.shape != *shape => {
                    return Err(format!(
                        "parameter `{name}` has shape {:?} in the checkpoint, the model expects {shape:?}",
                        p.shape
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = self
            .parameters
            .iter()
            .find(|p| !expected.iter().any(|(name, _)| *name == p.name))
        {
            return Err(format!(
                "the checkpoint has parameter `{}`, which the model does not declare",
                extra.name
            ));
        }
        Ok(())
    }
}

/// The scalar part of an optimizer state; its vectors travel as arrays.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum OptimizerHeader {
    None,
    Sgd {
        learning_rate: f64,
        momentum: f64,
    },
    Adam {
        learning_rate: f64,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        step_count: u64,
    },
    Lbfgs {
        options: LbfgsOptions,
        value: f64,
        iterations: usize,
        evaluations: usize,
        pairs: usize,
    },
}

#[derive(Serialize, Deserialize)]
struct ArrayEntry {
    name: String,
    shape: Vec<usize>,
    offset: usize,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    epoch: usize,
    rng: Option<RngState>,
    metadata: serde_json::Value,
    optimizer: OptimizerHeader,
    arrays: Vec<ArrayEntry>,
    payload_bytes: u64,
    payload_crc32: u32,
}

/// Splits an optimizer state into its header and its named vectors.
fn split_optimizer(state: &OptimizerState) -> (OptimizerHeader, Vec<(String, &[f64])>) {
    match state {
        OptimizerState::None => (OptimizerHeader::None, Vec::new()),
        OptimizerState::Sgd(sgd) => (
            OptimizerHeader::Sgd {
                learning_rate: sgd.learning_rate,
                momentum: sgd.momentum,
            },
            vec![("velocity".to_string(), &sgd.velocity[..])],
        ),
        OptimizerState::Adam(adam) => (
            OptimizerHeader::Adam {
                learning_rate: adam.learning_rate,
                beta1: adam.beta1,
                beta2: adam.beta2,
                epsilon: adam.epsilon,
                step_count: adam.step_count,
            },
            vec![
                ("first_moment".to_string(), &adam.first_moment[..]),
                ("second_moment".to_string(), &adam.second_moment[..]),
            ],
        ),
        OptimizerState::Lbfgs(lbfgs) => {
            let mut arrays = vec![
                ("x".to_string(), &lbfgs.x[..]),
                ("gradient".to_string(), &lbfgs.gradient[..]),
            ];
            for (k, (s, y)) in lbfgs.steps.iter().zip(&lbfgs.gradient_changes).enumerate() {
                arrays.push((format!("step.{k}"), &s[..]));
                arrays.push((format!("gradient_change.{k}"), &y[..]));
            }
            (
                OptimizerHeader::Lbfgs {
                    options: lbfgs.options.clone(),
                    value: lbfgs.value,
                    iterations: lbfgs.iterations,
                    evaluations: lbfgs.evaluations,
                    pairs: lbfgs.steps.len(),
                },
                arrays,
            )
        }
    }
}

/// Rebuilds an optimizer state from its header and vectors.
fn join_optimizer(
    header: OptimizerHeader,
    mut arrays: HashMap<String, Vec<f64>>,
) -> Result<OptimizerState, String> {
    let mut take = |name: &str| {
        arrays
            .remove(name)
            .ok_or_else(|| format!("optimizer array `{name}` is missing"))
    };
    let state = match header {
        OptimizerHeader::None => OptimizerState::None,
        OptimizerHeader::Sgd {
            learning_rate,
            momentum,
        } => OptimizerState::Sgd(Sgd {
            learning_rate,
            momentum,
            velocity: take("velocity")?,
        }),
        OptimizerHeader::Adam {
            learning_rate,
            beta1,
            beta2,
            epsilon,
            step_count,
        } => OptimizerState::Adam(Adam {
            learning_rate,
            beta1,
            beta2,
            epsilon,
            step_count,
            first_moment: take("first_moment")?,
            second_moment: take("second_moment")?,
        }),
        OptimizerHeader::Lbfgs {
            options,
            value,
            iterations,
            evaluations,
            pairs,
        } => {
            let x = take("x")?;
            let gradient = take("gradient")?;
            let mut steps = VecDeque::with_capacity(pairs);
            let mut gradient_changes = VecDeque::with_capacity(pairs);
            for k in 0..pairs {
                steps.push_back(take(&format!("step.{k}"))?);
                gradient_changes.push_back(take(&format!("gradient_change.{k}"))?);
            }
            OptimizerState::Lbfgs(Lbfgs {
                options,
                x,
                value,
                gradient,
                steps,
                gradient_changes,
                iterations,
                evaluations,
            })
        }
    };
    if let Some(name) = arrays.keys().next() {
        return Err(format!("unexpected optimizer array `{name}`"));
    }
    Ok(state)
}

/// Encodes a checkpoint in the format described in the module documentation.
pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Result<Vec<u8>, String> {
    let (optimizer, optimizer_arrays) = split_optimizer(&checkpoint.optimizer);
    let mut named: Vec<(String, Vec<usize>, &[f64])> = Vec::new();
    for parameter in &checkpoint.parameters {
        let count: usize = parameter.shape.iter().product();
        if count != parameter.values.len() {
            return Err(format!(
                "parameter `{}` has shape {:?} but {} values",
                parameter.name,
                parameter.shape,
                parameter.values.len()
            ));
        }
        named.push((
            format!("parameter/{}", parameter.name),
            parameter.shape.clone(),
            &parameter.values,
        ));
    }
    for (name, values) in optimizer_arrays {
        named.push((format!("optimizer/{name}"), vec![values.len()], values));
    }

    let mut payload = Vec::new();
    let mut arrays = Vec::with_capacity(named.len());
    let mut offset = 0;
    for (name, shape, values) in named {
        arrays.push(ArrayEntry {
            name,
            shape,
            offset,
        });
        offset += values.len();
        payload.reserve(values.len() * 8);
        for value in values {
            payload.extend_from_slice(&value.to_le_bytes());
        }
    }
    let header = Header {
        format: FORMAT.to_string(),
        version: VERSION,
        epoch: checkpoint.epoch,
        rng: checkpoint.rng,
        metadata: checkpoint.metadata.clone(),
        optimizer,
        arrays,
        payload_bytes: payload.len() as u64,
        payload_crc32: crc32fast::hash(&payload),
    };
    let header =
        serde_json::to_vec(&header).map_err(|e| format!("cannot encode the header: {e}"))?;

    let mut bytes = Vec::with_capacity(16 + header.len() + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Decodes and validates a checkpoint.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, String> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err("not an npdec checkpoint: the magic bytes `NPDECKPT` are missing".to_string());
    }
    let header_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_BYTES || header_len > (bytes.len() - 16) as u64 {
        return Err(format!(
            "truncated or corrupt checkpoint: header length {header_len} exceeds the {} bytes after the magic",
            bytes.len() - 16
        ));
    }
    let header_end = 16 + header_len as usize;
    let header: Header = serde_json::from_slice(&bytes[16..header_end])
        .map_err(|e| format!("corrupt checkpoint header: {e}"))?;
    if header.format != FORMAT {
        return Err(format!(
            "unknown checkpoint format `{}`: expected `{FORMAT}`",
            header.format
        ));
    }
    if header.version != VERSION {
        return Err(format!(
            "unsupported checkpoint version {}: this build reads version {VERSION}",
            header.version
        ));
    }
    let payload = &bytes[header_end..];
    if payload.len() as u64 != header.payload_bytes {
        return Err(format!(
            "truncated or corrupt checkpoint: the payload has {} bytes, the header announces {}",
            payload.len(),
            header.payload_bytes
        ));
    }
    let crc = crc32fast::hash(payload);
    if crc != header.payload_crc32 {
        return Err(format!(
            "corrupt checkpoint: payload CRC-32 is {crc:08x}, the header records {:08x}",
            header.payload_crc32
        ));
    }

    let total_values = payload.len() / 8;
    let mut parameters = Vec::new();
    let mut optimizer_arrays = HashMap::new();
    for entry in header.arrays {
        let count = entry
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                format!(
                    "array `{}` has an overflowing shape {:?}",
                    entry.name, entry.shape
                )
            })?;
        let end = entry.offset.checked_add(count).filter(|&end| end <= total_values).ok_or_else(|| {
            format!(
                "array `{}` (offset {}, {count} values) lies outside the payload of {total_values} values",
                entry.name, entry.offset
            )
        })?;
        let values: Vec<f64> = payload[entry.offset * 8..end * 8]
            .chunks_exact(8)
            .map(|chunk| f64::from_le_bytes(chunk.try_into().expect("8 bytes")))
            .collect();
        if let Some(name) = entry.name.strip_prefix("parameter/") {
            parameters.push(NamedArray::new(name, entry.shape, values));
        } else if let Some(name) = entry.name.strip_prefix("optimizer/") {
            optimizer_arrays.insert(name.to_string(), values);
        } else {
            return Err(format!(
                "array `{}` has an unknown group: expected `parameter/` or `optimizer/`",
                entry.name
            ));
        }
    }
    let optimizer = join_optimizer(header.optimizer, optimizer_arrays)?;
    Ok(Checkpoint {
        epoch: header.epoch,
        rng: header.rng,
        parameters,
        optimizer,
        metadata: header.metadata,
    })
}

/// Writes a checkpoint atomically: a temporary file in the same folder, `fsync`, rename.
pub fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let bytes = encode_checkpoint(checkpoint).map_err(|message| CheckpointError {
        path: path.to_path_buf(),
        message,
    })?;
    write_atomically(path, &bytes, None)
}

/// Reads and validates a checkpoint.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError {
        path: path.to_path_buf(),
        message: format!("cannot read the checkpoint: {e}"),
    })?;
    decode_checkpoint(&bytes).map_err(|message| CheckpointError {
        path: path.to_path_buf(),
        message,
    })
}

fn temporary_path(path: &Path) -> Result<PathBuf, String> {
    let name = path
        .file_name()
        .ok_or_else(|| "the checkpoint path has no file name".to_string())?;
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".tmp-{}", std::process::id()));
    Ok(path.with_file_name(temporary))
}

/// Writes `bytes` to `path` through a temporary file. `crash_after` stops the write after that
/// many bytes and returns an error without cleaning up, as a process killed mid-write would.
/// Tests use it to check that the previous file survives.
fn write_atomically(
    path: &Path,
    bytes: &[u8],
    crash_after: Option<usize>,
) -> Result<(), CheckpointError> {
    let fail = |message: String| CheckpointError {
        path: path.to_path_buf(),
        message,
    };
    let temporary = temporary_path(path).map_err(fail)?;
    let result = (|| -> std::io::Result<()> {
        let mut file = File::create(&temporary)?;
        if let Some(limit) = crash_after {
            file.write_all(&bytes[..limit.min(bytes.len())])?;
            return Err(std::io::Error::other("simulated crash during the write"));
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)?;
        sync_parent_folder(path)
    })();
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            if crash_after.is_none() {
                // A failed write leaves nothing behind; the previous checkpoint is untouched.
                let _ = std::fs::remove_file(&temporary);
            }
            Err(fail(format!(
                "cannot write the checkpoint through {}: {e}",
                temporary.display()
            )))
        }
    }
}

/// Flushes the folder entry of a renamed file, so the rename itself survives a power loss.
#[cfg(unix)]
fn sync_parent_folder(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent_folder(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_folder(name: &str) -> PathBuf {
        let folder =
            std::env::temp_dir().join(format!("npdec-learn-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        folder
    }

    fn sample(epoch: usize, fill: f64) -> Checkpoint {
        Checkpoint {
            epoch,
            rng: None,
            parameters: vec![NamedArray::new("w", vec![2, 3], vec![fill; 6])],
            optimizer: OptimizerState::Sgd(Sgd {
                learning_rate: 0.1,
                momentum: 0.9,
                velocity: vec![fill / 2.0; 6],
            }),
            metadata: serde_json::json!({}),
        }
    }

    #[test]
    fn crash_during_write_keeps_old_checkpoint() {
        let folder = scratch_folder("crash");
        let path = folder.join("model.ckpt");
        write_checkpoint(&path, &sample(1, 1.0)).unwrap();
        let new_bytes = encode_checkpoint(&sample(2, 2.0)).unwrap();
        for crash_after in [
            0,
            5,
            16,
            40,
            new_bytes.len() / 2,
            new_bytes.len() - 1,
            new_bytes.len(),
        ] {
            let result = write_atomically(&path, &new_bytes, Some(crash_after));
            assert!(result.is_err(), "the simulated crash must report an error");
            let loaded = read_checkpoint(&path).unwrap();
            assert_eq!(loaded, sample(1, 1.0), "crash after {crash_after} bytes");
        }
        assert!(
            temporary_path(&path).unwrap().exists(),
            "a crash leaves the temporary file"
        );

        write_checkpoint(&path, &sample(2, 2.0)).unwrap();
        assert_eq!(read_checkpoint(&path).unwrap(), sample(2, 2.0));
        assert!(
            !temporary_path(&path).unwrap().exists(),
            "a successful write renames it away"
        );
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = encode_checkpoint(&sample(3, 0.5)).unwrap();
        for length in 0..bytes.len() {
            assert!(
                decode_checkpoint(&bytes[..length]).is_err(),
                "a checkpoint truncated to {length} of {} bytes was accepted",
                bytes.len()
            );
        }
    }
}
