#!/usr/bin/env python3
"""Golden fixtures for ct3d-volume's NIfTI reader (crates/ct3d-volume/tests/nifti_io.rs).

Writes small NIfTI-1 files with nibabel 5.4 (its header writer, or ``nib.save``) into
``crates/ct3d-volume/tests/data/nifti/``, and for each the voxels nibabel's ``get_fdata()``
returns (as float32, Fortran order, ``<case>.npy``) plus the geometry nibabel reports, all listed in
``expected.json``. When ``../shared/realdata`` exists (next to the checkout), also records shape,
statistics, geometry and a SHA-256 of the float32 ``get_fdata()`` bytes of the real files the
tests read (``realdata_expected.json``) -- only numbers, never the files.

    python3 tools/golden/gen_nifti_fixtures.py            # regenerate the fixtures
    python3 tools/golden/gen_nifti_fixtures.py --bench /tmp/ct_512x512x50.nii.gz [--bench-level 6]
        # only write the 512x512x50 int16 benchmark scan (never committed)
"""

import argparse
import gzip
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ct3d-volume/tests/data/nifti"
REALDATA = ROOT.parent / "shared/realdata"
SHAPE = (7, 5, 3)

# A 4x4 scanner-style affine: 0.75 x 0.8 x 2.5 mm, LPS-ish flips, an offset (all float32-exact).
SCANNER_AFFINE = np.array(
    [[-0.75, 0.0, 0.0, 90.5], [0.0, -0.8, 0.0, 120.25], [0.0, 0.0, 2.5, -300.0], [0, 0, 0, 1]]
)


def ramp(dtype, lo, hi):
    """SHAPE voxels of `dtype` spread evenly from lo to hi (both included), x fastest."""
    n = int(np.prod(SHAPE))
    if np.dtype(dtype).kind in "iu":
        # Exact integer arithmetic: float64 cannot hold 2**63 - 1 and friends.
        values = [lo + (hi - lo) * k // (n - 1) for k in range(n)]
        arr = np.array(values, dtype=dtype)
    else:
        arr = np.linspace(lo, hi, n, dtype=np.float64).astype(dtype)
    return arr.reshape(SHAPE, order="F")


def header(dtype, shape=SHAPE, endianness="<", pair=False):
    klass = nib.nifti1.Nifti1PairHeader if pair else nib.Nifti1Header
    hdr = klass(endianness=endianness)
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr["pixdim"][1:4] = [0.75, 0.8, 2.5]
    hdr["xyzt_units"] = 2
    return hdr


def write_single(path, hdr, arr, compress=False):
    """Header via nibabel's writer, then the raw voxels at vox_offset (352 + extensions)."""
    buf = io.BytesIO()
    hdr["vox_offset"] = 0  # nibabel sets the minimum (352 + extensions) when writing
    hdr.write_to(buf)
    assert buf.tell() == int(hdr["vox_offset"])
    buf.write(np.asarray(arr, dtype=hdr.get_data_dtype()).tobytes(order="F"))
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0) if compress else data)


def write_pair(hdr_path, img_path, hdr, arr, compress=False):
    buf = io.BytesIO()
    hdr.write_to(buf)
    img = np.asarray(arr, dtype=hdr.get_data_dtype()).tobytes(order="F")
    pack = (lambda b: gzip.compress(b, mtime=0)) if compress else (lambda b: b)
    hdr_path.write_bytes(pack(buf.getvalue()))
    img_path.write_bytes(pack(img))


def expected_from(img):
    """What the Rust reader must return, from a nibabel image."""
    data = np.asarray(img.get_fdata(), dtype=np.float64)
    data = data.reshape(data.shape[:3]) if data.ndim > 3 else data
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes +-inf, as in ct3d
        data32 = np.asfortranarray(data.astype(np.float32))
    return {
        "data": data32,
        "shape": list(data.shape),
        "affine": img.affine.tolist(),
        "spacing": [float(z) for z in img.header.get_zooms()[:3]],
        "datatype": str(img.get_data_dtype().newbyteorder("=")),
        "axcodes": "".join(c or "?" for c in nib.aff2axcodes(img.affine)),
    }


def load(path, as_name=None):
    """nib.load, optionally through a copy renamed to `as_name` (for files nibabel would misname)."""
    if as_name is None:
        return nib.load(str(path))
    tmp = Path(tempfile.mkdtemp()) / as_name
    shutil.copy(path, tmp)
    img = nib.load(str(tmp))
    img = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)  # detach from tmp
    return img


def build_cases():
    """(name, file, note, writer) for every committed fixture. `writer(path)` creates the file(s)
    and returns the nibabel image to take expectations from."""
    cases = []

    def case(name, filename, note):
        def register(fn):
            cases.append((name, filename, note, fn))
            return fn

        return register

    # --- every datatype, little-endian, sform (scanner) ---
    ranges = {
        "uint8": (0, 255),
        "int8": (-128, 127),
        "int16": (-32768, 32767),
        "uint16": (0, 65535),
        "int32": (-(2**31), 2**31 - 1),
        "uint32": (0, 2**32 - 1),
        "int64": (-(2**63), 2**63 - 1),
        "uint64": (0, 2**64 - 1),
        "float32": (-3.0e38, 3.0e38),
        "float64": (-1.0e300, 1.0e300),
    }
    for dtype, (lo, hi) in ranges.items():

        @case(f"dtype_{dtype}", f"dtype_{dtype}.nii", f"{dtype} covering its range, sform code 1")
        def _(path, dtype=dtype, lo=lo, hi=hi):
            hdr = header(dtype)
            hdr.set_sform(SCANNER_AFFINE, code="scanner")
            arr = ramp(dtype, lo, hi)
            if dtype == "float32":
                arr.flat[[1, 2, 3, 4, 5]] = [np.nan, np.inf, -np.inf, -0.0, 1e-45]
            if dtype == "float64":
                arr.flat[[1, 2, 3, 4, 5]] = [np.nan, 0.1, -1e-50, 3.4e38, 2.0**-149]
            write_single(path, hdr, arr)
            return nib.load(str(path))

    # --- scaling ---
    @case("u8_slope_2_5", "u8_slope_2_5.nii", "uint8 with scl_slope 2.5, scl_inter 0")
    def _(path):
        hdr = header("uint8")
        hdr.set_slope_inter(2.5, 0.0)
        write_single(path, hdr, ramp("uint8", 0, 255))
        return nib.load(str(path))

    @case("i16_inter_m1024", "i16_inter_m1024.nii", "int16 with scl_slope 1, scl_inter -1024 (CT)")
    def _(path):
        hdr = header("int16")
        hdr.set_slope_inter(1.0, -1024.0)
        write_single(path, hdr, ramp("int16", 0, 4095))
        return nib.load(str(path))

    @case("i16_slope_0", "i16_slope_0.nii", "scl_slope 0 means no scaling; scl_inter 7 ignored")
    def _(path):
        hdr = header("int16")
        hdr["scl_slope"], hdr["scl_inter"] = 0.0, 7.0
        write_single(path, hdr, ramp("int16", -2000, 2000))
        return nib.load(str(path))

    @case("i16_slope_nan", "i16_slope_nan.nii", "scl_slope NaN means no scaling")
    def _(path):
        hdr = header("int16")
        hdr["scl_slope"], hdr["scl_inter"] = np.nan, 5.0
        write_single(path, hdr, ramp("int16", -2000, 2000))
        return nib.load(str(path))

    @case("i32_slope_inter", "i32_slope_inter.nii", "int32, slope 0.1, inter -3.3: float64 arithmetic")
    def _(path):
        hdr = header("int32")
        hdr["scl_slope"], hdr["scl_inter"] = 0.1, -3.3
        write_single(path, hdr, ramp("int32", -(2**31), 2**31 - 1))
        return nib.load(str(path))

    @case("f32_slope_inter", "f32_slope_inter.nii", "float32 data scaled by 3, +0.5; NaN stays NaN")
    def _(path):
        hdr = header("float32")
        hdr["scl_slope"], hdr["scl_inter"] = 3.0, 0.5
        arr = ramp("float32", -1000.0, 1000.0)
        arr.flat[7] = np.nan
        write_single(path, hdr, arr)
        return nib.load(str(path))

    @case("f32_slope_only", "f32_slope_only.nii", "float32 * 2 with inter 0: nibabel skips the add, -0.0 stays")
    def _(path):
        hdr = header("float32")
        hdr["scl_slope"], hdr["scl_inter"] = 2.0, 0.0
        arr = ramp("float32", -1.0, 1.0)
        arr.flat[3] = -0.0
        write_single(path, hdr, arr)
        return nib.load(str(path))

    # --- byte order ---
    @case("big_endian_i16", "big_endian_i16.nii", "big-endian int16 with scl_inter -1024")
    def _(path):
        hdr = header(">i2", endianness=">")
        hdr.set_slope_inter(1.0, -1024.0)
        hdr.set_sform(SCANNER_AFFINE, code="scanner")
        write_single(path, hdr, ramp("int16", -32768, 32767))
        return nib.load(str(path))

    @case("big_endian_f64", "big_endian_f64.nii", "big-endian float64, slope 2, inter -1")
    def _(path):
        hdr = header(">f8", endianness=">")
        hdr["scl_slope"], hdr["scl_inter"] = 2.0, -1.0
        write_single(path, hdr, ramp("float64", -5000.123, 5000.456))
        return nib.load(str(path))

    # --- files ---
    @case("pair", "pair.hdr", ".hdr/.img pair, int16, qform code 1")
    def _(path):
        hdr = header("int16", pair=True)
        hdr.set_qform(SCANNER_AFFINE, code="scanner")
        write_pair(path, path.with_suffix(".img"), hdr, ramp("int16", -1024, 3071))
        return nib.load(str(path))

    @case("pair_gz", "pair_gz.hdr.gz", "gzipped .hdr.gz/.img.gz pair, big-endian uint16")
    def _(path):
        hdr = header(">u2", endianness=">", pair=True)
        hdr.set_sform(SCANNER_AFFINE, code="aligned")
        img_path = path.with_name("pair_gz.img.gz")
        write_pair(path, img_path, hdr, ramp("uint16", 0, 65535), compress=True)
        return nib.load(str(path))

    @case("gz", "gz.nii.gz", "nib.save of Nifti1Image(int16, affine): sform 2, qform 0, gzip level 1")
    def _(path):
        img = nib.Nifti1Image(ramp("int16", -1024, 3071), SCANNER_AFFINE)
        nib.save(img, str(path))
        return nib.load(str(path))

    @case("gz_multimember", "gz_multimember.nii.gz", "gzip file made of two concatenated members")
    def _(path):
        hdr = header("int16")
        hdr.set_sform(SCANNER_AFFINE, code="scanner")
        plain = path.with_name("_tmp_multi.nii")
        write_single(plain, hdr, ramp("int16", -500, 500))
        raw = plain.read_bytes()
        plain.unlink()
        half = len(raw) // 2 + 3
        path.write_bytes(gzip.compress(raw[:half], mtime=0) + gzip.compress(raw[half:], mtime=0))
        return nib.load(str(path))

    @case("gz_named_nii", "gz_named_nii.nii", "gzip content under a .nii name (magic, not name)")
    def _(path):
        hdr = header("int16")
        write_single(path, hdr, ramp("int16", -100, 100), compress=True)
        return load(path, "renamed.nii.gz")

    @case("extension", "extension.nii", "a NIfTI extension before the voxels (vox_offset > 352)")
    def _(path):
        hdr = header("int16")
        hdr.extensions.append(nib.nifti1.Nifti1Extension("comment", b"ct3d fixture extension"))
        write_single(path, hdr, ramp("int16", -100, 100))
        return nib.load(str(path))

    # --- geometry ---
    @case("qform_qfac_neg", "qform_qfac_neg.nii", "qform only (code 1), rotated, qfac -1")
    def _(path):
        hdr = header("int16")
        # An oblique rotation: quaternion (b, c, d) with w implied.
        hdr["qform_code"], hdr["sform_code"] = 1, 0
        hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = 0.1, -0.2, 0.3
        hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = -10.5, 20.25, 30.0
        hdr["pixdim"][0] = -1
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("qform_qfac_0", "qform_qfac_0.nii", "qform only with pixdim[0] 0: nibabel takes qfac 1")
    def _(path):
        hdr = header("int16")
        hdr["qform_code"], hdr["sform_code"] = 2, 0
        hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = 0.0, 0.0, 1.0
        hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = 1.0, 2.0, 3.0
        hdr["pixdim"][0] = 0
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("sform_and_qform", "sform_and_qform.nii", "sform (scanner) and a different qform: sform wins")
    def _(path):
        hdr = header("int16")
        hdr.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code="scanner")
        hdr.set_sform(SCANNER_AFFINE, code="scanner")
        hdr["pixdim"][1:4] = [0.75, 0.8, 2.5]
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("no_xform", "no_xform.nii", "sform and qform codes 0: nibabel's base affine")
    def _(path):
        hdr = header("int16")
        hdr["qform_code"], hdr["sform_code"] = 0, 0
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("no_xform_bad_pixdim", "no_xform_bad_pixdim.nii", "pixdim -0.75, 0, 2.5: nibabel uses abs, 0 -> 1")
    def _(path):
        hdr = header("int16")
        hdr["qform_code"], hdr["sform_code"] = 0, 0
        hdr["pixdim"][1:4] = [-0.75, 0.0, 2.5]
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("bad_sform_code", "bad_sform_code.nii", "sform_code 7 (invalid, treated as 0), qform code 1")
    def _(path):
        hdr = header("int16")
        hdr.set_sform(SCANNER_AFFINE, code="scanner")
        hdr.set_qform(np.diag([-1.5, 1.5, 3.0, 1.0]), code="scanner")
        hdr["pixdim"][1:4] = [1.5, 1.5, 3.0]
        hdr["sform_code"] = 7
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    # --- shapes ---
    @case("dim4_1", "dim4_1.nii", "4-D header with dim[4] == 1: read as 3-D")
    def _(path):
        hdr = header("int16", shape=SHAPE + (1,))
        hdr.set_sform(SCANNER_AFFINE, code="scanner")
        write_single(path, hdr, ramp("int16", 0, 1000).reshape(SHAPE + (1,), order="F"))
        return nib.load(str(path))

    @case("dim5_1_1", "dim5_1_1.nii", "5-D header with dim[4] == dim[5] == 1: read as 3-D")
    def _(path):
        hdr = header("uint8", shape=SHAPE + (1, 1))
        write_single(path, hdr, ramp("uint8", 0, 255).reshape(SHAPE + (1, 1), order="F"))
        return nib.load(str(path))

    @case("one_slice", "one_slice.nii", "3-D header with a single slice: shape [7, 5, 1]")
    def _(path):
        hdr = header("int16", shape=(7, 5, 1))
        write_single(path, hdr, np.arange(35, dtype=np.int16).reshape((7, 5, 1), order="F"))
        return nib.load(str(path))

    return cases


def orientation_cases():
    """Affines and nibabel's aff2axcodes for them ('?' where nibabel says None)."""
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    affines = {
        "identity": np.eye(4),
        "x_flipped": np.diag([-1.0, 1, 1, 1]),
        "lps_scanner": SCANNER_AFFINE,
        "permuted": np.array([[0, 0, 2.0, 0], [-1.5, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]]),
        "oblique_30deg_z": np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
        "oblique_60deg_x": np.array([[1, 0, 0, 0], [0, s, -c, 0], [0, c, s, 0], [0, 0, 0, 1]]) @ np.diag([0.5, 0.7, 3, 1]),
        "sheared": np.array([[0.9, 0.3, 0, 1], [0.1, -1.1, 0.2, 2], [0, 0.4, 2.5, 3], [0, 0, 0, 1]]),
        "zero_column": np.array([[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]]),
    }
    return [
        {"name": k, "affine": a.tolist(), "axcodes": "".join(x or "?" for x in nib.aff2axcodes(a))}
        for k, a in affines.items()
    ]


def write_fixtures():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    manifest = []
    for name, filename, note, writer in build_cases():
        img = writer(OUT / filename)
        exp = expected_from(img)
        np.save(OUT / f"{name}.npy", exp.pop("data"))
        manifest.append({"name": name, "file": filename, "note": note, **exp})
    with open(OUT / "expected.json", "w") as f:
        json.dump({"generator": "tools/golden/gen_nifti_fixtures.py", "nibabel": nib.__version__,
                   "cases": manifest, "orientation": orientation_cases()}, f, indent=1)
        f.write("\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(manifest)} fixtures, {total} bytes in {OUT}")
    realdata_numbers()


REAL_FILES = [
    "totalsegmentator_ct/example_ct.nii.gz",
    "totalsegmentator_ct/dcm2niix_converted/ts_example_ct_dicom_dcm2niix.nii.gz",
    "nifti_corpus/niivue/ras.hdr",
    "nifti_corpus/niivue/minimal.nii.gz",
    "nifti_corpus/niivue/avg152T1_RL_nifti.nii.gz",
    "nifti_corpus/niivue/hippo.nii.gz",
    "nifti_corpus/niivue/shear.nii.gz",
    "nifti_corpus/niivue/low_res.nii.gz",
    "nifti_corpus/niivue/nifti_space/RAS.nii.gz",
    "nifti_corpus/niivue/nifti_space/LPI.nii.gz",
]


def realdata_numbers():
    if not REALDATA.is_dir():
        print(f"{REALDATA} absent: realdata_expected.json left as it is")
        return
    out = {}
    for rel in REAL_FILES:
        img = nib.load(str(REALDATA / rel))
        data = np.asarray(img.get_fdata(), dtype=np.float64)
        with np.errstate(over="ignore"):
            f32 = np.asfortranarray(data.astype(np.float32))
        finite = f32[np.isfinite(f32)].astype(np.float64)
        out[rel] = {
            "shape": list(data.shape),
            "datatype": str(img.get_data_dtype().newbyteorder("=")),
            "min": float(finite.min()),
            "max": float(finite.max()),
            # Mean of the float32 values, as ct3d's Volume::stats computes it.
            "mean": float(finite.mean()),
            "sha256_f32": hashlib.sha256(f32.tobytes(order="F")).hexdigest(),
            "affine": img.affine.tolist(),
            "spacing": [float(z) for z in img.header.get_zooms()[:3]],
            "axcodes": "".join(nib.aff2axcodes(img.affine)),
        }
    with open(OUT / "realdata_expected.json", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"real-data numbers for {len(out)} files")


def write_bench(path, level):
    """A realistic 512x512x50 int16 CT .nii.gz with scl_inter -1024, built from the real dcm2niix
    series when present (its 20 slices mirrored to 50), else from a noisy phantom."""
    src = REALDATA / "totalsegmentator_ct/dcm2niix_converted/ts_example_ct_dicom_dcm2niix.nii.gz"
    if src.exists():
        img = nib.load(str(src))
        raw = np.asarray(img.dataobj.get_unscaled()).astype(np.int16)
        order = list(range(20)) + list(range(19, -1, -1)) + list(range(10))
        vol = raw[:, :, order]
    else:
        rng = np.random.default_rng(0)
        x, y = np.meshgrid(np.arange(512) - 256, np.arange(512) - 256, indexing="ij")
        body = (x / 200.0) ** 2 + (y / 150.0) ** 2 < 1
        lung = ((np.abs(x) - 90) / 60.0) ** 2 + (y / 90.0) ** 2 < 1
        sl = np.where(body, 1064, 24) - np.where(lung, 900, 0)
        vol = np.stack([sl + rng.normal(0, 20, sl.shape) for _ in range(50)], axis=2)
        vol = np.clip(vol, 0, 4095).astype(np.int16)
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(vol.shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_sform(np.diag([-0.9765625, 0.9765625, 2.0, 1.0]), code="scanner")
    hdr.set_slope_inter(1.0, -1024.0)
    buf = io.BytesIO()
    hdr.write_to(buf)
    buf.write(vol.tobytes(order="F"))
    Path(path).write_bytes(gzip.compress(buf.getvalue(), compresslevel=level, mtime=0))
    print(f"wrote {path} ({Path(path).stat().st_size} bytes, shape {vol.shape}, gzip level {level})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", metavar="PATH", help="write the 512x512x50 benchmark scan here (only)")
    parser.add_argument("--bench-level", type=int, default=1, help="its gzip level (nibabel writes 1)")
    args = parser.parse_args()
    if args.bench:
        write_bench(args.bench, args.bench_level)
    else:
        write_fixtures()


if __name__ == "__main__":
    main()
