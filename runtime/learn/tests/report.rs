//! Reports: the PNG plots are written and decode, and the progress bar keeps running means.

mod common;

use npdec_learn::loss::ConfusionMatrix;
use npdec_learn::report::{
    plot_confusion_matrix, plot_training_curves, EpochProgress, EpochRecord,
};

fn history() -> Vec<EpochRecord> {
    (1..=6)
        .map(|epoch| EpochRecord {
            epoch,
            train_loss: 2.0 / epoch as f64,
            train_accuracy: Some(0.5 + 0.07 * epoch as f64),
            train_mse: None,
            test_loss: Some(2.2 / epoch as f64),
            test_accuracy: Some(0.45 + 0.07 * epoch as f64),
            test_mse: None,
            seconds: 1.5,
        })
        .collect()
}

/// Counts pixels that are clearly not white.
fn ink_pixels(image: &image::RgbImage) -> usize {
    image
        .pixels()
        .filter(|p| p.0.iter().any(|&c| c < 200))
        .count()
}

#[test]
fn training_curves_png_decodes() {
    let folder = common::scratch_folder("curves");
    let path = folder.join("curves.png");
    plot_training_curves(&path, &history()).unwrap();
    let image = image::open(&path).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (1200, 500));
    let ink = ink_pixels(&image);
    assert!(ink > 2000, "only {ink} drawn pixels");
    // Blue training and red test lines are both present.
    assert!(image.pixels().any(|p| p.0 == [0, 0, 255]));
    assert!(image.pixels().any(|p| p.0 == [255, 0, 0]));
}

#[test]
fn training_curves_without_accuracy_or_finite_values() {
    let folder = common::scratch_folder("curves-partial");
    let path = folder.join("curves.png");
    let mut records = history();
    for record in &mut records {
        record.train_accuracy = None;
        record.test_accuracy = None;
        record.test_loss = None;
    }
    records[2].train_loss = f64::NAN;
    plot_training_curves(&path, &records).unwrap();
    assert!(image::open(&path).is_ok());

    let message = plot_training_curves(&path, &[]).unwrap_err().to_string();
    assert!(message.contains("no epochs to plot"), "{message}");
}

#[test]
fn confusion_matrix_png_decodes() {
    let folder = common::scratch_folder("confusion");
    let path = folder.join("confusion.png");
    let mut matrix = ConfusionMatrix::new(10);
    let labels: Vec<usize> = (0..500).map(|i| i % 10).collect();
    let predicted: Vec<usize> = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| if i % 7 == 0 { (l + 1) % 10 } else { l })
        .collect();
    matrix.add_predictions(&predicted, &labels).unwrap();
    plot_confusion_matrix(&path, &matrix).unwrap();

    let image = image::open(&path).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (740, 740));
    // The diagonal cells hold 85 % of their rows and are drawn dark.
    let dark = image
        .pixels()
        .filter(|p| p.0[0] < 60 && p.0[2] > 90)
        .count();
    assert!(dark > 10 * 1000, "only {dark} dark pixels");
}

#[test]
fn confusion_matrix_below_two_classes_is_an_error() {
    let folder = common::scratch_folder("confusion-small");
    let path = folder.join("confusion.png");
    for classes in [0, 1] {
        let message = plot_confusion_matrix(&path, &ConfusionMatrix::new(classes))
            .unwrap_err()
            .to_string();
        assert!(message.contains("a plot needs at least 2"), "{message}");
    }
}

#[test]
fn unwritable_path_is_an_error() {
    let path = std::path::Path::new("/nonexistent/npdec/curves.png");
    let message = plot_training_curves(path, &history())
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("/nonexistent/npdec/curves.png: "),
        "{message}"
    );
}

#[test]
fn progress_keeps_weighted_means() {
    let mut progress = EpochProgress::hidden(1, 3, 2);
    assert!(progress.is_hidden());
    progress.record_batch(10, 1.0, Some(0.5));
    progress.record_batch(30, 2.0, Some(1.0));
    assert!((progress.mean_loss() - 1.75).abs() < 1e-15);
    assert!((progress.accuracy().unwrap() - 0.875).abs() < 1e-15);
    progress.finish();

    let mut regression = EpochProgress::hidden(1, 1, 1);
    regression.record_batch(4, 0.25, None);
    assert_eq!(regression.accuracy(), None);
}

#[test]
fn progress_is_hidden_without_terminal() {
    // Test harnesses capture standard error, so it is not a terminal here.
    use std::io::IsTerminal;
    let progress = EpochProgress::new(1, 1, 10);
    assert_eq!(progress.is_hidden(), !std::io::stderr().is_terminal());
}
