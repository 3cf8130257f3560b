//! Geometry of one fused block: the input, convolution and pooled sizes of a
//! [`FusedConvShape`], and how the pooled output is cut into `Tile`s, the units of parallel
//! work that both passes share (so the backward pass finds each tile's output where the forward
//! pass wrote it).

use super::KERNEL;

/// Below this many input channels the forward and weight-gradient passes use an explicit
/// `[rows, 27·C]` im2col block instead of nine overlapping-row GEMMs of `3·C` columns.
const IM2COL_MAX_CHANNELS: usize = 8;

/// Target size in bytes of one slab's convolution output (two `x` slices), chosen to stay in
/// the 1–2 MiB L2 cache of current x86 cores.
const SLAB_BYTES: usize = 512 * 1024;

/// Geometry of one fused block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FusedConvShape {
    /// Volumes in the batch.
    pub batch: usize,
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels (filters) `F`.
    pub out_channels: usize,
    /// Input size `[X, Y, Z]` in voxels; each must be at least 4 so the pooled output is not
    /// empty.
    pub input: [usize; 3],
}

impl FusedConvShape {
    /// Size `[X − 2, Y − 2, Z − 2]` of the convolution output.
    pub fn conv_output(&self) -> [usize; 3] {
        self.input.map(|n| n - (KERNEL - 1))
    }

    /// Size of the pooled output: the convolution output halved, rounded down.
    pub fn pooled(&self) -> [usize; 3] {
        self.conv_output().map(|n| n / 2)
    }

    /// Voxels per input volume, `X·Y·Z`.
    pub fn input_positions(&self) -> usize {
        self.input.iter().product()
    }

    /// Voxels per pooled output volume.
    pub fn pooled_positions(&self) -> usize {
        self.pooled().iter().product()
    }

    /// Zero positions stored after each volume in a channels-last input buffer: the discarded
    /// rows at the end of the last slab read up to `2·Z + 2` positions past the volume.
    pub fn input_tail(&self) -> usize {
        2 * self.input[2] + 2
    }

    /// Floats per volume in a channels-last input buffer, tail included.
    pub fn input_stride(&self) -> usize {
        (self.input_positions() + self.input_tail()) * self.in_channels
    }

    /// Whether the shape can be computed (every axis ≥ 4, channels ≥ 1).
    pub fn is_valid(&self) -> bool {
        self.batch > 0
            && self.in_channels > 0
            && self.out_channels > 0
            && self.input.iter().all(|&n| n > KERNEL)
    }

    pub(super) fn uses_im2col(&self) -> bool {
        self.in_channels <= IM2COL_MAX_CHANNELS
    }

    /// Pooled `y` rows per slab so that two `x` slices of convolution output fit [`SLAB_BYTES`].
    pub(super) fn slab_pooled_rows(&self) -> usize {
        let per_pooled_row = 2 * 2 * self.input[2] * self.out_channels * 4;
        (SLAB_BYTES / per_pooled_row).clamp(1, self.pooled()[1].max(1))
    }

    /// Offset in positions of the input read for output position 0 by kernel tap `(kx, ky, 0)`.
    pub(super) fn shift(&self, kx: usize, ky: usize) -> usize {
        (kx * self.input[1] + ky) * self.input[2]
    }

    /// The units of work, in output order. Small layers group several whole pooled `x` slabs in
    /// one tile (one GEMM over contiguous rows, so the GEMM's packing is paid once per tile);
    /// large ones split a slab into blocks of pooled `y` rows so the output stays in cache.
    pub(super) fn tiles(&self) -> Vec<Tile> {
        let [px_n, py_n, _] = self.pooled();
        let [_, y_n, z_n] = self.input;
        let slab_bytes = 2 * y_n * z_n * self.out_channels * 4;
        let mut tiles = Vec::new();
        if slab_bytes <= SLAB_BYTES {
            // At least two tiles per volume so both cores have work even at batch 1.
            let group = (SLAB_BYTES / slab_bytes).clamp(1, px_n.div_ceil(2).max(1));
            for n in 0..self.batch {
                for px0 in (0..px_n).step_by(group) {
                    let px1 = (px0 + group).min(px_n);
                    tiles.push(Tile {
                        n,
                        px: px0..px1,
                        py: 0..py_n,
                        whole: true,
                    });
                }
            }
        } else {
            let block = self.slab_pooled_rows();
            for n in 0..self.batch {
                for px in 0..px_n {
                    for py0 in (0..py_n).step_by(block) {
                        let py1 = (py0 + block).min(py_n);
                        tiles.push(Tile {
                            n,
                            px: px..px + 1,
                            py: py0..py1,
                            whole: false,
                        });
                    }
                }
            }
        }
        tiles
    }
}

/// Pooled slabs `px` (and pooled rows `py` of them) of volume `n`. `whole` tiles cover all `y`
/// rows of their slabs, so their convolution rows are one contiguous run of positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Tile {
    pub(super) n: usize,
    pub(super) px: std::ops::Range<usize>,
    pub(super) py: std::ops::Range<usize>,
    pub(super) whole: bool,
}

impl Tile {
    /// Pooled values (times channels) of this tile; tiles are contiguous in the output.
    pub(super) fn len(&self, shape: &FusedConvShape) -> usize {
        self.px.len() * self.py.len() * shape.pooled()[2] * shape.out_channels
    }

    /// Input position of the first convolution row the tile needs.
    pub(super) fn first_position(&self, shape: &FusedConvShape) -> usize {
        let [_, y_n, z_n] = shape.input;
        (2 * self.px.start * y_n + 2 * self.py.start) * z_n
    }

    /// Rows between consecutive `x` slices in a compact buffer of the tile's convolution rows.
    pub(super) fn x_stride(&self, shape: &FusedConvShape) -> usize {
        let [_, y_n, z_n] = shape.input;
        if self.whole {
            y_n * z_n
        } else {
            2 * self.py.len() * z_n
        }
    }

    /// Runs of consecutive positions to compute: `(first position, rows, first buffer row)`
    /// with buffer rows `x_stride` apart per `x` slice.
    pub(super) fn runs(
        &self,
        shape: &FusedConvShape,
        x_stride: usize,
    ) -> Vec<(usize, usize, usize)> {
        let [_, y_n, z_n] = shape.input;
        let first = self.first_position(shape);
        if self.whole {
            vec![(first, 2 * self.px.len() * y_n * z_n, 0)]
        } else {
            let rows = 2 * self.py.len() * z_n;
            vec![(first, rows, 0), (first + y_n * z_n, rows, x_stride)]
        }
    }

    /// Buffer row of conv position (`x`, `y`, `z`) relative to the tile's first `x`, `y`.
    pub(super) fn row(
        &self,
        shape: &FusedConvShape,
        x_stride: usize,
        xi: usize,
        yi: usize,
        z: usize,
    ) -> usize {
        xi * x_stride + yi * shape.input[2] + z
    }
}

/// Splits `data` into consecutive pieces of the given lengths.
pub(super) fn split_lengths<T>(
    mut data: &mut [T],
    lengths: impl Iterator<Item = usize>,
) -> Vec<&mut [T]> {
    let mut pieces = Vec::new();
    for len in lengths {
        let (head, tail) = std::mem::take(&mut data).split_at_mut(len);
        pieces.push(head);
        data = tail;
    }
    pieces
}

/// The pooled output (and its arg-max bytes, when kept) cut into units of parallel work of
/// `unit` values each: every volume (`per_volume` values) separately, its last unit possibly
/// shorter, so that no unit spans two volumes.
pub(super) fn output_units<'a>(
    output: &'a mut [f32],
    argmax: Option<&'a mut [u8]>,
    per_volume: usize,
    unit: usize,
) -> Vec<(&'a mut [f32], Option<&'a mut [u8]>)> {
    let outs = output
        .chunks_mut(per_volume)
        .flat_map(|volume| volume.chunks_mut(unit));
    match argmax {
        Some(argmax) => outs
            .zip(
                argmax
                    .chunks_mut(per_volume)
                    .flat_map(|volume| volume.chunks_mut(unit))
                    .map(Some),
            )
            .collect(),
        None => outs.map(|out| (out, None)).collect(),
    }
}
