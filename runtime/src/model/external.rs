//! ONNX external data read straight into tensors.
//!
//! tract-onnx reads each external tensor into a byte buffer and copies it into an aligned
//! tensor: for a decoder of gigabytes that is every weight written to fresh memory twice.
//! Here the graph is parsed with its external initializers turned into graph inputs, and
//! each of those inputs then becomes a constant whose tensor the file is read into
//! directly, with one positioned read.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use tract_onnx::pb::tensor_proto::DataLocation;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::{
    ModelProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::konst::Const;

use super::parallel::on_a_few_threads;

/// An initializer stored as external data: its type, and where its bytes are (a file next
/// to the graph, a range of it).
pub(crate) struct External {
    name: String,
    datum_type: DatumType,
    shape: Vec<usize>,
    file: String,
    offset: u64,
    length: Option<u64>,
}

/// Takes the initializers stored as external data out of `proto`'s graph and declares
/// them as graph inputs of their type and shape instead.
pub(crate) fn detach(proto: &mut ModelProto) -> TractResult<Vec<External>> {
    let graph = proto.graph.as_mut().context("the model has no graph")?;
    let (external, inline): (Vec<TensorProto>, Vec<TensorProto>) =
        std::mem::take(&mut graph.initializer)
            .into_iter()
            .partition(|t| t.data_location == Some(DataLocation::External as i32));
    graph.initializer = inline;
    let mut detached = Vec::with_capacity(external.len());
    for t in external {
        detached.push(External::of(&t)?);
        // an initializer may already be listed among the inputs (as a default value)
        if graph.input.iter().any(|i| i.name == t.name) {
            continue;
        }
        graph.input.push(ValueInfoProto {
            name: t.name.clone(),
            r#type: Some(TypeProto {
                denotation: String::new(),
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: t.data_type,
                    shape: Some(TensorShapeProto {
                        dim: t
                            .dims
                            .iter()
                            .map(|&d| Dimension {
                                denotation: String::new(),
                                value: Some(dimension::Value::DimValue(d)),
                            })
                            .collect(),
                    }),
                })),
            }),
            doc_string: String::new(),
        });
    }
    Ok(detached)
}

impl External {
    fn of(t: &TensorProto) -> TractResult<External> {
        let what = |key: &str| t.external_data.iter().find(|e| e.key == key);
        let number = |key: &str| -> TractResult<Option<u64>> {
            what(key)
                .map(|e| {
                    e.value
                        .parse::<u64>()
                        .with_context(|| format!("{}: external data {key} {:?}", t.name, e.value))
                })
                .transpose()
        };
        let data_type = tract_onnx::pb::tensor_proto::DataType::try_from(t.data_type)
            .map_err(|_| format_err!("{}: unknown ONNX data type {}", t.name, t.data_type))?;
        let datum_type = DatumType::try_from(data_type)?;
        ensure!(
            datum_type.is_number(),
            "{}: external data of type {datum_type:?} is not supported",
            t.name
        );
        let shape = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format_err!("{}: dimension {d}", t.name)))
            .collect::<TractResult<Vec<usize>>>()?;
        Ok(External {
            name: t.name.clone(),
            datum_type,
            shape,
            file: what("location")
                .with_context(|| format!("{}: external data without a location", t.name))?
                .value
                .clone(),
            offset: number("offset")?.unwrap_or(0),
            length: number("length")?,
        })
    }
}

/// Turns the graph inputs `detach` declared into constants read from their files in
/// `dir`, a few tensors at a time (the first touch of fresh memory, not the disk, is
/// what a read of weights in the page cache waits on).
pub(crate) fn attach(
    model: &mut InferenceModel,
    dir: &Path,
    tensors: Vec<External>,
) -> TractResult<()> {
    let mut files: Vec<(String, File, u64)> = Vec::new();
    for t in &tensors {
        if !files.iter().any(|(name, ..)| *name == t.file) {
            let path = inside(dir, &t.file)?;
            let file =
                File::open(&path).with_context(|| format!("{}: cannot open", path.display()))?;
            let size = file.metadata()?.len();
            files.push((t.file.clone(), file, size));
        }
    }
    let read_one = |t: External| {
        let (_, file, size) = files
            .iter()
            .find(|(name, ..)| *name == t.file)
            .expect("every file was opened");
        let tensor = read(&t, file, *size, &dir.join(&t.file))?;
        Ok((t.name, tensor))
    };
    on_a_few_threads(tensors, read_one, |(name, tensor)| {
        install(model, &name, tensor.into_arc_tensor())
    })
}

/// Makes the graph input `name` the constant `tensor`.
fn install(model: &mut InferenceModel, name: &str, tensor: Arc<Tensor>) -> TractResult<()> {
    let id = model.node_by_name(name)?.id;
    let fact = TypedFact::try_from(tensor.clone())?;
    let node = &mut model.nodes[id];
    node.op = Const::new(tensor)?.into();
    node.outputs[0].fact = fact.into();
    model.inputs.retain(|o| o.node != id);
    Ok(())
}

/// Reads the tensor `t` from `file` (`size` bytes, at `path`) into fresh aligned memory.
fn read(t: &External, file: &File, size: u64, path: &Path) -> TractResult<Tensor> {
    let mut tensor = Tensor::zero_dt(t.datum_type, &t.shape)?;
    let bytes = tensor.as_bytes_mut();
    let length = t.length.unwrap_or(bytes.len() as u64);
    ensure!(
        length == bytes.len() as u64,
        "{}: tensor {} of shape {:?} needs {} bytes, the graph says {length}",
        path.display(),
        t.name,
        t.shape,
        bytes.len()
    );
    ensure!(
        t.offset.checked_add(length).is_some_and(|end| end <= size),
        "{}: external data {}..{} is past its end ({size} bytes): truncated",
        path.display(),
        t.offset,
        t.offset.saturating_add(length)
    );
    file.read_exact_at(bytes, t.offset)
        .with_context(|| format!("{}: reading {}", path.display(), t.name))?;
    Ok(tensor)
}

/// `location` as a path inside `dir`: relative, without `..`, not leading out through a
/// link.
fn inside(dir: &Path, location: &str) -> TractResult<PathBuf> {
    let relative = Path::new(location);
    ensure!(
        relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
        "external data location {location:?} is not a path inside the graph's folder"
    );
    let path = dir.join(relative);
    let real = path
        .canonicalize()
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let real_dir = dir.canonicalize()?;
    ensure!(
        real.starts_with(&real_dir),
        "external data location {location:?} leads outside the graph's folder"
    );
    Ok(real)
}
