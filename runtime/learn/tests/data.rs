//! Data readers on the shipped data sets and on small files written here, including bad input.

mod common;

use std::path::Path;

use ndarray::{array, Array1, Array2};
use ndarray_npy::WriteNpyExt;
use npdec_learn::data::{
    load_data_source, read_csv, read_idx, read_idx_dataset, read_npy_dataset, shift_images,
    MiniBatches, ShuffleRng, Standardizer, Targets,
};
use npdec_symbolic::model::{DataFormat, DataSource, LabelColumn, Split};

fn source(format: DataFormat, split: Option<Split>, scale: f64) -> DataSource {
    DataSource {
        name: "data".to_string(),
        format,
        split,
        scale,
        pad: 0,
        shift: 0,
        span: Default::default(),
    }
}

fn mnist_source() -> DataSource {
    source(
        DataFormat::Idx {
            images: "mnist10k-images-idx3-ubyte.gz".to_string(),
            labels: "mnist10k-labels-idx1-ubyte.gz".to_string(),
        },
        Some(Split::Count(8000)),
        1.0 / 255.0,
    )
}

/// Encodes an IDX file of unsigned bytes.
fn idx_u8(dims: &[u32], values: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(values);
    bytes
}

#[test]
fn mnist_split_counts_and_shapes() {
    let data = load_data_source(&mnist_source(), &common::example_data(), None).unwrap();
    assert_eq!(data.train.len(), 8000);
    assert_eq!(data.test.len(), 2000);
    assert_eq!(data.train.features(), 784);
    assert_eq!(data.train.sample_shape, vec![28, 28]);
    assert_eq!(data.test.sample_shape, vec![28, 28]);

    let train_counts = data.train.class_counts().unwrap();
    let test_counts = data.test.class_counts().unwrap();
    let total: Vec<usize> = train_counts
        .iter()
        .zip(&test_counts)
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(
        total,
        vec![1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    );
}

#[test]
fn mnist_scale_maps_grey_levels_to_unit() {
    let data = load_data_source(&mnist_source(), &common::example_data(), None).unwrap();
    let max = data.train.inputs.iter().copied().fold(f64::MIN, f64::max);
    let min = data.train.inputs.iter().copied().fold(f64::MAX, f64::min);
    assert_eq!(max, 1.0);
    assert_eq!(min, 0.0);
}

#[test]
fn mnist_pad_centres_each_image_in_zeros() {
    let plain = load_data_source(&mnist_source(), &common::example_data(), None).unwrap();
    let mut padded_source = mnist_source();
    padded_source.pad = 3;
    let padded = load_data_source(&padded_source, &common::example_data(), None).unwrap();
    assert_eq!(padded.train.sample_shape, vec![34, 34]);
    assert_eq!(padded.test.features(), 34 * 34);
    for (a, b) in plain
        .test
        .inputs
        .rows()
        .into_iter()
        .zip(padded.test.inputs.rows())
        .take(50)
    {
        for r in 0..34 {
            for c in 0..34 {
                let inside = (3..31).contains(&r) && (3..31).contains(&c);
                let expected = if inside {
                    a[(r - 3) * 28 + (c - 3)]
                } else {
                    0.0
                };
                assert_eq!(b[r * 34 + c], expected, "entry ({r}, {c})");
            }
        }
        assert!((a.sum() - b.sum()).abs() < 1e-9);
    }
}

#[test]
fn digits_csv_split_counts_and_shapes() {
    let digits = source(
        DataFormat::Csv {
            path: "digits.csv.gz".to_string(),
            label_column: LabelColumn::Last,
        },
        Some(Split::Count(1440)),
        1.0,
    );
    let data = load_data_source(&digits, &common::example_data(), None).unwrap();
    assert_eq!(data.train.len(), 1440);
    assert_eq!(data.test.len(), 357);
    assert_eq!(data.train.features(), 64);
    let counts = data.train.class_counts().unwrap();
    assert_eq!(counts.len(), 10);
    assert_eq!(counts.iter().sum::<usize>(), 1440);
    let max = data.train.inputs.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(max, 16.0);
}

#[test]
fn csv_pad_views_rows_as_field_images() {
    let mut digits = source(
        DataFormat::Csv {
            path: "digits.csv.gz".to_string(),
            label_column: LabelColumn::Last,
        },
        Some(Split::Count(1440)),
        1.0,
    );
    let plain = load_data_source(&digits, &common::example_data(), None).unwrap();
    digits.pad = 4;
    let padded = load_data_source(&digits, &common::example_data(), Some(&[16, 16])).unwrap();
    assert_eq!(padded.train.sample_shape, vec![16, 16]);
    for (a, b) in plain
        .test
        .inputs
        .rows()
        .into_iter()
        .zip(padded.test.inputs.rows())
    {
        for r in 0..16 {
            for c in 0..16 {
                let inside = (4..12).contains(&r) && (4..12).contains(&c);
                let expected = if inside {
                    a[(r - 4) * 8 + (c - 4)]
                } else {
                    0.0
                };
                assert_eq!(b[r * 16 + c], expected, "entry ({r}, {c})");
            }
        }
    }

    // A field shape that the rows do not fit leaves them flat vectors, padded at both ends.
    let flat = load_data_source(&digits, &common::example_data(), Some(&[20, 20])).unwrap();
    assert_eq!(flat.train.sample_shape, vec![72]);
    let one_dimensional = load_data_source(&digits, &common::example_data(), Some(&[72])).unwrap();
    assert_eq!(one_dimensional.train.sample_shape, vec![72]);
}

#[test]
fn idx_gzipped_and_plain_agree() {
    let folder = common::scratch_folder("idx-gzip");
    let bytes = idx_u8(&[2, 2, 3], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255]);
    std::fs::write(folder.join("plain.idx"), &bytes).unwrap();
    std::fs::write(folder.join("packed.idx.gz"), common::gzip(&bytes)).unwrap();
    let plain = read_idx(&folder.join("plain.idx")).unwrap();
    let packed = read_idx(&folder.join("packed.idx.gz")).unwrap();
    assert_eq!(plain, packed);
    assert_eq!(plain.dims, vec![2, 2, 3]);
    assert_eq!(plain.values[11], 255.0);
}

#[test]
fn idx_truncated_data_is_an_error() {
    let folder = common::scratch_folder("idx-truncated");
    let path = folder.join("short.idx");
    let mut bytes = idx_u8(&[4, 2], &[1; 8]);
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&path, &bytes).unwrap();
    let message = read_idx(&path).unwrap_err().to_string();
    assert!(message.contains("truncated IDX data"), "{message}");
    assert!(message.contains("short.idx"), "{message}");
}

#[test]
fn idx_truncated_gzip_is_an_error() {
    let folder = common::scratch_folder("idx-truncated-gzip");
    let path = folder.join("short.idx.gz");
    let packed = common::gzip(&idx_u8(&[100], &[7; 100]));
    std::fs::write(&path, &packed[..packed.len() / 2]).unwrap();
    let message = read_idx(&path).unwrap_err().to_string();
    assert!(message.contains("invalid gzip data"), "{message}");
}

#[test]
fn idx_every_truncation_is_an_error() {
    let folder = common::scratch_folder("idx-every-truncation");
    let path = folder.join("cut.idx");
    let bytes = idx_u8(&[3, 2], &[1, 2, 3, 4, 5, 6]);
    for length in 0..bytes.len() {
        std::fs::write(&path, &bytes[..length]).unwrap();
        assert!(read_idx(&path).is_err(), "{length} bytes accepted");
    }
}

#[test]
fn idx_wrong_magic_is_an_error() {
    let folder = common::scratch_folder("idx-magic");
    let path = folder.join("bad.idx");
    std::fs::write(&path, [0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 5]).unwrap();
    let message = read_idx(&path).unwrap_err().to_string();
    assert!(message.contains("not an IDX file"), "{message}");

    std::fs::write(&path, [0, 0, 0x07, 0x01, 0, 0, 0, 1, 5]).unwrap();
    let message = read_idx(&path).unwrap_err().to_string();
    assert!(message.contains("unknown element type 0x07"), "{message}");
}

#[test]
fn idx_trailing_bytes_are_an_error() {
    let folder = common::scratch_folder("idx-trailing");
    let path = folder.join("long.idx");
    let mut bytes = idx_u8(&[2], &[1, 2]);
    bytes.push(3);
    std::fs::write(&path, &bytes).unwrap();
    let message = read_idx(&path).unwrap_err().to_string();
    assert!(message.contains("trailing bytes"), "{message}");
}

#[test]
fn idx_label_count_mismatch_is_an_error() {
    let folder = common::scratch_folder("idx-mismatch");
    std::fs::write(folder.join("images.idx"), idx_u8(&[3, 2], &[0; 6])).unwrap();
    std::fs::write(folder.join("labels.idx"), idx_u8(&[2], &[0, 1])).unwrap();
    let message = read_idx_dataset(&folder.join("images.idx"), &folder.join("labels.idx"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("2 labels for 3 images"), "{message}");
}

#[test]
fn idx_missing_file_is_an_error() {
    let message = read_idx(Path::new("/nonexistent/npdec/images.idx"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("/nonexistent/npdec/images.idx: cannot read"),
        "{message}"
    );
}

#[test]
fn csv_header_and_label_columns() {
    let folder = common::scratch_folder("csv-columns");
    let path = folder.join("small.csv");
    std::fs::write(&path, "label,a,b\n1,0.5,2\n\n0,1.5,3\n2,-1,4\n").unwrap();

    let first = read_csv(&path, LabelColumn::First).unwrap();
    assert_eq!(first.inputs, array![[0.5, 2.0], [1.5, 3.0], [-1.0, 4.0]]);
    assert_eq!(
        first.targets,
        Targets::Classes {
            labels: vec![1, 0, 2],
            classes: 3
        }
    );

    let middle = read_csv(&path, LabelColumn::Index(2)).unwrap();
    assert_eq!(middle.inputs, array![[1.0, 0.5], [0.0, 1.5], [2.0, -1.0]]);
    assert_eq!(
        middle.targets,
        Targets::Classes {
            labels: vec![2, 3, 4],
            classes: 5
        }
    );

    let last = read_csv(&path, LabelColumn::Last).unwrap();
    assert_eq!(last.sample_shape, vec![2]);
}

#[test]
fn csv_real_labels_become_targets() {
    let folder = common::scratch_folder("csv-regression");
    let path = folder.join("regression.csv");
    std::fs::write(&path, "1,2,0.25\n3,4,-1.5\n").unwrap();
    let data = read_csv(&path, LabelColumn::Last).unwrap();
    assert_eq!(data.targets, Targets::Values(array![[0.25], [-1.5]]));
}

#[test]
fn csv_ragged_row_is_an_error() {
    let folder = common::scratch_folder("csv-ragged");
    let path = folder.join("ragged.csv");
    std::fs::write(&path, "1,2,3\n4,5\n").unwrap();
    let message = read_csv(&path, LabelColumn::Last).unwrap_err().to_string();
    assert!(
        message.contains("line 2 has 2 fields, but line 1 has 3"),
        "{message}"
    );
    assert!(message.contains("ragged.csv"), "{message}");
}

#[test]
fn csv_invalid_number_is_an_error() {
    let folder = common::scratch_folder("csv-number");
    let path = folder.join("bad.csv");
    std::fs::write(&path, "1,2,3\n4,x5,6\n").unwrap();
    let message = read_csv(&path, LabelColumn::Last).unwrap_err().to_string();
    assert!(
        message.contains("line 2, column 2: invalid number `x5`"),
        "{message}"
    );
}

#[test]
fn csv_label_index_out_of_range_is_an_error() {
    let folder = common::scratch_folder("csv-index");
    let path = folder.join("small.csv");
    std::fs::write(&path, "1,2,3\n").unwrap();
    let message = read_csv(&path, LabelColumn::Index(3))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("label column 3 is out of range"),
        "{message}"
    );
}

#[test]
fn csv_empty_file_is_an_error() {
    let folder = common::scratch_folder("csv-empty");
    let path = folder.join("empty.csv");
    std::fs::write(&path, "a,b\n\n").unwrap();
    let message = read_csv(&path, LabelColumn::Last).unwrap_err().to_string();
    assert!(message.contains("no data rows"), "{message}");
}

#[test]
fn npy_inputs_with_class_labels() {
    let folder = common::scratch_folder("npy-classes");
    let inputs = Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32 * 0.5);
    let labels: Array1<i64> = array![0, 2, 1, 2];
    inputs
        .write_npy(std::fs::File::create(folder.join("x.npy")).unwrap())
        .unwrap();
    labels
        .write_npy(std::fs::File::create(folder.join("y.npy")).unwrap())
        .unwrap();
    let data = read_npy_dataset(&folder.join("x.npy"), Some(&folder.join("y.npy"))).unwrap();
    assert_eq!(data.inputs[[3, 2]], 5.5);
    assert_eq!(data.sample_shape, vec![3]);
    assert_eq!(
        data.targets,
        Targets::Classes {
            labels: vec![0, 2, 1, 2],
            classes: 3
        }
    );
}

#[test]
fn npy_images_with_real_targets() {
    let folder = common::scratch_folder("npy-targets");
    let images = ndarray::Array3::from_shape_fn((2, 2, 2), |(i, j, k)| (i + j + k) as u8);
    let targets: Array2<f64> = array![[0.5, 1.0], [1.5, -2.0]];
    images
        .write_npy(std::fs::File::create(folder.join("x.npy")).unwrap())
        .unwrap();
    targets
        .write_npy(std::fs::File::create(folder.join("t.npy")).unwrap())
        .unwrap();
    let data = read_npy_dataset(&folder.join("x.npy"), Some(&folder.join("t.npy"))).unwrap();
    assert_eq!(data.sample_shape, vec![2, 2]);
    assert_eq!(data.inputs.row(1).to_vec(), vec![1.0, 2.0, 2.0, 3.0]);
    assert_eq!(data.targets, Targets::Values(targets));
}

#[test]
fn npy_label_count_mismatch_is_an_error() {
    let folder = common::scratch_folder("npy-mismatch");
    let inputs: Array2<f64> = Array2::zeros((3, 2));
    let labels: Array1<u8> = array![0, 1];
    inputs
        .write_npy(std::fs::File::create(folder.join("x.npy")).unwrap())
        .unwrap();
    labels
        .write_npy(std::fs::File::create(folder.join("y.npy")).unwrap())
        .unwrap();
    let message = read_npy_dataset(&folder.join("x.npy"), Some(&folder.join("y.npy")))
        .unwrap_err()
        .to_string();
    assert!(message.contains("expected 3 samples first"), "{message}");
}

#[test]
fn npy_garbage_is_an_error() {
    let folder = common::scratch_folder("npy-garbage");
    let path = folder.join("x.npy");
    std::fs::write(&path, b"not an npy file at all").unwrap();
    let message = read_npy_dataset(&path, None).unwrap_err().to_string();
    assert!(message.contains("invalid NPY file"), "{message}");
}

#[test]
fn split_fraction_and_bad_splits() {
    let folder = common::scratch_folder("split");
    let path = folder.join("ten.csv");
    let rows: String = (0..10).map(|i| format!("{i},{}\n", i % 2)).collect();
    std::fs::write(&path, rows).unwrap();
    let data = read_csv(&path, LabelColumn::Last).unwrap();

    let (train, test) = data.split(Some(Split::Fraction(0.75))).unwrap();
    assert_eq!((train.len(), test.len()), (7, 3));
    assert_eq!(test.inputs[[0, 0]], 7.0, "the test set is the tail");

    let (train, test) = data.split(None).unwrap();
    assert_eq!((train.len(), test.len()), (10, 0));

    let message = data.split(Some(Split::Count(11))).unwrap_err().to_string();
    assert!(
        message.contains("11 training samples requested"),
        "{message}"
    );
    for fraction in [0.0, 1.5, f64::NAN] {
        assert!(
            data.split(Some(Split::Fraction(fraction))).is_err(),
            "{fraction}"
        );
    }
}

#[test]
fn standardizer_fits_training_statistics() {
    let train = array![[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]];
    let scaler = Standardizer::fit(&train).unwrap();
    let mut standardized = train.clone();
    scaler.apply(&mut standardized).unwrap();
    for column in standardized.columns() {
        let mean = column.mean().unwrap();
        assert!(mean.abs() < 1e-15, "mean {mean}");
    }
    assert!((standardized.column(0).std(0.0) - 1.0).abs() < 1e-15);
    assert_eq!(
        standardized.column(1).to_vec(),
        vec![0.0; 3],
        "a constant feature maps to 0"
    );

    let mut wrong = Array2::zeros((1, 2));
    assert!(scaler.apply(&mut wrong).is_err());
}

#[test]
fn shuffle_is_deterministic_per_seed() {
    let first = ShuffleRng::from_seed(42).permutation(100);
    let again = ShuffleRng::from_seed(42).permutation(100);
    let other = ShuffleRng::from_seed(43).permutation(100);
    assert_eq!(first, again);
    assert_ne!(first, other);
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
}

#[test]
fn shuffle_state_resumes_stream() {
    let mut rng = ShuffleRng::from_seed(7);
    rng.permutation(33);
    let state = rng.state();
    let expected = rng.permutation(50);
    let mut resumed = ShuffleRng::from_state(&state);
    assert_eq!(resumed.permutation(50), expected);
    assert_eq!(resumed.next_u64(), rng.next_u64());
}

#[test]
fn shuffle_permutations_are_uniform() {
    // Each of the 6 permutations of 3 elements should appear about 1000 times in 6000 draws; a
    // tolerance of 150 is about 5 standard deviations.
    let mut rng = ShuffleRng::from_seed(1);
    let mut counts = std::collections::HashMap::new();
    for _ in 0..6000 {
        *counts.entry(rng.permutation(3)).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 6);
    for (permutation, count) in counts {
        assert!(
            (850..=1150).contains(&count),
            "{permutation:?} drawn {count} times"
        );
    }
}

#[test]
fn mini_batches_cover_every_sample_once() {
    let folder = common::scratch_folder("batches");
    let path = folder.join("seven.csv");
    let rows: String = (0..7).map(|i| format!("{i},{}\n", i % 3)).collect();
    std::fs::write(&path, rows).unwrap();
    let data = read_csv(&path, LabelColumn::Last).unwrap();

    let mut rng = ShuffleRng::from_seed(5);
    let batches = MiniBatches::shuffled(&data, 3, &mut rng).unwrap();
    assert_eq!(batches.batch_count(), 3);
    let batches: Vec<_> = batches.collect();
    let sizes: Vec<usize> = batches.iter().map(|b| b.indices.len()).collect();
    assert_eq!(sizes, vec![3, 3, 1]);

    let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..7).collect::<Vec<_>>());
    for batch in &batches {
        for (row, &index) in batch.indices.iter().enumerate() {
            assert_eq!(batch.inputs[[row, 0]], index as f64);
            let Targets::Classes { labels, .. } = &batch.targets else {
                panic!("expected classes");
            };
            assert_eq!(labels[row], index % 3);
        }
    }

    assert!(MiniBatches::new(&data, vec![0, 1], 0).is_err());
    assert!(MiniBatches::new(&data, vec![0, 7], 2).is_err());
}

/// Finds the translation (down, right) that turns `image` into `moved`, zeros filling the edges.
fn translation_of(
    image: &[f64],
    moved: &[f64],
    rows: usize,
    cols: usize,
    limit: isize,
) -> Option<(isize, isize)> {
    for down in -limit..=limit {
        for right in -limit..=limit {
            let matches = (0..rows as isize).all(|r| {
                (0..cols as isize).all(|c| {
                    let (sr, sc) = (r - down, c - right);
                    let expected = if sr < 0 || sc < 0 || sr >= rows as isize || sc >= cols as isize
                    {
                        0.0
                    } else {
                        image[(sr as usize) * cols + sc as usize]
                    };
                    moved[(r as usize) * cols + c as usize] == expected
                })
            });
            if matches {
                return Some((down, right));
            }
        }
    }
    None
}

#[test]
fn shift_images_translates_each_sample_within_the_limit() {
    let (rows, cols, samples) = (5, 6, 200);
    // Distinct values everywhere, so exactly one translation explains each result.
    let inputs = Array2::from_shape_fn((samples, 2 * rows * cols), |(s, i)| {
        1.0 + (s * 1000 + i) as f64
    });
    let mut moved = inputs.clone();
    let mut rng = ShuffleRng::from_seed(7);
    shift_images(&mut moved, rows, cols, 2, &mut rng).unwrap();
    let mut seen = std::collections::HashSet::new();
    for s in 0..samples {
        let plane = rows * cols;
        let row = inputs.row(s).to_vec();
        let out = moved.row(s).to_vec();
        let first = translation_of(&row[..plane], &out[..plane], rows, cols, 2)
            .unwrap_or_else(|| panic!("sample {s} is not a translation by at most 2 pixels"));
        let second = translation_of(&row[plane..], &out[plane..], rows, cols, 2).unwrap();
        assert_eq!(first, second, "both channels of sample {s} move together");
        seen.insert(first);
    }
    // 200 draws from 25 equally likely translations miss a given one with probability
    // (24/25)^200 ≈ 3e-4; the seed is fixed, so the check is deterministic.
    assert_eq!(seen.len(), 25, "translations drawn: {seen:?}");

    // The same seed draws the same translations; shift 0 changes nothing.
    let mut again = inputs.clone();
    shift_images(&mut again, rows, cols, 2, &mut ShuffleRng::from_seed(7)).unwrap();
    assert_eq!(again, moved);
    let mut unchanged = inputs.clone();
    shift_images(&mut unchanged, rows, cols, 0, &mut rng).unwrap();
    assert_eq!(unchanged, inputs);
}

#[test]
fn shift_images_rejects_samples_that_are_not_images() {
    let mut inputs = Array2::zeros((3, 10));
    let error = shift_images(&mut inputs, 3, 3, 1, &mut ShuffleRng::from_seed(0)).unwrap_err();
    assert!(error.to_string().contains("3 × 3"), "{error}");
}
