#!/usr/bin/env python3
"""Golden fixtures for ct3d-volume's NIfTI-2 and Analyze 7.5 reading
(crates/ct3d-volume/tests/nifti_io.rs, `nifti2_*` and `analyze_*` tests).

Writes small NIfTI-2 files (single and pair, gzip, both byte orders, several datatypes,
sform/qform/none, scaling, a 4-D singleton, an extension) and Analyze 7.5 ``.hdr``/``.img`` pairs
(plain, SPM ``funused1`` scaling with and without ``funused2`` intercept, SPM2's glmax/cal_max
fallback scaling, an SPM ``origin``, big-endian, gzip) with nibabel's header writers into
``crates/ct3d-volume/tests/data/nifti2/``. For each case it records what ``nib.load`` returns:
the class nibabel picked, ``get_fdata()`` as float32 in Fortran order (``<case>.npy``),
``img.affine``, ``header.get_zooms()[:3]``, the datatype and ``aff2axcodes``, in
``expected.json``.

    /work/venv-nifti2/bin/python tools/golden/gen_nifti2_fixtures.py
"""

import gzip
import io
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.spm2analyze import Spm2AnalyzeHeader

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ct3d-volume/tests/data/nifti2"
SHAPE = (7, 5, 3)

# float64 values that float32 cannot hold, so that a reader narrowing NIfTI-2 fields fails.
FINE_AFFINE = np.array(
    [[-0.7, 0.1, 0.0, 90.123456789], [0.0, -0.8, 1 / 3, 120.1], [0.05, 0.0, 2.5, -300.3], [0, 0, 0, 1]]
)
SCANNER_AFFINE = np.array(
    [[-0.75, 0.0, 0.0, 90.5], [0.0, -0.8, 0.0, 120.25], [0.0, 0.0, 2.5, -300.0], [0, 0, 0, 1]]
)


def ramp(dtype, lo, hi, shape=SHAPE):
    """`shape` voxels of `dtype` spread evenly from lo to hi (both included), x fastest."""
    n = int(np.prod(shape))
    if np.dtype(dtype).kind in "iu":
        values = [lo + (hi - lo) * k // (n - 1) for k in range(n)]
        arr = np.array(values, dtype=dtype)
    else:
        arr = np.linspace(lo, hi, n, dtype=np.float64).astype(dtype)
    return arr.reshape(shape, order="F")


def n2_header(dtype, shape=SHAPE, endianness="<", pair=False):
    klass = nib.nifti2.Nifti2PairHeader if pair else nib.Nifti2Header
    hdr = klass(endianness=endianness)
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr["pixdim"][1:4] = [0.7, 0.8, 2.5]
    hdr["xyzt_units"] = 2
    return hdr


def an_header(dtype, shape=SHAPE, endianness="<"):
    hdr = Spm2AnalyzeHeader(endianness=endianness)
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr["pixdim"][1:4] = [0.75, 0.8, 2.5]
    return hdr


def gz(data):
    return gzip.compress(data, compresslevel=6, mtime=0)


def write_single(path, hdr, arr, compress=False, patch=None):
    """Header via nibabel's writer (vox_offset 544 + extensions), then the raw voxels."""
    buf = io.BytesIO()
    hdr["vox_offset"] = 0
    hdr.write_to(buf)
    assert buf.tell() == int(hdr["vox_offset"])
    buf.write(np.asarray(arr, dtype=hdr.get_data_dtype()).tobytes(order="F"))
    data = bytearray(buf.getvalue())
    if patch:
        patch(data)
    path.write_bytes(gz(bytes(data)) if compress else bytes(data))


def write_pair(hdr_path, hdr, arr, compress=False, vox_offset=0):
    """`hdr_path` (.hdr or .hdr.gz) and its .img (.img.gz) with the voxels at `vox_offset`."""
    buf = io.BytesIO()
    hdr["vox_offset"] = vox_offset
    hdr.write_to(buf)
    img = b"\x55" * vox_offset + np.asarray(arr, dtype=hdr.get_data_dtype()).tobytes(order="F")
    pack = gz if compress else (lambda b: b)
    img_path = Path(str(hdr_path).replace(".hdr", ".img"))
    hdr_path.write_bytes(pack(buf.getvalue()))
    img_path.write_bytes(pack(img))


def expected_from(img):
    data = np.asarray(img.get_fdata(), dtype=np.float64)
    data = data.reshape(data.shape[:3]) if data.ndim > 3 else data
    with np.errstate(over="ignore"):
        data32 = np.asfortranarray(data.astype(np.float32))
    return {
        "data": data32,
        "class": type(img).__name__,
        "shape": list(data.shape),
        "affine": img.affine.tolist(),
        "spacing": [float(z) for z in img.header.get_zooms()[:3]],
        "datatype": str(img.get_data_dtype().newbyteorder("=")),
        "axcodes": "".join(c or "?" for c in nib.aff2axcodes(img.affine)),
    }


def build_cases():
    cases = []

    def case(name, filename, note):
        def register(fn):
            cases.append((name, filename, note, fn))
            return fn

        return register

    # ----------------------------------------------------------------------------- NIfTI-2
    ranges = {
        "uint8": (0, 255),
        "int16": (-32768, 32767),
        "uint16": (0, 65535),
        "int64": (-(2**63), 2**63 - 1),
        "float32": (-3.0e38, 3.0e38),
        "float64": (-1.0e300, 1.0e300),
    }
    for dtype, (lo, hi) in ranges.items():

        @case(f"n2_{dtype}", f"n2_{dtype}.nii", f"NIfTI-2 {dtype} over its range, float64 sform code 1")
        def _(path, dtype=dtype, lo=lo, hi=hi):
            hdr = n2_header(dtype)
            hdr.set_sform(FINE_AFFINE, code="scanner")
            arr = ramp(dtype, lo, hi)
            if dtype == "float64":
                arr.flat[[1, 2, 3]] = [np.nan, 0.1, 3.4e38]
            write_single(path, hdr, arr)
            return nib.load(str(path))

    @case("n2_big_endian_i16", "n2_big_endian_i16.nii", "NIfTI-2 big-endian int16, sform")
    def _(path):
        hdr = n2_header("int16", endianness=">")
        hdr.set_sform(FINE_AFFINE, code="aligned")
        write_single(path, hdr, ramp("int16", -1000, 3000))
        return nib.load(str(path))

    @case("n2_big_endian_f64_qform", "n2_big_endian_f64_qform.nii", "NIfTI-2 big-endian float64, qform only")
    def _(path):
        hdr = n2_header("float64", endianness=">")
        c, s = np.cos(0.3), np.sin(0.3)
        rot = np.array([[c, -s, 0, 10.1], [s, c, 0, -20.2], [0, 0, 1, 30.3], [0, 0, 0, 1]])
        hdr.set_qform(rot @ np.diag([0.7, 0.8, 2.5, 1]), code="scanner")
        hdr["sform_code"] = 0
        write_single(path, hdr, ramp("float64", -1.5, 2.5))
        return nib.load(str(path))

    @case("n2_qform_qfac_neg", "n2_qform_qfac_neg.nii", "NIfTI-2 qform with qfac -1 and an oblique float64 quaternion")
    def _(path):
        hdr = n2_header("int16")
        aff = np.array([[0.0, 0.0, 2.5, 1.1], [-0.7, 0.0, 0.0, 2.2], [0.0, 0.8, 0.0, 3.3], [0, 0, 0, 1]])
        c, s = np.cos(0.1), np.sin(0.1)
        aff = np.array([[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]]) @ aff @ np.diag([1, 1, -1, 1])
        hdr.set_qform(aff, code="aligned")
        hdr["sform_code"] = 0
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("n2_qform_small_w", "n2_qform_small_w.nii", "NIfTI-2 quaternion with w^2 = 2^-22 - 2^-46: below float32's threshold, above float64's")
    def _(path):
        hdr = n2_header("int16")
        hdr["qform_code"], hdr["sform_code"] = 1, 0
        hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = 1 - 2.0**-23, 0.0, 0.0
        hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = 1.5, -2.5, 3.5
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("n2_sform_and_qform", "n2_sform_and_qform.nii", "NIfTI-2 sform code 2 wins over qform code 1")
    def _(path):
        hdr = n2_header("int16")
        hdr.set_qform(np.diag([-0.7, 0.8, 2.5, 1.0]), code="scanner")
        hdr.set_sform(FINE_AFFINE, code="aligned")
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("n2_no_xform", "n2_no_xform.nii", "NIfTI-2 codes 0: base affine; pixdim -0.7, 0, 2.5 fixed to abs / 1")
    def _(path):
        hdr = n2_header("int16")
        hdr["qform_code"], hdr["sform_code"] = 0, 0
        hdr["pixdim"][1:4] = [-0.7, 0.0, 2.5]
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("n2_bad_sform_code", "n2_bad_sform_code.nii", "NIfTI-2 sform_code 7 (treated as 0): qform used")
    def _(path):
        hdr = n2_header("int16")
        hdr.set_sform(FINE_AFFINE, code="scanner")
        hdr.set_qform(np.diag([-0.7, 0.8, 2.5, 1.0]), code="scanner")
        hdr["sform_code"] = 7
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("n2_slope_inter", "n2_slope_inter.nii", "NIfTI-2 int16, float64 scl_slope 0.1 / scl_inter -1024.3")
    def _(path):
        hdr = n2_header("int16")
        hdr["scl_slope"], hdr["scl_inter"] = 0.1, -1024.3
        write_single(path, hdr, ramp("int16", -32768, 32767))
        return nib.load(str(path))

    @case("n2_slope_only", "n2_slope_only.nii", "NIfTI-2 float32 * 1/3, intercept 0 (add skipped)")
    def _(path):
        hdr = n2_header("float32")
        hdr["scl_slope"], hdr["scl_inter"] = 1 / 3, 0.0
        arr = ramp("float32", -1.0, 1.0)
        arr.flat[3] = -0.0
        write_single(path, hdr, arr)
        return nib.load(str(path))

    @case("n2_slope_0", "n2_slope_0.nii", "NIfTI-2 scl_slope 0: no scaling, scl_inter 7 ignored")
    def _(path):
        hdr = n2_header("int16")
        hdr["scl_slope"], hdr["scl_inter"] = 0.0, 7.0
        write_single(path, hdr, ramp("int16", -2000, 2000))
        return nib.load(str(path))

    @case("n2_dim4_1", "n2_dim4_1.nii", "NIfTI-2 4-D header with dim[4] == 1: read as 3-D")
    def _(path):
        hdr = n2_header("int16", shape=SHAPE + (1,))
        hdr.set_sform(FINE_AFFINE, code="scanner")
        write_single(path, hdr, ramp("int16", 0, 1000).reshape(SHAPE + (1,), order="F"))
        return nib.load(str(path))

    @case("n2_extension", "n2_extension.nii", "NIfTI-2 with a comment extension: voxels after 544")
    def _(path):
        hdr = n2_header("int16")
        hdr.set_sform(SCANNER_AFFINE, code="scanner")
        hdr.extensions.append(nib.nifti1.Nifti1Extension("comment", b"ct3d NIfTI-2 extension test"))
        write_single(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("n2_eol_zero", "n2_eol_zero.nii", "NIfTI-2 with end-of-line check bytes 0 (nibabel accepts)")
    def _(path):
        hdr = n2_header("uint8")

        def zero_eol(data):
            data[8:12] = b"\0\0\0\0"

        write_single(path, hdr, ramp("uint8", 0, 255), patch=zero_eol)
        return nib.load(str(path))

    @case("n2_gz", "n2_gz.nii.gz", "NIfTI-2 gzipped, int16 with intercept")
    def _(path):
        hdr = n2_header("int16")
        hdr.set_sform(SCANNER_AFFINE, code="scanner")
        hdr.set_slope_inter(1.0, -1024.0)
        write_single(path, hdr, ramp("int16", 0, 4095), compress=True)
        return nib.load(str(path))

    @case("n2_pair", "n2_pair.hdr", "NIfTI-2 pair (magic ni2), float32, sform")
    def _(path):
        hdr = n2_header("float32", pair=True)
        hdr.set_sform(FINE_AFFINE, code="scanner")
        write_pair(path, hdr, ramp("float32", -5.0, 5.0))
        return nib.load(str(path))

    @case("n2_pair_gz", "n2_pair_gz.hdr.gz", "NIfTI-2 pair, both halves gzipped, big-endian uint16")
    def _(path):
        hdr = n2_header("uint16", endianness=">", pair=True)
        write_pair(path, hdr, ramp("uint16", 0, 65535), compress=True)
        return nib.load(str(path))

    # ----------------------------------------------------------------------------- Analyze 7.5
    @case("an_plain", "an_plain.hdr", "Analyze int16, funused1 1: no scaling; centre affine, x flipped")
    def _(path):
        hdr = an_header("int16")
        write_pair(path, hdr, ramp("int16", -1000, 3000))
        return nib.load(str(path))

    @case("an_no_slope", "an_no_slope.hdr", "Analyze uint8, funused1 0 and no gl/cal ranges: no scaling")
    def _(path):
        hdr = an_header("uint8")
        hdr["scl_slope"] = 0
        write_pair(path, hdr, ramp("uint8", 0, 255))
        return nib.load(str(path))

    @case("an_funused1", "an_funused1.hdr", "Analyze uint8 with SPM funused1 scale 0.37")
    def _(path):
        hdr = an_header("uint8")
        hdr["scl_slope"] = 0.37
        write_pair(path, hdr, ramp("uint8", 0, 255))
        return nib.load(str(path))

    @case("an_funused1_inter", "an_funused1_inter.hdr", "Analyze int16, funused1 2.5 and SPM2 intercept funused2 -1024")
    def _(path):
        hdr = an_header("int16")
        hdr["scl_slope"], hdr["scl_inter"] = 2.5, -1024.0
        write_pair(path, hdr, ramp("int16", 0, 4095))
        return nib.load(str(path))

    @case("an_funused2_nan", "an_funused2_nan.hdr", "Analyze int16, funused1 3 with a NaN funused2: intercept 0")
    def _(path):
        hdr = an_header("int16")
        hdr["scl_slope"], hdr["scl_inter"] = 3.0, np.nan
        write_pair(path, hdr, ramp("int16", -100, 100))
        return nib.load(str(path))

    @case("an_gl_cal", "an_gl_cal.hdr", "Analyze int16, funused1 0: SPM2 scaling from glmax/glmin and cal_max/cal_min")
    def _(path):
        hdr = an_header("int16")
        hdr["scl_slope"] = 0
        hdr["glmax"], hdr["glmin"] = 4095, -5
        hdr["cal_max"], hdr["cal_min"] = 3071.3, -1024.7
        write_pair(path, hdr, ramp("int16", -5, 4095))
        return nib.load(str(path))

    @case("an_origin", "an_origin.hdr", "Analyze with SPM origin (3, 4, 2): translation in float32 (-3 * 0.8f)")
    def _(path):
        hdr = an_header("int16")
        hdr["origin"][:3] = [3, 4, 2]
        write_pair(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("an_origin_negative", "an_origin_negative.hdr", "Analyze with SPM origin (-4, 8, 1), inside (-dim, 2 dim)")
    def _(path):
        hdr = an_header("int16")
        hdr["origin"][:3] = [-4, 8, 1]
        write_pair(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("an_origin_far", "an_origin_far.hdr", "Analyze with SPM origin (3, 2, 7): z >= 2 * dim, so centre affine")
    def _(path):
        hdr = an_header("int16")
        hdr["origin"][:3] = [3, 2, 7]
        write_pair(path, hdr, ramp("int16", 0, 1000))
        return nib.load(str(path))

    @case("an_big_endian", "an_big_endian.hdr", "Analyze big-endian float32 with origin and funused1 2")
    def _(path):
        hdr = an_header("float32", endianness=">")
        hdr["origin"][:3] = [4, 3, 2]
        hdr["scl_slope"] = 2.0
        arr = ramp("float32", -1000.0, 1000.0)
        arr.flat[5] = np.nan
        write_pair(path, hdr, arr)
        return nib.load(str(path))

    for dtype, (lo, hi) in {"int32": (-(2**31), 2**31 - 1), "float64": (-1e300, 1e300)}.items():

        @case(f"an_{dtype}", f"an_{dtype}.hdr", f"Analyze {dtype} over its range")
        def _(path, dtype=dtype, lo=lo, hi=hi):
            hdr = an_header(dtype)
            write_pair(path, hdr, ramp(dtype, lo, hi))
            return nib.load(str(path))

    @case("an_vox_offset", "an_vox_offset.hdr", "Analyze pair with vox_offset 32 in the .img, negative pixdim fixed")
    def _(path):
        hdr = an_header("int16")
        hdr["pixdim"][1:4] = [-0.75, 0.0, 2.5]
        write_pair(path, hdr, ramp("int16", 0, 1000), vox_offset=32)
        return nib.load(str(path))

    @case("an_gz", "an_gz.hdr.gz", "Analyze pair, both halves gzipped, int16 with funused1 0.5")
    def _(path):
        hdr = an_header("int16")
        hdr["scl_slope"] = 0.5
        write_pair(path, hdr, ramp("int16", -2000, 2000), compress=True)
        return nib.load(str(path))

    @case("an_from_img", "an_from_img.img", "Analyze pair loaded through its .img name")
    def _(path):
        hdr = an_header("int16")
        hdr["origin"][:3] = [1, 1, 1]
        write_pair(Path(str(path).replace(".img", ".hdr")), hdr, ramp("int16", 0, 500))
        return nib.load(str(path))

    return cases


def main():
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
        json.dump({"generator": "tools/golden/gen_nifti2_fixtures.py", "nibabel": nib.__version__,
                   "numpy": np.__version__, "cases": manifest}, f, indent=1)
        f.write("\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(manifest)} fixtures, {total} bytes in {OUT}")
    for c in manifest:
        print(f"  {c['name']:24} {c['class']}")


if __name__ == "__main__":
    main()
