//! VTK files of field snapshots for ParaView and VisIt: one XML image data file (`.vti`) per
//! snapshot, written with vtkio, and one collection (`.pvd`) per field that lists them with their
//! times.
//!
//! A field on up to three axes is a uniform grid: the origin is the first grid point, the spacing is
//! the grid spacing of each axis (1 on an index axis), and missing axes have one point. VTK stores
//! points with the first axis varying fastest. A field with channels becomes one array with that many
//! components, and a complex field three arrays: `<field>_re`, `<field>_im` and `<field>_abs`.

use crate::value::{Real, Value};
use ndarray::ArrayD;
use npdec_symbolic::{Field, Model};
use std::fmt::Write as _;
use vtkio::model::{
    Attribute, Attributes, ByteOrder, DataSet, ElementType, Extent, IOBuffer, ImageDataPiece,
    Piece, Version, Vtk,
};

/// The most axes a VTK image data set has.
pub const MAX_AXES: usize = 3;

/// Builds the image data of one state of `field`, whose value has the shape `[channels, n₁, …]`.
pub fn image_data<T: Real>(model: &Model, field: &Field, value: &Value<T>) -> Result<Vtk, String> {
    if field.axes.len() > MAX_AXES {
        return Err(format!(
            "VTK image data has at most {MAX_AXES} axes, and `{}` has {}",
            field.name,
            field.axes.len()
        ));
    }
    let shape = value.shape();
    if shape.len() != field.axes.len() + 1 {
        return Err(format!(
            "the state of `{}` has shape {shape:?}, not [channels, points of each axis]",
            field.name
        ));
    }

    let mut origin = [0.0_f32; 3];
    let mut spacing = [1.0_f32; 3];
    let mut last_index = [0_i32; 3];
    for (k, axis) in field.axes.iter().enumerate() {
        let axis = &model.axes[axis.0];
        origin[k] = axis.coordinate(0) as f32;
        spacing[k] = axis.spacing() as f32;
        last_index[k] = i32::try_from(shape[k + 1].saturating_sub(1))
            .map_err(|_| format!("axis `{}` has too many points for VTK", axis.name))?;
    }
    let extent = Extent::Ranges([0..=last_index[0], 0..=last_index[1], 0..=last_index[2]]);

    let channels = shape[0];
    let arrays = match value {
        Value::Real(a) => vec![array_attribute::<T>(
            &field.name,
            channels,
            &a.mapv(|x| x.to_f64_lossy()),
        )],
        Value::Complex(a) => vec![
            array_attribute::<T>(
                &format!("{}_re", field.name),
                channels,
                &a.mapv(|z| z.re.to_f64_lossy()),
            ),
            array_attribute::<T>(
                &format!("{}_im", field.name),
                channels,
                &a.mapv(|z| z.im.to_f64_lossy()),
            ),
            array_attribute::<T>(
                &format!("{}_abs", field.name),
                channels,
                &a.mapv(|z| z.norm().to_f64_lossy()),
            ),
        ],
    };

    Ok(Vtk {
        version: Version::new_xml(1, 0),
        byte_order: ByteOrder::LittleEndian,
        title: String::new(),
        file_path: None,
        data: DataSet::ImageData {
            extent: extent.clone(),
            origin,
            spacing,
            meta: None,
            pieces: vec![Piece::Inline(Box::new(ImageDataPiece {
                extent,
                data: Attributes {
                    point: arrays,
                    cell: Vec::new(),
                },
            }))],
        },
    })
}

/// One point-data array in VTK order: points with the first axis fastest, components interleaved.
/// The values keep the precision of the run (`Float32` or `Float64`).
fn array_attribute<T: Real>(name: &str, channels: usize, values: &ArrayD<f64>) -> Attribute {
    // Axes reversed, the channel axis last: the C-order walk of this view is VTK's order.
    let reordered = values.view().reversed_axes();
    let data: IOBuffer = if T::NAME == "f32" {
        reordered
            .iter()
            .map(|&x| x as f32)
            .collect::<Vec<f32>>()
            .into()
    } else {
        reordered.iter().copied().collect::<Vec<f64>>().into()
    };
    let element = if channels == 1 {
        ElementType::Scalars {
            num_comp: 1,
            lookup_table: None,
        }
    } else {
        ElementType::Generic(channels as u32)
    };
    Attribute::DataArray(vtkio::model::DataArray {
        name: name.to_string(),
        elem: element,
        data,
    })
}

/// Returns a ParaView collection (`.pvd`) that lists `(time, file)` pairs, the files relative to
/// the collection.
pub fn collection_xml(entries: &[(f64, String)]) -> String {
    let mut text = String::from(
        "<?xml version=\"1.0\"?>\n\
         <VTKFile type=\"Collection\" version=\"0.1\" byte_order=\"LittleEndian\">\n  <Collection>\n",
    );
    for (time, file) in entries {
        let _ = writeln!(
            text,
            "    <DataSet timestep=\"{time}\" group=\"\" part=\"0\" file=\"{}\"/>",
            escape_attribute(file)
        );
    }
    text.push_str("  </Collection>\n</VTKFile>\n");
    text
}

fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
