#!/usr/bin/env python3
"""Golden file pinning the orientation of ct3d's montage to the Keras example's `plot_slices`.

Regenerate (from the repository root) with numpy 2.x:

    python3 tools/golden/gen_montage_golden.py

Writes `crates/ct3d-plot/tests/data/montage_golden.json`: an asymmetric integer volume (every
voxel's value encodes its own x, y, z, so any flip or transpose shows) and the arrays the seed's
`plot_slices` hands to `imshow`, tile by tile. The seed's function body is copied below up to the
point where it draws; the volume gets the trailing channel axis the seed's `image` has.
"""

import json
import os

import numpy as np

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "crates", "ct3d-plot", "tests", "data", "montage_golden.json",
)


def seed_plot_slices_tiles(num_rows, num_columns, width, height, data):
    """The seed's plot_slices, returning what each axarr[i, j].imshow receives."""
    data = np.rot90(np.array(data))
    data = np.transpose(data)
    data = np.reshape(data, (num_rows, num_columns, width, height))
    return [[data[i][j] for j in range(num_columns)] for i in range(num_rows)]


def main():
    nx, ny, nz = 6, 5, 9  # width != height: a swapped pair of axes cannot pass
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    image = (100 * x + 10 * y + z).astype(np.int64)[..., None]  # [x, y, z, 1] like the seed's
    rows, cols, first = 2, 3, 2
    tiles = seed_plot_slices_tiles(rows, cols, nx, ny, image[:, :, first : first + rows * cols])
    case = {
        "shape": [nx, ny, nz],
        # x fastest, the layout of ct3d's Volume.
        "volume": image[..., 0].flatten(order="F").tolist(),
        "rows": rows,
        "cols": cols,
        "first": first,
        # reading order; each tile row-major (what imshow draws, top row first)
        "tiles": [tile.flatten(order="C").tolist() for row in tiles for tile in row],
        "tile_shape": list(tiles[0][0].shape),
        "single_slice": {"z": 3, "pixels": image[:, :, 3, 0].flatten(order="C").tolist()},
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(case, f)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
