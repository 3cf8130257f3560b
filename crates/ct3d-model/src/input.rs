//! From [`Volume`]s to the model's input tensor.
//!
//! A `Volume` stores `[x, y, z]` with `x` varying fastest (NIfTI order); the model's input
//! `[batch, 1, x, y, z]` is row-major, `z` fastest. [`copy_in_input_order`] does that transpose
//! for one volume into a caller-owned slice (data-loading threads can fill a batch buffer ahead
//! of the model), and [`batch_tensor`] uploads a filled buffer.

use burn::tensor::{Device, Tensor, TensorData};
use ct3d_volume::Volume;

use crate::seed_cnn::ModelError;

/// Writes `volume` into `out` (`x·y·z` values) in the input's `[x][y][z]` order, `z` fastest.
///
/// `expected` is the model's input size; a volume of another shape is an error.
pub fn copy_in_input_order(
    volume: &Volume,
    expected: [usize; 3],
    out: &mut [f32],
) -> Result<(), ModelError> {
    let [nx, ny, nz] = volume.shape();
    if [nx, ny, nz] != expected || out.len() != nx * ny * nz {
        return Err(ModelError::BatchShape {
            expected,
            actual: [1, 1, nx, ny, nz],
        });
    }
    let data = volume.data();
    for (x, plane) in out.chunks_exact_mut(ny * nz).enumerate() {
        for (y, row) in plane.chunks_exact_mut(nz).enumerate() {
            for (z, value) in row.iter_mut().enumerate() {
                *value = data[x + nx * (y + ny * z)];
            }
        }
    }
    Ok(())
}

/// Uploads `data` (`batch` volumes of `size` voxels, each in input order) as
/// `[batch, 1, x, y, z]`.
pub fn batch_tensor(
    data: Vec<f32>,
    batch: usize,
    size: [usize; 3],
    device: &Device,
) -> Result<Tensor<5>, ModelError> {
    let shape = [batch, 1, size[0], size[1], size[2]];
    let expected = shape.iter().product::<usize>();
    if batch == 0 || data.len() != expected {
        return Err(ModelError::BufferLength {
            expected,
            actual: data.len(),
        });
    }
    Ok(Tensor::from_data(TensorData::new(data, shape), device))
}

/// [`copy_in_input_order`] for each volume, then [`batch_tensor`].
pub fn batch_from_volumes(
    volumes: &[&Volume],
    size: [usize; 3],
    device: &Device,
) -> Result<Tensor<5>, ModelError> {
    let voxels = size.iter().product::<usize>();
    let mut data = vec![0.0; voxels * volumes.len()];
    for (volume, out) in volumes.iter().zip(data.chunks_exact_mut(voxels.max(1))) {
        copy_in_input_order(volume, size, out)?;
    }
    batch_tensor(data, volumes.len(), size, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_x_fastest_to_z_fastest() {
        let volume = Volume::from_fn([2, 3, 4], |x, y, z| (100 * x + 10 * y + z) as f32);
        let mut out = vec![0.0; 24];
        copy_in_input_order(&volume, [2, 3, 4], &mut out).unwrap();
        let mut i = 0;
        for x in 0..2 {
            for y in 0..3 {
                for z in 0..4 {
                    assert_eq!(out[i], (100 * x + 10 * y + z) as f32);
                    i += 1;
                }
            }
        }
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let volume = Volume::filled([2, 3, 4], 0.0);
        let mut out = vec![0.0; 24];
        let err = copy_in_input_order(&volume, [4, 3, 2], &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input batch has shape [1, 1, 2, 3, 4] but the model expects [batch, 1, 4, 3, 2]"
        );
        assert!(batch_tensor(vec![0.0; 23], 1, [2, 3, 4], &Device::flex()).is_err());
        let tensor = batch_from_volumes(&[&volume, &volume], [2, 3, 4], &Device::flex()).unwrap();
        assert_eq!(tensor.dims(), [2, 1, 2, 3, 4]);
    }
}
