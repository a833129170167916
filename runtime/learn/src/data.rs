//! Data sets for training: IDX, CSV and NPY readers, the fixed train/test split, feature
//! standardization, deterministic shuffling from a seed and mini-batch iteration.
//!
//! Every reader returns errors as values that name the file, so a bad data file gives an error
//! instead of a panic.
//! Files whose first two bytes are the gzip magic `1f 8b` are decompressed first, whatever their
//! extension.

use std::fmt;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayD, Axis};
use npdec_symbolic::model::{DataFormat, DataSource, LabelColumn, Split};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// A data file that could not be read, or a data set that cannot be used as requested.
#[derive(Debug)]
pub struct DataError {
    /// The file involved, when the error concerns one.
    pub path: Option<PathBuf>,
    pub message: String,
}

impl DataError {
    fn in_file(path: &Path, message: impl Into<String>) -> Self {
        DataError {
            path: Some(path.to_path_buf()),
            message: message.into(),
        }
    }

    fn general(message: impl Into<String>) -> Self {
        DataError {
            path: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {}", path.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DataError {}

/// The training targets: a class or real values per sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One class index per sample, each below `classes`.
    Classes { labels: Vec<usize>, classes: usize },
    /// Real-valued targets, samples × outputs.
    Values(Array2<f64>),
}

impl Targets {
    /// Returns the number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values(values) => values.nrows(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the targets of the given samples, in that order.
    pub fn select(&self, indices: &[usize]) -> Targets {
        match self {
            Targets::Classes { labels, classes } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                classes: *classes,
            },
            Targets::Values(values) => Targets::Values(select_rows(values, indices)),
        }
    }
}

/// Copies the given rows of `matrix`, in that order. Equal to ndarray's `select` on axis 0, with
/// one slice copy per row when the matrix is in standard layout (`select` goes through a general
/// concatenation, several times slower for the rows of a mini-batch).
fn select_rows(matrix: &Array2<f64>, indices: &[usize]) -> Array2<f64> {
    let Some(entries) = matrix.as_slice() else {
        return matrix.select(Axis(0), indices);
    };
    let columns = matrix.ncols();
    let mut rows = Vec::with_capacity(indices.len() * columns);
    for &index in indices {
        rows.extend_from_slice(&entries[index * columns..(index + 1) * columns]);
    }
    Array2::from_shape_vec((indices.len(), columns), rows).expect("one row of entries per index")
}

/// Samples in rows: `inputs` is samples × features, and `sample_shape` gives the shape of one
/// sample before it was flattened (e.g. `[28, 28]` for MNIST).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub inputs: Array2<f64>,
    pub targets: Targets,
    pub sample_shape: Vec<usize>,
}

impl Dataset {
    /// Returns the number of samples.
    pub fn len(&self) -> usize {
        self.inputs.nrows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the data set with `pad` zeros added on both sides of every sample dimension: a
    /// sample of shape `[28, 28]` with `pad = 18` becomes `[64, 64]` with the image in the middle.
    pub fn padded(&self, pad: usize) -> Dataset {
        let shape: Vec<usize> = if self.sample_shape.is_empty() {
            vec![self.features()]
        } else {
            self.sample_shape.clone()
        };
        let padded_shape: Vec<usize> = shape.iter().map(|n| n + 2 * pad).collect();
        let features: usize = padded_shape.iter().product();
        let mut inputs = Array2::zeros((self.len(), features));
        let mut index = vec![0usize; shape.len()];
        for (source, mut target) in self.inputs.rows().into_iter().zip(inputs.rows_mut()) {
            for (flat, value) in source.iter().enumerate() {
                let mut rest = flat;
                for (position, n) in shape.iter().enumerate().rev() {
                    index[position] = rest % n;
                    rest /= n;
                }
                let mut padded = 0;
                for (position, n) in padded_shape.iter().enumerate() {
                    padded = padded * n + index[position] + pad;
                }
                target[padded] = *value;
            }
        }
        Dataset {
            inputs,
            targets: self.targets.clone(),
            sample_shape: padded_shape,
        }
    }

    /// Returns the number of input values per sample.
    pub fn features(&self) -> usize {
        self.inputs.ncols()
    }

    /// Copies the given samples, in that order, into a new data set.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            inputs: select_rows(&self.inputs, indices),
            targets: self.targets.select(indices),
            sample_shape: self.sample_shape.clone(),
        }
    }

    /// Splits into the leading training samples and the trailing test samples. `None` keeps every
    /// sample for training and leaves the test set empty.
    pub fn split(&self, split: Option<Split>) -> Result<(Dataset, Dataset), DataError> {
        let total = self.len();
        let train = match split {
            None => total,
            Some(Split::Count(count)) => {
                if count > total {
                    return Err(DataError::general(format!(
                        "invalid split: {count} training samples requested but the data set has only {total}"
                    )));
                }
                count
            }
            Some(Split::Fraction(fraction)) => {
                if !(fraction > 0.0 && fraction <= 1.0) {
                    return Err(DataError::general(format!(
                        "invalid split fraction {fraction}: expected a number in (0, 1]"
                    )));
                }
                // Rounding down keeps the count reproducible across platforms for any fraction.
                (fraction * total as f64).floor() as usize
            }
        };
        let train_indices: Vec<usize> = (0..train).collect();
        let test_indices: Vec<usize> = (train..total).collect();
        Ok((self.select(&train_indices), self.select(&test_indices)))
    }

    /// Returns the number of samples in each class, or `None` for real-valued targets.
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        match &self.targets {
            Targets::Classes { labels, classes } => {
                // A hand-built `Targets` may hold a label at or above `classes`: count it too.
                let largest = labels.iter().max().map_or(0, |&l| l + 1);
                let mut counts = vec![0; (*classes).max(largest)];
                for &label in labels {
                    counts[label] += 1;
                }
                Some(counts)
            }
            Targets::Values(_) => None,
        }
    }
}

/// A data set read from a model's data source and split into training and test samples.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTestData {
    pub train: Dataset,
    pub test: Dataset,
}

/// Reads a data source, resolving its paths against `base_dir` (the model file's folder),
/// multiplies every input by the source's `scale`, pads it and applies its split.
///
/// `field_shape` is the grid shape of the field the samples initialize, if known. A flat sample
/// (one CSV row) is padded as an image when that field is at least two-dimensional and the
/// product of its dimensions less `2 · pad` equals the sample's length. So `pad 4` turns the 64
/// values of an 8 × 8 digit into a 16 × 16 image. Otherwise a flat sample is padded as a vector.
pub fn load_data_source(
    source: &DataSource,
    base_dir: &Path,
    field_shape: Option<&[usize]>,
) -> Result<TrainTestData, DataError> {
    if !source.scale.is_finite() {
        return Err(DataError::general(format!(
            "data source `{}`: invalid scale {}: expected a finite number",
            source.name, source.scale
        )));
    }
    let mut dataset = match &source.format {
        DataFormat::Idx { images, labels } => {
            read_idx_dataset(&base_dir.join(images), &base_dir.join(labels))?
        }
        DataFormat::Csv { path, label_column } => read_csv(&base_dir.join(path), *label_column)?,
        DataFormat::Npy { path, labels } => {
            let labels = labels.as_ref().map(|labels| base_dir.join(labels));
            read_npy_dataset(&base_dir.join(path), labels.as_deref())?
        }
    };
    if source.scale != 1.0 {
        dataset.inputs *= source.scale;
    }
    if source.pad > 0 {
        if dataset.sample_shape.len() <= 1 {
            if let Some(shape) = field_shape.and_then(|f| unpadded_image(f, source.pad)) {
                if shape.iter().product::<usize>() == dataset.features() {
                    dataset.sample_shape = shape;
                }
            }
        }
        dataset = dataset.padded(source.pad);
    }
    let (train, test) = dataset.split(source.split)?;
    Ok(TrainTestData { train, test })
}

/// Returns the shape of the image that `pad` zeros on every side turn into `field_shape`, if the
/// field is at least two-dimensional and larger than `2 · pad` along every axis.
fn unpadded_image(field_shape: &[usize], pad: usize) -> Option<Vec<usize>> {
    if field_shape.len() < 2 {
        return None;
    }
    field_shape
        .iter()
        .map(|n| n.checked_sub(2 * pad).filter(|m| *m > 0))
        .collect()
}

/// Reads a whole file, decompressing it when it starts with the gzip magic bytes.
fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw =
        std::fs::read(path).map_err(|e| DataError::in_file(path, format!("cannot read: {e}")))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut decoded = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut decoded)
            .map_err(|e| DataError::in_file(path, format!("invalid gzip data: {e}")))?;
        Ok(decoded)
    } else {
        Ok(raw)
    }
}

/// An IDX array: its dimensions (outermost first) and its values in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub values: Vec<f64>,
}

/// Reads an IDX file, gzipped or not.
///
/// The format is the one MNIST is distributed in (LeCun et al.). It starts with two zero bytes, a
/// type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64) and the number of
/// dimensions. Each dimension follows as a big-endian u32, then the values, big-endian. The file must hold exactly the values that its
/// dimensions announce.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = read_maybe_gzipped(path)?;
    parse_idx(&bytes).map_err(|message| DataError::in_file(path, message))
}

fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "not an IDX file: {} bytes, shorter than the 4-byte magic number",
            bytes.len()
        ));
    }

    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "not an IDX file: magic number 0x{magic:08x} does not start with two zero bytes"
        ));
    }
    let (element_size, decode): (usize, fn(&[u8]) -> f64) = match bytes[2] {
        0x08 => (1, |b| b[0] as f64),
        0x09 => (1, |b| b[0] as i8 as f64),
        0x0B => (2, |b| i16::from_be_bytes([b[0], b[1]]) as f64),
        0x0C => (4, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64),
        0x0D => (4, |b| f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64),
        0x0E => (8, |b| {
            f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        }),
        other => {
            return Err(format!(
                "invalid IDX magic number 0x{magic:08x}: unknown element type 0x{other:02x}, \
                 expected one of 0x08 (u8), 0x09 (i8), 0x0b (i16), 0x0c (i32), 0x0d (f32), 0x0e (f64)"
            ))
        }
    };

    let rank = bytes[3] as usize;
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        return Err(format!(
            "truncated IDX header: {rank} dimensions need {header_len} bytes, the file has {}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|k| {
            let at = 4 + 4 * k;
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
        })
        .collect();

    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("IDX dimensions {dims:?} overflow the address space"))?;
    let expected = count
        .checked_mul(element_size)
        .and_then(|n| n.checked_add(header_len))
        .ok_or_else(|| format!("IDX dimensions {dims:?} overflow the address space"))?;
    if bytes.len() != expected {
        let problem = if bytes.len() < expected {
            "truncated IDX data"
        } else {
            "trailing bytes after the IDX data"
        };
        return Err(format!(
            "{problem}: dimensions {dims:?} need {expected} bytes, the file has {}",
            bytes.len()
        ));
    }

    let values = bytes[header_len..]
        .chunks_exact(element_size)
        .map(decode)
        .collect();
    Ok(IdxArray { dims, values })
}

/// Reads an IDX image file (samples × any sample shape) and an IDX label file (one integer label
/// per sample).
pub fn read_idx_dataset(images_path: &Path, labels_path: &Path) -> Result<Dataset, DataError> {
    let images = read_idx(images_path)?;
    let labels = read_idx(labels_path)?;
    if images.dims.is_empty() {
        return Err(DataError::in_file(
            images_path,
            "IDX images have no dimensions: expected samples first",
        ));
    }
    if labels.dims.len() != 1 {
        return Err(DataError::in_file(
            labels_path,
            format!(
                "IDX labels have dimensions {:?}: expected one dimension (samples)",
                labels.dims
            ),
        ));
    }
    let samples = images.dims[0];
    if labels.dims[0] != samples {
        return Err(DataError::in_file(
            labels_path,
            format!(
                "{} labels for {samples} images in {}",
                labels.dims[0],
                images_path.display()
            ),
        ));
    }
    let sample_shape = images.dims[1..].to_vec();
    let features: usize = sample_shape.iter().product();
    let inputs = Array2::from_shape_vec((samples, features), images.values)
        .map_err(|e| DataError::in_file(images_path, e.to_string()))?;
    let targets = class_targets(&labels.values)
        .map_err(|message| DataError::in_file(labels_path, message))?;
    Ok(Dataset {
        inputs,
        targets,
        sample_shape,
    })
}

/// Turns label values into class indices; every value must be a non-negative integer.
fn class_targets(values: &[f64]) -> Result<Targets, String> {
    let mut labels = Vec::with_capacity(values.len());
    for (sample, &value) in values.iter().enumerate() {
        if !(value >= 0.0 && value.fract() == 0.0 && value < u32::MAX as f64) {
            return Err(format!(
                "invalid class label {value} of sample {sample}: expected a non-negative integer"
            ));
        }
        labels.push(value as usize);
    }
    let classes = labels.iter().max().map_or(0, |&max| max + 1);
    Ok(Targets::Classes { labels, classes })
}

/// Returns class targets when every value is a non-negative integer, else one real-valued
/// target column.
fn infer_targets(values: Vec<f64>) -> Targets {
    match class_targets(&values) {
        Ok(targets) => targets,
        Err(_) => {
            let rows = values.len();
            Targets::Values(Array2::from_shape_vec((rows, 1), values).expect("one column"))
        }
    }
}

/// Reads a CSV file (gzipped or not) with one sample per row and the label in `label_column`.
///
/// Fields are separated by commas and blank lines are skipped. The first line is taken as a
/// header and skipped when none of its fields is a number. Labels that are all non-negative
/// integers become classes; otherwise they are real-valued targets.
pub fn read_csv(path: &Path, label_column: LabelColumn) -> Result<Dataset, DataError> {
    let bytes = read_maybe_gzipped(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| DataError::in_file(path, format!("invalid UTF-8: {e}")))?;

    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut width: Option<(usize, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if rows.is_empty() && width.is_none() && fields.iter().all(|f| f.parse::<f64>().is_err()) {
            continue;
        }
        match width {
            None => width = Some((fields.len(), line_number)),
            Some((expected, first_line)) if fields.len() != expected => {
                return Err(DataError::in_file(
                    path,
                    format!(
                        "line {line_number} has {} fields, but line {first_line} has {expected}",
                        fields.len()
                    ),
                ));
            }
            Some(_) => {}
        }
        let mut row = Vec::with_capacity(fields.len());
        for (column, field) in fields.iter().enumerate() {
            let value = field.parse::<f64>().map_err(|_| {
                DataError::in_file(
                    path,
                    format!(
                        "line {line_number}, column {}: invalid number `{field}`",
                        column + 1
                    ),
                )
            })?;
            row.push(value);
        }
        rows.push(row);
    }

    let Some((columns, _)) = width else {
        return Err(DataError::in_file(path, "no data rows"));
    };
    if columns < 2 {
        return Err(DataError::in_file(
            path,
            "rows have a single column: expected features and a label",
        ));
    }
    let label_index = match label_column {
        LabelColumn::First => 0,
        LabelColumn::Last => columns - 1,
        LabelColumn::Index(index) if index < columns => index,
        LabelColumn::Index(index) => {
            return Err(DataError::in_file(
                path,
                format!(
                    "label column {index} is out of range: rows have {columns} columns (0 to {})",
                    columns - 1
                ),
            ))
        }
    };

    let samples = rows.len();
    let features = columns - 1;
    let mut inputs = Vec::with_capacity(samples * features);
    let mut labels = Vec::with_capacity(samples);
    for row in rows {
        for (column, value) in row.into_iter().enumerate() {
            if column == label_index {
                labels.push(value);
            } else {
                inputs.push(value);
            }
        }
    }
    Ok(Dataset {
        inputs: Array2::from_shape_vec((samples, features), inputs).expect("rectangular rows"),
        targets: infer_targets(labels),
        sample_shape: vec![features],
    })
}

/// Reads an NPY array of any numeric element type as f64.
pub fn read_npy(path: &Path) -> Result<ArrayD<f64>, DataError> {
    use ndarray_npy::{ReadNpyError, ReadNpyExt};

    let bytes =
        std::fs::read(path).map_err(|e| DataError::in_file(path, format!("cannot read: {e}")))?;
    macro_rules! try_element {
        ($ty:ty) => {
            match ArrayD::<$ty>::read_npy(Cursor::new(&bytes)) {
                Ok(array) => return Ok(array.mapv(|v| v as f64)),
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(e) => return Err(DataError::in_file(path, format!("invalid NPY file: {e}"))),
            }
        };
    }
    try_element!(f64);
    try_element!(f32);
    try_element!(i64);
    try_element!(i32);
    try_element!(i16);
    try_element!(i8);
    try_element!(u64);
    try_element!(u32);
    try_element!(u16);
    try_element!(u8);
    Err(DataError::in_file(
        path,
        "unsupported NPY element type: expected a float, signed or unsigned integer type",
    ))
}

/// Reads samples from an NPY array (samples first) and, optionally, labels or targets from a
/// second NPY array. A one-dimensional label array of non-negative integers gives classes; any
/// other label array gives real-valued targets. Without labels, the targets are the inputs
/// themselves, as for an autoencoder or an identification problem.
pub fn read_npy_dataset(path: &Path, labels_path: Option<&Path>) -> Result<Dataset, DataError> {
    let array = read_npy(path)?;
    if array.ndim() == 0 {
        return Err(DataError::in_file(
            path,
            "NPY array is a scalar: expected samples first",
        ));
    }
    let samples = array.shape()[0];
    let sample_shape = array.shape()[1..].to_vec();
    let features: usize = sample_shape.iter().product();
    let values: Vec<f64> = array.iter().copied().collect();
    let inputs = Array2::from_shape_vec((samples, features), values).expect("sizes agree");

    let targets = match labels_path {
        None => Targets::Values(inputs.clone()),
        Some(labels_path) => {
            let labels = read_npy(labels_path)?;
            if labels.ndim() == 0 || labels.shape()[0] != samples {
                return Err(DataError::in_file(
                    labels_path,
                    format!(
                        "NPY labels have shape {:?}: expected {samples} samples first, as in {}",
                        labels.shape(),
                        path.display()
                    ),
                ));
            }
            let outputs: usize = labels.shape()[1..].iter().product();
            let values: Vec<f64> = labels.iter().copied().collect();
            if labels.ndim() == 1 {
                infer_targets(values)
            } else {
                Targets::Values(
                    Array2::from_shape_vec((samples, outputs), values).expect("sizes agree"),
                )
            }
        }
    };
    Ok(Dataset {
        inputs,
        targets,
        sample_shape,
    })
}

/// Per-feature standardization `(x − mean) / std`, fitted on the training set and applied
/// unchanged to the test set. A feature that is constant in the training set keeps a divisor of
/// 1, so it maps to zero instead of NaN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Computes the mean and the population standard deviation of each column.
    pub fn fit(inputs: &Array2<f64>) -> Result<Standardizer, DataError> {
        if inputs.nrows() == 0 {
            return Err(DataError::general(
                "cannot fit a standardization on an empty data set",
            ));
        }
        let mean: Array1<f64> = inputs.mean_axis(Axis(0)).expect("at least one row");
        let std: Vec<f64> = inputs
            .std_axis(Axis(0), 0.0)
            .iter()
            .map(|&s| if s > 0.0 { s } else { 1.0 })
            .collect();
        Ok(Standardizer {
            mean: mean.to_vec(),
            std,
        })
    }

    /// Standardizes the inputs in place.
    pub fn apply(&self, inputs: &mut Array2<f64>) -> Result<(), DataError> {
        if inputs.ncols() != self.mean.len() {
            return Err(DataError::general(format!(
                "standardization was fitted on {} features, the data set has {}",
                self.mean.len(),
                inputs.ncols()
            )));
        }
        for mut row in inputs.rows_mut() {
            for ((value, mean), std) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *value = (*value - mean) / std;
            }
        }
        Ok(())
    }
}

/// The state of a [`ShuffleRng`], enough to continue its stream exactly after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    /// The position in the stream in 32-bit words, split into high and low halves because JSON
    /// numbers hold at most 64 bits.
    pub word_pos_high: u64,
    pub word_pos_low: u64,
}

/// The random number generator of training: ChaCha8 (rand_chacha), seeded from a `u64`.
///
/// ChaCha8's output for a given seed is fixed by its specification, and the permutation below is
/// written out here, so a shuffle depends only on the seed and not on the version of a sampling
/// library.
#[derive(Clone, Debug)]
pub struct ShuffleRng {
    rng: ChaCha8Rng,
}

impl ShuffleRng {
    pub fn from_seed(seed: u64) -> ShuffleRng {
        ShuffleRng {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn state(&self) -> RngState {
        let word_pos = self.rng.get_word_pos();
        RngState {
            seed: self.rng.get_seed(),
            stream: self.rng.get_stream(),
            word_pos_high: (word_pos >> 64) as u64,
            word_pos_low: word_pos as u64,
        }
    }

    pub fn from_state(state: &RngState) -> ShuffleRng {
        let mut rng = ChaCha8Rng::from_seed(state.seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(((state.word_pos_high as u128) << 64) | state.word_pos_low as u128);
        ShuffleRng { rng }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Returns a uniform integer in `0..bound` by rejection sampling, so no value is favoured.
    /// Callers pass a positive `bound`.
    fn below(&mut self, bound: u64) -> u64 {
        // Accept only draws from the largest multiple of `bound` that fits in a u64.
        let rejection_zone = u64::MAX - (u64::MAX - bound + 1) % bound;
        loop {
            let draw = self.rng.next_u64();
            if draw <= rejection_zone {
                return draw % bound;
            }
        }
    }

    /// Returns a uniform value in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Returns a uniformly random permutation of `0..n` (Fisher–Yates, Knuth's Algorithm P).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        order
    }
}

/// Data augmentation by random translation: each row of `inputs` holds one or more `rows × cols`
/// images one after the other (channels first), and each sample is moved by its own random whole
/// number of pixels in `-shift..=shift` down and right (negative: up and left), the same for all of
/// its images. Pixels moved in from outside the image are zero. Draws two numbers from `rng` per
/// sample, so a run stays reproducible from its seed.
pub fn shift_images(
    inputs: &mut Array2<f64>,
    rows: usize,
    cols: usize,
    shift: usize,
    rng: &mut ShuffleRng,
) -> Result<(), DataError> {
    let plane = rows * cols;
    if plane == 0 || !inputs.ncols().is_multiple_of(plane) {
        return Err(DataError::general(format!(
            "cannot shift samples of {} values as images of {rows} × {cols} pixels",
            inputs.ncols()
        )));
    }
    if shift == 0 {
        return Ok(());
    }
    let span = 2 * shift as u64 + 1;
    let mut moved = vec![0.0; inputs.ncols()];
    for mut sample in inputs.rows_mut() {
        let down = rng.below(span) as isize - shift as isize;
        let right = rng.below(span) as isize - shift as isize;
        moved.iter_mut().for_each(|v| *v = 0.0);
        for image in 0..sample.len() / plane {
            let base = image * plane;
            for r in 0..rows as isize {
                let source_row = r - down;
                if source_row < 0 || source_row >= rows as isize {
                    continue;
                }
                for c in 0..cols as isize {
                    let source_col = c - right;
                    if source_col < 0 || source_col >= cols as isize {
                        continue;
                    }
                    moved[base + (r as usize) * cols + c as usize] =
                        sample[base + source_row as usize * cols + source_col as usize];
                }
            }
        }
        for (target, value) in sample.iter_mut().zip(&moved) {
            *target = *value;
        }
    }
    Ok(())
}

/// The inputs and targets of one mini-batch, copied out of a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The sample indices in the data set, in batch order.
    pub indices: Vec<usize>,
    pub inputs: Array2<f64>,
    pub targets: Targets,
}

/// An iterator over consecutive mini-batches of a data set in a given sample order. The last
/// batch is smaller when the batch size does not divide the number of samples.
pub struct MiniBatches<'a> {
    dataset: &'a Dataset,
    order: Vec<usize>,
    batch_size: usize,
    position: usize,
}

impl<'a> MiniBatches<'a> {
    /// Visits the samples in `order`, which must index into `dataset`.
    pub fn new(
        dataset: &'a Dataset,
        order: Vec<usize>,
        batch_size: usize,
    ) -> Result<MiniBatches<'a>, DataError> {
        if batch_size == 0 {
            return Err(DataError::general(
                "invalid batch size 0: expected at least 1",
            ));
        }
        if let Some(&bad) = order.iter().find(|&&i| i >= dataset.len()) {
            return Err(DataError::general(format!(
                "sample index {bad} is out of range for a data set of {} samples",
                dataset.len()
            )));
        }
        Ok(MiniBatches {
            dataset,
            order,
            batch_size,
            position: 0,
        })
    }

    /// Visits every sample once in an order drawn from `rng`: one training epoch.
    pub fn shuffled(
        dataset: &'a Dataset,
        batch_size: usize,
        rng: &mut ShuffleRng,
    ) -> Result<MiniBatches<'a>, DataError> {
        let order = rng.permutation(dataset.len());
        MiniBatches::new(dataset, order, batch_size)
    }

    /// Returns the number of batches in the whole pass, including those already visited.
    pub fn batch_count(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl Iterator for MiniBatches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.position >= self.order.len() {
            return None;
        }
        let end = (self.position + self.batch_size).min(self.order.len());
        let indices = self.order[self.position..end].to_vec();
        self.position = end;
        Some(Batch {
            inputs: select_rows(&self.dataset.inputs, &indices),
            targets: self.dataset.targets.select(&indices),
            indices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_rows_matches_ndarray_select() {
        use ndarray::ShapeBuilder;
        let matrix = Array2::from_shape_fn((7, 5), |(i, j)| (i * 10 + j) as f64);
        let column_major = Array2::from_shape_fn((7, 5).f(), |(i, j)| (i * 10 + j) as f64);
        assert!(column_major.as_slice().is_none());
        for indices in [vec![6, 0, 3, 3], vec![], vec![2]] {
            let expected = matrix.select(Axis(0), &indices);
            assert_eq!(select_rows(&matrix, &indices), expected);
            assert_eq!(select_rows(&column_major, &indices), expected);
        }
        let empty_rows = Array2::<f64>::zeros((4, 0));
        assert_eq!(select_rows(&empty_rows, &[3, 1]).dim(), (2, 0));
    }

    #[test]
    fn parse_idx_reads_big_endian_i16() {
        let bytes = [0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE];
        let array = parse_idx(&bytes).unwrap();
        assert_eq!(array.dims, vec![2]);
        assert_eq!(array.values, vec![258.0, -2.0]);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = ShuffleRng::from_seed(3);
        for bound in [1u64, 2, 3, 7, 1000, u64::MAX] {
            for _ in 0..100 {
                assert!(rng.below(bound) < bound);
            }
        }
    }
}
