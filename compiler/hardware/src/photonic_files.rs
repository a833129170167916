//! Files written for one photonic layer: the JSON layout, a SAX-style JSON netlist, a GDSII
//! layout and an SVG drawing. The formats are described in `docs/hardware.md`.
//!
//! All four files place the optical elements in the same sequence of slots along the light path.
//! First come the columns of the input mesh (`V*`) and one slot of its output phase shifters, then
//! one slot of attenuators (`Σ / σ_max`), then the columns of the output mesh (`U`) and one slot of
//! its output phase shifters. Mode `k` runs along the row `k`, with mode 0 at the top of the drawing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gds21::{
    GdsBoundary, GdsElement, GdsLibrary, GdsPath, GdsPoint, GdsProperty, GdsStruct, GdsStructRef,
    GdsUnits,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::HardwareError;
use crate::photonic::{ClementsMesh, PhotonicLayer, RebuildErrors};
use crate::write_json_file;

/// Format name stored in every JSON layout.
pub const LAYOUT_FORMAT: &str = "npdec-photonic-layout";
/// Version of the JSON layout format.
pub const LAYOUT_VERSION: u32 = 1;

/// Distance between neighbouring modes in the GDSII layout, in nm.
pub const MODE_PITCH_NM: i32 = 100_000;
/// Length of one slot (an MZI column, a phase shifter or an attenuator) along the light path, in nm.
pub const SLOT_LENGTH_NM: i32 = 400_000;
/// Waveguide width, in nm.
pub const WAVEGUIDE_WIDTH_NM: i32 = 500;
/// Centre-to-centre distance of the two waveguides inside a directional coupler, in nm.
pub const COUPLER_SEPARATION_NM: i32 = 1_000;
/// Width of a heater or attenuator pad, in nm.
pub const PAD_WIDTH_NM: i32 = 4_000;

/// GDSII layer of the waveguides.
pub const WAVEGUIDE_LAYER: i16 = 1;
/// GDSII layer of the phase-shifter heaters (θ, φ and the output phases).
pub const HEATER_LAYER: i16 = 2;
/// GDSII layer of the attenuator pads.
pub const ATTENUATOR_LAYER: i16 = 3;

/// GDSII cell of one MZI, origin at the start of its lower arm.
pub const MZI_CELL: &str = "MZI";
/// GDSII cell of one output phase shifter, origin at the start of its waveguide.
pub const PHASE_SHIFTER_CELL: &str = "PHASE_SHIFTER";
/// GDSII cell of one attenuator, origin at the start of its waveguide.
pub const ATTENUATOR_CELL: &str = "ATTENUATOR";

/// GDSII property attribute holding an element's settings as `key=value` text.
const SETTINGS_PROPERTY: i16 = 1;

/// The JSON layout of one layer: the mapped layer plus the format header and the rebuild errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotonicLayout {
    /// Always [`LAYOUT_FORMAT`].
    pub format: String,
    /// Always [`LAYOUT_VERSION`].
    pub version: u32,
    /// The MZI transfer matrix in words, so the file can be read without this crate.
    pub mzi_convention: String,
    /// The mapped layer.
    #[serde(flatten)]
    pub layer: PhotonicLayer,
    /// Max-abs errors of the rebuild check run before writing.
    pub rebuild_errors: RebuildErrors,
}

/// Paths of the files written for one layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotonicFiles {
    pub layout: PathBuf,
    pub netlist: PathBuf,
    pub gds: PathBuf,
    pub svg: PathBuf,
}

/// An optical element in one slot, on one mode (or a mode pair for an MZI).
enum Element {
    Mzi { row: usize, theta: f64, phi: f64 },
    PhaseShifter { mode: usize, phase: f64 },
    Attenuator { mode: usize, transmission: f64 },
}

/// Lists the elements slot by slot, in the order light meets them, with the instance name prefix
/// of each slot.
fn slots(layer: &PhotonicLayer) -> Vec<(String, Vec<Element>)> {
    let mut slots = Vec::new();
    push_mesh_slots(&mut slots, "v", &layer.input_mesh);
    slots.push((
        "att".to_string(),
        layer
            .attenuators
            .iter()
            .enumerate()
            .map(|(mode, &transmission)| Element::Attenuator { mode, transmission })
            .collect(),
    ));
    push_mesh_slots(&mut slots, "u", &layer.output_mesh);
    slots
}

fn push_mesh_slots(slots: &mut Vec<(String, Vec<Element>)>, prefix: &str, mesh: &ClementsMesh) {
    for column in 0..mesh.columns() {
        let elements = mesh
            .mzis
            .iter()
            .filter(|mzi| mzi.column == column)
            .map(|mzi| Element::Mzi {
                row: mzi.row,
                theta: mzi.theta,
                phi: mzi.phi,
            })
            .collect();
        slots.push((format!("{prefix}_mzi_c{column}"), elements));
    }
    slots.push((
        format!("{prefix}_phase"),
        mesh.output_phases
            .iter()
            .enumerate()
            .map(|(mode, &phase)| Element::PhaseShifter { mode, phase })
            .collect(),
    ));
}

/// Writes the JSON layout, the netlist, the GDSII file and the SVG drawing of `layer` into
/// `directory`, named `<layer name>.layout.json`, `.netlist.json`, `.gds` and `.svg`.
pub fn write_photonic_files(
    layer: &PhotonicLayer,
    rebuild_errors: RebuildErrors,
    directory: &Path,
) -> Result<PhotonicFiles, HardwareError> {
    let files = PhotonicFiles {
        layout: directory.join(format!("{}.layout.json", layer.name)),
        netlist: directory.join(format!("{}.netlist.json", layer.name)),
        gds: directory.join(format!("{}.gds", layer.name)),
        svg: directory.join(format!("{}.svg", layer.name)),
    };

    let layout = PhotonicLayout {
        format: LAYOUT_FORMAT.to_string(),
        version: LAYOUT_VERSION,
        mzi_convention: "T(theta, phi) on modes (row, row + 1) = [[exp(i phi) cos theta, -sin theta], \
                         [exp(i phi) sin theta, cos theta]]; output phase p multiplies its mode by exp(i p)"
            .to_string(),
        layer: layer.clone(),
        rebuild_errors,
    };
    write_json_file(&files.layout, &layout)?;
    write_json_file(&files.netlist, &sax_netlist(layer))?;
    write_gds(layer, &files.gds)?;
    write_text(&files.svg, &svg_drawing(layer))?;
    Ok(files)
}

fn write_text(path: &Path, text: &str) -> Result<(), HardwareError> {
    crate::write_atomically(path, |temporary| {
        std::fs::write(temporary, text).map_err(|source| HardwareError::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Builds the SAX-style netlist: `instances` (component and settings), `connections`
/// (`"instance,port": "instance,port"`, from an output port to the next input port) and `ports`
/// (`in<k>` and `out<k>` of every mode).
///
/// Components: `mzi` (ports `in0`, `in1`, `out0`, `out1`, where port 0 is the upper mode `row`;
/// settings `theta`, `phi`), `phase_shifter` (ports `in0`, `out0`; setting `phase`) and
/// `attenuator` (ports `in0`, `out0`; setting `transmission`, a field amplitude factor).
pub fn sax_netlist(layer: &PhotonicLayer) -> Value {
    let mut instances = Map::new();
    let mut connections = Map::new();
    let mut ports = Map::new();

    // The last output port on each mode, or None while the mode is still the circuit input.
    let mut last_output: Vec<Option<String>> = vec![None; layer.modes];
    let mut attach =
        |mode: usize, input: String, output: String, ports: &mut Map<String, Value>| {
            match last_output[mode].take() {
                Some(previous) => connections.insert(previous, Value::String(input)),
                None => ports.insert(format!("in{mode}"), Value::String(input)),
            };
            last_output[mode] = Some(output);
        };

    for (prefix, elements) in slots(layer) {
        for element in elements {
            match element {
                Element::Mzi { row, theta, phi } => {
                    let name = format!("{prefix}_r{row}");
                    instances.insert(
                        name.clone(),
                        json!({"component": "mzi", "settings": {"theta": theta, "phi": phi}}),
                    );
                    attach(
                        row,
                        format!("{name},in0"),
                        format!("{name},out0"),
                        &mut ports,
                    );
                    attach(
                        row + 1,
                        format!("{name},in1"),
                        format!("{name},out1"),
                        &mut ports,
                    );
                }
                Element::PhaseShifter { mode, phase } => {
                    let name = format!("{prefix}_m{mode}");
                    instances.insert(
                        name.clone(),
                        json!({"component": "phase_shifter", "settings": {"phase": phase}}),
                    );
                    attach(
                        mode,
                        format!("{name},in0"),
                        format!("{name},out0"),
                        &mut ports,
                    );
                }
                Element::Attenuator { mode, transmission } => {
                    let name = format!("{prefix}_m{mode}");
                    instances.insert(
                        name.clone(),
                        json!({"component": "attenuator", "settings": {"transmission": transmission}}),
                    );
                    attach(
                        mode,
                        format!("{name},in0"),
                        format!("{name},out0"),
                        &mut ports,
                    );
                }
            }
        }
    }
    for (mode, output) in last_output.into_iter().enumerate() {
        if let Some(output) = output {
            ports.insert(format!("out{mode}"), Value::String(output));
        }
    }

    json!({"instances": instances, "connections": connections, "ports": ports})
}

/// Returns the y coordinate (nm) of mode `mode`; mode 0 is at the top.
fn mode_y(layer: &PhotonicLayer, mode: usize) -> i32 {
    (layer.modes - 1 - mode) as i32 * MODE_PITCH_NM
}

fn waveguide(points: &[(i32, i32)]) -> GdsElement {
    GdsElement::GdsPath(GdsPath {
        layer: WAVEGUIDE_LAYER,
        datatype: 0,
        xy: GdsPoint::vec(points),
        width: Some(WAVEGUIDE_WIDTH_NM),
        ..Default::default()
    })
}

fn pad(layer: i16, x0: i32, x1: i32, y: i32) -> GdsElement {
    let half = PAD_WIDTH_NM / 2;
    GdsElement::GdsBoundary(GdsBoundary {
        layer,
        datatype: 0,
        xy: GdsPoint::vec(&[
            (x0, y - half),
            (x1, y - half),
            (x1, y + half),
            (x0, y + half),
            (x0, y - half),
        ]),
        ..Default::default()
    })
}

/// Builds the MZI cell: two arms meeting in two directional couplers, with the φ heater on the
/// upper input arm and the θ heater on the upper arm between the couplers. Bends are drawn as
/// straight segments, so the geometry shows placement and connectivity rather than a
/// foundry-ready device.
fn mzi_cell() -> GdsStruct {
    let length = SLOT_LENGTH_NM;
    let top = MODE_PITCH_NM;
    let middle = MODE_PITCH_NM / 2;
    let half_separation = COUPLER_SEPARATION_NM / 2;
    let at = |fraction_percent: i32| length / 100 * fraction_percent;
    let arm = |outer: i32, inner: i32| {
        waveguide(&[
            (0, outer),
            (at(15), outer),
            (at(25), inner),
            (at(35), inner),
            (at(45), outer),
            (at(55), outer),
            (at(65), inner),
            (at(75), inner),
            (at(85), outer),
            (length, outer),
        ])
    };
    let mut cell = GdsStruct::new(MZI_CELL);
    cell.elems.push(arm(top, middle + half_separation));
    cell.elems.push(arm(0, middle - half_separation));
    cell.elems.push(pad(HEATER_LAYER, at(2), at(12), top));
    cell.elems.push(pad(HEATER_LAYER, at(46), at(54), top));
    cell
}

fn single_mode_cell(name: &str, pad_layer: i16) -> GdsStruct {
    let length = SLOT_LENGTH_NM;
    let mut cell = GdsStruct::new(name);
    cell.elems.push(waveguide(&[(0, 0), (length, 0)]));
    cell.elems
        .push(pad(pad_layer, length / 100 * 40, length / 100 * 60, 0));
    cell
}

fn cell_reference(name: &str, x: i32, y: i32, settings: String) -> GdsElement {
    GdsElement::GdsStructRef(GdsStructRef {
        name: name.to_string(),
        xy: GdsPoint::new(x, y),
        properties: vec![GdsProperty {
            attr: SETTINGS_PROPERTY,
            value: settings,
        }],
        ..Default::default()
    })
}

/// Builds the GDSII library of `layer`: the three element cells and a top cell named after the
/// layer that references one cell per element and draws a straight waveguide for every mode that
/// passes a slot without an element. Each reference carries its settings (`theta=… phi=…`,
/// `phase=…` or `transmission=…`, radians or amplitude factor) as GDSII property 1.
pub fn gds_library(layer: &PhotonicLayer) -> GdsLibrary {
    let mut library = GdsLibrary::new(format!("npdec_{}", layer.name));
    // One database unit is 1 nm; one user unit is 1 µm.
    library.units = GdsUnits::new(1e-3, 1e-9);

    let mut top = GdsStruct::new(layer.name.clone());
    for (slot_index, (_, elements)) in slots(layer).into_iter().enumerate() {
        let x = slot_index as i32 * SLOT_LENGTH_NM;
        let mut covered = vec![false; layer.modes];
        for element in elements {
            match element {
                Element::Mzi { row, theta, phi } => {
                    covered[row] = true;
                    covered[row + 1] = true;
                    top.elems.push(cell_reference(
                        MZI_CELL,
                        x,
                        mode_y(layer, row + 1),
                        format!("theta={theta:e} phi={phi:e}"),
                    ));
                }
                Element::PhaseShifter { mode, phase } => {
                    covered[mode] = true;
                    top.elems.push(cell_reference(
                        PHASE_SHIFTER_CELL,
                        x,
                        mode_y(layer, mode),
                        format!("phase={phase:e}"),
                    ));
                }
                Element::Attenuator { mode, transmission } => {
                    covered[mode] = true;
                    top.elems.push(cell_reference(
                        ATTENUATOR_CELL,
                        x,
                        mode_y(layer, mode),
                        format!("transmission={transmission:e}"),
                    ));
                }
            }
        }
        for (mode, _) in covered.iter().enumerate().filter(|(_, &covered)| !covered) {
            let y = mode_y(layer, mode);
            top.elems
                .push(waveguide(&[(x, y), (x + SLOT_LENGTH_NM, y)]));
        }
    }

    library.structs.push(mzi_cell());
    library
        .structs
        .push(single_mode_cell(PHASE_SHIFTER_CELL, HEATER_LAYER));
    library
        .structs
        .push(single_mode_cell(ATTENUATOR_CELL, ATTENUATOR_LAYER));
    library.structs.push(top);

    // A fixed timestamp (2000-01-01 00:00:00) makes the file depend only on the layer.
    library.set_all_dates(&[100, 1, 1, 0, 0, 0]);
    library
}

fn write_gds(layer: &PhotonicLayer, path: &Path) -> Result<(), HardwareError> {
    let library = gds_library(layer);
    crate::write_atomically(path, |temporary| {
        library.save(temporary).map_err(|error| HardwareError::Gds {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
    })
}

/// Draws the mesh as SVG in µm: waveguides as lines, MZIs as blue boxes spanning their two modes,
/// phase shifters as orange circles and attenuators as grey boxes. Each element has a `<title>`
/// with its settings, shown as a tooltip by browsers.
pub fn svg_drawing(layer: &PhotonicLayer) -> String {
    let slots = slots(layer);
    let pitch = f64::from(MODE_PITCH_NM) / 1000.0;
    let slot = f64::from(SLOT_LENGTH_NM) / 1000.0;
    let width = slots.len() as f64 * slot;
    let height = layer.modes as f64 * pitch;
    let y_of = |mode: usize| (mode as f64 + 0.5) * pitch;

    let mut svg = String::new();
    // `write!` into a String cannot fail, so its results are ignored below.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}">"#
    );
    let _ = writeln!(svg, "<title>{} ({} modes)</title>", layer.name, layer.modes);
    for mode in 0..layer.modes {
        let y = y_of(mode);
        let _ = writeln!(
            svg,
            r##"<line x1="0" y1="{y}" x2="{width}" y2="{y}" stroke="#333" stroke-width="1"/>"##
        );
    }
    for (slot_index, (_, elements)) in slots.iter().enumerate() {
        let x = slot_index as f64 * slot;
        for element in elements {
            match *element {
                Element::Mzi { row, theta, phi } => {
                    let _ = writeln!(
                        svg,
                        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#4a7bd0" stroke="#123"><title>MZI column {slot_index} rows {row},{} theta={theta:.6} phi={phi:.6}</title></rect>"##,
                        x + 0.1 * slot,
                        y_of(row) - 0.1 * pitch,
                        0.8 * slot,
                        1.2 * pitch,
                        row + 1
                    );
                }
                Element::PhaseShifter { mode, phase } => {
                    let _ = writeln!(
                        svg,
                        r##"<circle cx="{}" cy="{}" r="{}" fill="#e89b2c"><title>phase shifter mode {mode} phase={phase:.6}</title></circle>"##,
                        x + 0.5 * slot,
                        y_of(mode),
                        0.25 * pitch
                    );
                }
                Element::Attenuator { mode, transmission } => {
                    let _ = writeln!(
                        svg,
                        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#999"><title>attenuator mode {mode} transmission={transmission:.6}</title></rect>"##,
                        x + 0.3 * slot,
                        y_of(mode) - 0.2 * pitch,
                        0.4 * slot,
                        0.4 * pitch
                    );
                }
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}
