//! Resistive crossbar mapping of a dense layer `y = W x` and its SPICE netlist.
//!
//! Each weight becomes a differential pair of conductances with `G⁺ - G⁻ = s · W`. With
//! `w_max = max |W|` and the conductance range `[g_min, g_max]`,
//!
//! ```text
//! s   = (g_max - g_min) / w_max            (siemens per unit weight)
//! G⁺  = g_min + s · max(W, 0)
//! G⁻  = g_min + s · max(-W, 0)
//! ```
//!
//! so every conductance lies in `[g_min, g_max]` and the larger weight magnitude reaches `g_max`.
//! An all-zero `W` has every conductance at `g_min` and `s = g_max - g_min`.
//!
//! Input `x_j` is a voltage source `VIN<j>` of `x_j · v` volts on the input line `in<j>`, where `v`
//! is [`CrossbarOptions::volts_per_unit`]. Output `i` has two column lines `outp<i>` and `outn<i>`,
//! each held at 0 V (virtual ground) by a 0 V source `VPOUT<i>` or `VNOUT<i>` that serves as an
//! ammeter. By Kirchhoff's current law the ammeter currents are `I⁺_i = Σ_j G⁺_ij x_j v` and
//! `I⁻_i = Σ_j G⁻_ij x_j v`, so `y_i = (I⁺_i - I⁻_i) / (s · v)`. ngspice reports the current
//! through a voltage source as flowing from its positive node through the source, which makes
//! `i(vpout<i>)` positive for a positive input and weight.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::error::HardwareError;
use crate::{check_layer_names, create_output_folder, write_json_file};

/// Settings of the crossbar mapping.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrossbarOptions {
    /// Smallest programmable conductance, in siemens.
    pub g_min: f64,
    /// Largest programmable conductance, in siemens.
    pub g_max: f64,
    /// Input voltage for an input value of 1, in volts.
    pub volts_per_unit: f64,
}

impl Default for CrossbarOptions {
    /// Returns the range 1 µS to 100 µS, an order of magnitude common for resistive RAM cells,
    /// read at 0.1 V per unit input. Set the range of the target device instead where it is known.
    fn default() -> Self {
        CrossbarOptions {
            g_min: 1e-6,
            g_max: 1e-4,
            volts_per_unit: 0.1,
        }
    }
}

/// One dense layer mapped onto a crossbar of differential conductance pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Crossbar {
    pub name: String,
    /// Outputs `m` (rows of `W`).
    pub outputs: usize,
    /// Inputs `n` (columns of `W`).
    pub inputs: usize,
    /// Conductances `G⁺` in siemens, `m × n`.
    pub g_plus: Array2<f64>,
    /// Conductances `G⁻` in siemens, `m × n`.
    pub g_minus: Array2<f64>,
    /// Scale `s` of `G⁺ - G⁻ = s · W`, in siemens per unit weight.
    pub siemens_per_unit_weight: f64,
    /// Input voltage for an input value of 1, in volts.
    pub volts_per_unit: f64,
}

/// Summary of one crossbar written by [`emit_spice`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpiceLayerReport {
    pub name: String,
    /// Shape `(m, n)` of the weight matrix.
    pub shape: (usize, usize),
    /// Resistors in the netlist, `2 m n`.
    pub resistors: usize,
    pub siemens_per_unit_weight: f64,
    /// Current difference `I⁺ - I⁻` for an output value of 1, in amperes.
    pub amperes_per_unit_output: f64,
    pub netlist: PathBuf,
    pub mapping: PathBuf,
}

/// Summary of [`emit_spice`], also written as `crossbar.json` in the output folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrossbarReport {
    pub options: CrossbarOptions,
    pub layers: Vec<SpiceLayerReport>,
}

fn check_options(options: &CrossbarOptions) -> Result<(), HardwareError> {
    let CrossbarOptions {
        g_min,
        g_max,
        volts_per_unit,
    } = *options;
    if !(g_min.is_finite() && g_max.is_finite() && g_min > 0.0 && g_min < g_max) {
        return Err(HardwareError::InvalidConductanceRange { g_min, g_max });
    }
    if !(volts_per_unit.is_finite() && volts_per_unit > 0.0) {
        return Err(HardwareError::InvalidVoltageScale { volts_per_unit });
    }
    Ok(())
}

/// Maps `weights` onto differential conductance pairs in `[g_min, g_max]`.
pub fn map_crossbar(
    name: &str,
    weights: &Array2<f64>,
    options: &CrossbarOptions,
) -> Result<Crossbar, HardwareError> {
    check_options(options)?;
    let (outputs, inputs) = weights.dim();
    if outputs == 0 || inputs == 0 {
        return Err(HardwareError::EmptyMatrix {
            layer: name.to_string(),
        });
    }
    if let Some(((row, column), _)) = weights.indexed_iter().find(|(_, w)| !w.is_finite()) {
        return Err(HardwareError::NonFiniteWeight {
            layer: name.to_string(),
            row,
            column,
        });
    }

    let max_weight = weights.iter().fold(0.0_f64, |max, w| max.max(w.abs()));
    let span = options.g_max - options.g_min;
    let siemens_per_unit_weight = if max_weight > 0.0 {
        span / max_weight
    } else {
        span
    };
    let g_plus =
        weights.mapv(|w| (options.g_min + siemens_per_unit_weight * w.max(0.0)).min(options.g_max));
    let g_minus = weights
        .mapv(|w| (options.g_min + siemens_per_unit_weight * (-w).max(0.0)).min(options.g_max));
    Ok(Crossbar {
        name: name.to_string(),
        outputs,
        inputs,
        g_plus,
        g_minus,
        siemens_per_unit_weight,
        volts_per_unit: options.volts_per_unit,
    })
}

impl Crossbar {
    /// Current difference `I⁺ - I⁻` for an output value of 1, in amperes.
    pub fn amperes_per_unit_output(&self) -> f64 {
        self.siemens_per_unit_weight * self.volts_per_unit
    }

    /// Converts ammeter currents (amperes, one pair per output) to layer outputs `y = W x`.
    pub fn outputs_from_currents(&self, plus: &[f64], minus: &[f64]) -> Vec<f64> {
        let scale = self.amperes_per_unit_output();
        plus.iter()
            .zip(minus)
            .map(|(plus, minus)| (plus - minus) / scale)
            .collect()
    }

    /// Writes the SPICE netlist with the input sources set to `inputs` (unit values, converted to
    /// volts with `volts_per_unit`).
    pub fn netlist(&self, inputs: &[f64]) -> Result<String, HardwareError> {
        if inputs.len() != self.inputs {
            return Err(HardwareError::InputLengthMismatch {
                expected: self.inputs,
                found: inputs.len(),
            });
        }
        let mut text = String::new();
        // `write!` into a String cannot fail, so its results are ignored below.
        let _ = writeln!(
            text,
            "* npdec resistive crossbar `{}`: {} outputs x {} inputs",
            self.name, self.outputs, self.inputs
        );
        let _ = writeln!(
            text,
            "* G+ - G- = {:.17e} S per unit weight; inputs {:.17e} V per unit",
            self.siemens_per_unit_weight, self.volts_per_unit
        );
        let _ = writeln!(
            text,
            "* output i = (i(vpout<i>) - i(vnout<i>)) / {:.17e} A",
            self.amperes_per_unit_output()
        );

        let _ = writeln!(text, "* Inputs: one voltage source per input line.");
        for (j, &x) in inputs.iter().enumerate() {
            let _ = writeln!(text, "VIN{j} in{j} 0 DC {:.17e}", x * self.volts_per_unit);
        }

        let _ = writeln!(text, "* Conductance pairs: R = 1 / G, in ohms.");
        for i in 0..self.outputs {
            for j in 0..self.inputs {
                let _ = writeln!(
                    text,
                    "RP_o{i}_i{j} in{j} outp{i} {:.17e}",
                    1.0 / self.g_plus[(i, j)]
                );
                let _ = writeln!(
                    text,
                    "RN_o{i}_i{j} in{j} outn{i} {:.17e}",
                    1.0 / self.g_minus[(i, j)]
                );
            }
        }

        let _ = writeln!(
            text,
            "* Ammeters: 0 V sources holding each column line at virtual ground."
        );
        for i in 0..self.outputs {
            let _ = writeln!(text, "VPOUT{i} outp{i} 0 DC 0");
            let _ = writeln!(text, "VNOUT{i} outn{i} 0 DC 0");
        }
        let _ = writeln!(text, ".op");
        let _ = writeln!(text, ".end");
        Ok(text)
    }
}

/// Maps each named dense layer onto a crossbar and writes `<name>.cir` (the netlist, every input
/// at 1 unit, that is `volts_per_unit` volts) and `<name>.crossbar.json` (the conductances and
/// scales) into `out`, plus a summary `crossbar.json`. To apply another input, change the DC
/// values of the `VIN<j>` sources.
pub fn emit_spice(
    weights: &[(String, Array2<f64>)],
    out: &Path,
    options: &CrossbarOptions,
) -> Result<CrossbarReport, HardwareError> {
    check_options(options)?;
    check_layer_names(weights.iter().map(|(name, _)| name.as_str()))?;
    let mut crossbars = Vec::with_capacity(weights.len());
    for (name, matrix) in weights {
        crossbars.push(map_crossbar(name, matrix, options)?);
    }

    create_output_folder(out)?;
    let mut layers = Vec::with_capacity(crossbars.len());
    for crossbar in crossbars {
        let netlist_path = out.join(format!("{}.cir", crossbar.name));
        let mapping_path = out.join(format!("{}.crossbar.json", crossbar.name));
        let netlist = crossbar.netlist(&vec![1.0; crossbar.inputs])?;
        crate::write_atomically(&netlist_path, |temporary| {
            std::fs::write(temporary, netlist).map_err(|source| HardwareError::Io {
                path: netlist_path.clone(),
                source,
            })
        })?;
        write_json_file(&mapping_path, &crossbar)?;
        tracing::debug!(
            layer = %crossbar.name,
            outputs = crossbar.outputs,
            inputs = crossbar.inputs,
            siemens_per_unit_weight = crossbar.siemens_per_unit_weight,
            "wrote crossbar netlist"
        );
        layers.push(SpiceLayerReport {
            name: crossbar.name.clone(),
            shape: (crossbar.outputs, crossbar.inputs),
            resistors: 2 * crossbar.outputs * crossbar.inputs,
            siemens_per_unit_weight: crossbar.siemens_per_unit_weight,
            amperes_per_unit_output: crossbar.amperes_per_unit_output(),
            netlist: netlist_path,
            mapping: mapping_path,
        });
    }
    let report = CrossbarReport {
        options: *options,
        layers,
    };
    write_json_file(&out.join("crossbar.json"), &report)?;
    Ok(report)
}
