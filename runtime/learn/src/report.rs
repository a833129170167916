//! Training reports: a progress bar per epoch with the running loss and accuracy, the
//! loss/accuracy curves and the confusion matrix as PNG images.
//!
//! The plots draw their text with DejaVu Sans, shipped in `fonts/` with its licence and compiled
//! into the binary, so no system font library or font file is needed at run time.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

use crate::loss::ConfusionMatrix;

/// DejaVu Sans 2.37 from Debian's `fonts-dejavu-core` (Bitstream Vera licence, see
/// `fonts/DejaVuSans-LICENSE`).
static DEJAVU_SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const FONT: &str = "sans-serif";

/// A report that could not be drawn or written.
#[derive(Debug)]
pub struct ReportError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ReportError {}

/// Registers the shipped font with plotters once per process.
fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS)
                .map_err(|_| "the shipped DejaVu Sans font is invalid".to_string())
        })
        .clone()
}

/// The running loss and accuracy of one epoch, shown as a progress bar on standard error.
pub struct EpochProgress {
    bar: ProgressBar,
    samples: usize,
    loss_sum: f64,
    correct_sum: f64,
    accuracy_samples: usize,
}

impl EpochProgress {
    /// Starts the bar of epoch `epoch` (counted from 1) out of `epochs`, with `batches` steps.
    /// The bar is hidden when standard error is not a terminal, so logs and CI output stay clean.
    pub fn new(epoch: usize, epochs: usize, batches: u64) -> EpochProgress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        EpochProgress::with_target(epoch, epochs, batches, target)
    }

    /// Starts a bar that draws nothing, for tests and quiet runs.
    pub fn hidden(epoch: usize, epochs: usize, batches: u64) -> EpochProgress {
        EpochProgress::with_target(epoch, epochs, batches, ProgressDrawTarget::hidden())
    }

    fn with_target(
        epoch: usize,
        epochs: usize,
        batches: u64,
        target: ProgressDrawTarget,
    ) -> EpochProgress {
        let bar = ProgressBar::with_draw_target(Some(batches), target);
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} batches {elapsed_precise} {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        EpochProgress {
            bar,
            samples: 0,
            loss_sum: 0.0,
            correct_sum: 0.0,
            accuracy_samples: 0,
        }
    }

    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Adds a batch of `samples` samples with its mean loss and, for classification, its
    /// accuracy, and advances the bar.
    pub fn record_batch(&mut self, samples: usize, mean_loss: f64, accuracy: Option<f64>) {
        self.samples += samples;
        self.loss_sum += mean_loss * samples as f64;
        if let Some(accuracy) = accuracy {
            self.correct_sum += accuracy * samples as f64;
            self.accuracy_samples += samples;
        }
        let mut message = format!("loss {:.4}", self.mean_loss());
        if let Some(accuracy) = self.accuracy() {
            message.push_str(&format!(" accuracy {:.2} %", 100.0 * accuracy));
        }
        self.bar.set_message(message);
        self.bar.inc(1);
    }

    /// Returns the mean loss per sample over the batches so far (NaN before the first batch).
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.samples as f64
    }

    /// Returns the accuracy over the batches so far that reported one.
    pub fn accuracy(&self) -> Option<f64> {
        (self.accuracy_samples > 0).then(|| self.correct_sum / self.accuracy_samples as f64)
    }

    /// Leaves the finished bar on screen.
    pub fn finish(self) {
        self.bar.finish();
    }
}

/// The metrics of one epoch, for curves and summaries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Counted from 1.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: Option<f64>,
    /// The mean squared error over the training samples, when the task's metrics list `mse`.
    /// Records that checkpoints wrote before this figure existed read as `None`.
    #[serde(default)]
    pub train_mse: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    #[serde(default)]
    pub test_mse: Option<f64>,
    /// Wall-clock time of the epoch in seconds.
    pub seconds: f64,
}

fn draw_error(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |message| ReportError {
        path: path.to_path_buf(),
        message,
    }
}

/// Returns a range that contains every finite value, padded by 5 %, or `[0, 1]` when there is
/// none.
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if low > high {
        return 0.0..1.0;
    }
    let pad = if high > low {
        0.05 * (high - low)
    } else {
        0.5 * low.abs().max(1.0)
    };
    (low - pad)..(high + pad)
}

/// Draws the loss (left) and accuracy (right) of each epoch, training and test, as a
/// 1200 × 500 PNG. Non-finite values are left out of the lines.
pub fn plot_training_curves(path: &Path, history: &[EpochRecord]) -> Result<(), ReportError> {
    let fail = draw_error(path);
    register_font().map_err(&fail)?;
    if history.is_empty() {
        return Err(fail("no epochs to plot".to_string()));
    }
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let (left, right) = root.split_horizontally(600);
    let last_epoch = history.iter().map(|r| r.epoch).max().unwrap_or(1).max(2);

    // Loss panel.
    let losses = history
        .iter()
        .flat_map(|r| [Some(r.train_loss), r.test_loss])
        .flatten();
    let mut chart = ChartBuilder::on(&left)
        .caption("Loss", (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(1.0..last_epoch as f64, padded_range(losses))
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .label_style((FONT, 14))
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    let train_loss: Vec<(f64, f64)> = history
        .iter()
        .filter(|r| r.train_loss.is_finite())
        .map(|r| (r.epoch as f64, r.train_loss))
        .collect();
    let test_loss: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|r| {
            r.test_loss
                .filter(|v| v.is_finite())
                .map(|v| (r.epoch as f64, v))
        })
        .collect();
    draw_series(&mut chart, train_loss, BLUE, "training").map_err(&fail)?;
    draw_series(&mut chart, test_loss, RED, "test").map_err(&fail)?;
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;

    // Accuracy panel, in percent.
    let train_accuracy: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|r| r.train_accuracy.map(|a| (r.epoch as f64, 100.0 * a)))
        .filter(|(_, a)| a.is_finite())
        .collect();
    let test_accuracy: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|r| r.test_accuracy.map(|a| (r.epoch as f64, 100.0 * a)))
        .filter(|(_, a)| a.is_finite())
        .collect();
    let accuracy_range = padded_range(train_accuracy.iter().chain(&test_accuracy).map(|&(_, a)| a));
    let mut chart = ChartBuilder::on(&right)
        .caption("Accuracy", (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(1.0..last_epoch as f64, accuracy_range)
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy (%)")
        .label_style((FONT, 14))
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    let has_accuracy = !train_accuracy.is_empty() || !test_accuracy.is_empty();
    draw_series(&mut chart, train_accuracy, BLUE, "training").map_err(&fail)?;
    draw_series(&mut chart, test_accuracy, RED, "test").map_err(&fail)?;
    if has_accuracy {
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(e.to_string()))?;
    }
    root.present().map_err(|e| fail(e.to_string()))
}

type LineChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Draws one labelled line with a dot per epoch; an empty series draws nothing.
fn draw_series(
    chart: &mut LineChart<'_, '_>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    label: &str,
) -> Result<(), String> {
    if points.is_empty() {
        return Ok(());
    }
    chart
        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart
        .draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Draws the confusion matrix as a PNG: true classes in rows (class 0 on top), predicted classes
/// in columns, each cell shaded by the fraction of its row and labelled with its count.
pub fn plot_confusion_matrix(path: &Path, matrix: &ConfusionMatrix) -> Result<(), ReportError> {
    let fail = draw_error(path);
    register_font().map_err(&fail)?;
    let classes = matrix.classes;
    if classes < 2 {
        return Err(fail(format!(
            "the confusion matrix has {classes} classes: a plot needs at least 2"
        )));
    }
    let side = (60 * classes as u32 + 140).clamp(400, 1600);
    let root = BitMapBackend::new(path, (side, side)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Confusion matrix (accuracy {:.2} %)",
                100.0 * matrix.accuracy()
            ),
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(60)
        // plotters treats an integer range as inclusive, so `0..classes − 1` has `classes` segments.
        .build_cartesian_2d(
            (0..classes - 1).into_segmented(),
            (0..classes - 1).into_segmented(),
        )
        .map_err(|e| fail(e.to_string()))?;

    // Row `true_class` is drawn at y = classes − 1 − true_class so that class 0 is on top.
    let label_of = |value: &SegmentValue<usize>| match value {
        SegmentValue::CenterOf(i) => i.to_string(),
        _ => String::new(),
    };
    let row_label = |value: &SegmentValue<usize>| match value {
        SegmentValue::CenterOf(i) if *i < classes => (classes - 1 - i).to_string(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted class")
        .y_desc("true class")
        .x_labels(classes)
        .y_labels(classes)
        .x_label_formatter(&label_of)
        .y_label_formatter(&row_label)
        .label_style((FONT, 14))
        .draw()
        .map_err(|e| fail(e.to_string()))?;

    let mut cells = Vec::with_capacity(classes * classes);
    let mut labels = Vec::with_capacity(classes * classes);
    for true_class in 0..classes {
        let row_total: u64 = (0..classes).map(|p| matrix.count(true_class, p)).sum();
        let y = classes - 1 - true_class;
        for predicted in 0..classes {
            let count = matrix.count(true_class, predicted);
            let fraction = if row_total > 0 {
                count as f64 / row_total as f64
            } else {
                0.0
            };
            cells.push(Rectangle::new(
                [
                    (SegmentValue::Exact(predicted), SegmentValue::Exact(y)),
                    (
                        SegmentValue::Exact(predicted + 1),
                        SegmentValue::Exact(y + 1),
                    ),
                ],
                shade(fraction).filled(),
            ));
            let text_color: &'static RGBColor = if fraction > 0.5 { &WHITE } else { &BLACK };
            let style = TextStyle::from((FONT, 14).into_font())
                .color(text_color)
                .pos(Pos::new(HPos::Center, VPos::Center));
            labels.push(Text::new(
                count.to_string(),
                (SegmentValue::CenterOf(predicted), SegmentValue::CenterOf(y)),
                style,
            ));
        }
    }
    chart.draw_series(cells).map_err(|e| fail(e.to_string()))?;
    chart.draw_series(labels).map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}

/// Maps a fraction in [0, 1] to white through dark blue.
fn shade(fraction: f64) -> RGBColor {
    let f = fraction.clamp(0.0, 1.0);
    let channel = |white: f64, dark: f64| (white + (dark - white) * f).round() as u8;
    RGBColor(
        channel(255.0, 8.0),
        channel(255.0, 48.0),
        channel(255.0, 107.0),
    )
}
