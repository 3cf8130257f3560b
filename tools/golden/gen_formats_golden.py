#!/usr/bin/env python3
"""Peer-parity corpus for ct3d-volume's NRRD and MetaImage readers
(crates/ct3d-volume/tests/formats_peer.rs).

Writes small volumes (7x6x5, a few kB each) into
``crates/ct3d-volume/tests/data/golden/formats/``:

- NRRD written by **pynrrd** (attached and detached, raw and gzip, both byte orders, several
  sample types, LPS/RAS/LAS/scanner-xyz spaces, an oblique ``space directions``, a
  ``spacings``-only header, a 4-D file with a size-1 list axis), by **SimpleITK**, and by hand
  (type aliases, comments, ``key:=value`` pairs, ``line skip``/``byte skip``, ``byte skip: -1``);
- MetaImage written by **SimpleITK** (``.mha`` and ``.mhd`` + ``.raw``/``.zraw``, compressed and
  not, ten pixel types, an oblique direction, a non-zero origin) and by hand (big-endian,
  ``ElementSize``, ``Position``/``Orientation``, ``HeaderSize``, a ``LIST`` of slice files, a gzip
  negative spacing, zlib data with ``CompressedDataSize``).

For every scan, ``manifest.json`` lists the voxel values its reference reader returns (a float32
``.npy``, Fortran order, indexed ``[x, y, z]`` like nibabel's ``get_fdata()``: pynrrd's default
``index_order='F'`` array as it is, SimpleITK's ``GetArrayFromImage`` ``[z, y, x]`` array
transposed), the spacing (mm) and the 4x4 voxel -> RAS+ affine:

- NRRD: from pynrrd's header fields: ``space directions`` (one row per axis in pynrrd, so the
  affine's columns) or ``spacings``, and ``space origin``, with world x and y negated for LPS and
  for files with no anatomical space (``scanner-xyz``, none: ITK reads those as LPS), x negated
  for LAS;
- MetaImage (and SimpleITK-written NRRD): from SimpleITK's ``GetDirection()`` (row-major, columns
  are the axes), ``GetSpacing()`` and ``GetOrigin()``, which are LPS: ``[D diag(s) | o]`` with
  its first two rows negated.

Every NRRD file is also read by SimpleITK (ITK's NrrdImageIO, what 3D Slicer uses) and every
SimpleITK-written NRRD by pynrrd; the script stops unless both readers agree on values and geometry
(the manifest names each agreeing reader under ``references``).

    /work/venv-formats/bin/python tools/golden/gen_formats_golden.py
"""

import datetime
import gzip
import json
import shutil
import zlib
from pathlib import Path

import nrrd
import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ct3d-volume/tests/data/golden/formats"
SHAPE = (7, 6, 5)  # [x, y, z]
N = int(np.prod(SHAPE))

# An oblique rotation (about z, then x) and one with an axis flip.
_c, _s = np.cos(0.5), np.sin(0.5)
_rz = np.array([[_c, -_s, 0.0], [_s, _c, 0.0], [0.0, 0.0, 1.0]])
_rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.3), -np.sin(0.3)], [0.0, np.sin(0.3), np.cos(0.3)]])
OBLIQUE = _rz @ _rx

manifest = []


class _FixedTime(datetime.datetime):
    """pynrrd stamps each header with the time of writing: a fixed one keeps the corpus
    byte-for-byte reproducible."""

    @classmethod
    def utcnow(cls):
        return cls(2026, 1, 1)


nrrd.writer.datetime = _FixedTime


def ramp(dtype):
    """SHAPE values of `dtype` ([x, y, z], Fortran order) spanning the type's range for integers
    (extremes included, so 64-bit rounding to float32 is exercised) and a signed fractional range
    for floats (float64 values not representable in float32)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = int(info.min), int(info.max)
        values = [lo + (hi - lo) * k // (N - 1) for k in range(N)]
        arr = np.array(values, dtype=dtype.newbyteorder("="))
    else:
        arr = np.linspace(-1024.3, 3071.7, N, dtype=np.float64) * (1 + 1e-9)
        arr = arr.astype(dtype.newbyteorder("="))
    return arr.reshape(SHAPE, order="F")


def sitk_geometry(img):
    """Spacing and RAS+ affine of a SimpleITK image (ITK geometry is LPS)."""
    d = np.array(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    s = np.array(img.GetSpacing(), dtype=np.float64)
    o = np.array(img.GetOrigin(), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = d * s  # column i scaled by spacing i
    affine[:3, 3] = o
    affine[:2, :] *= -1
    return s, affine


def sitk_read(path):
    img = sitk.ReadImage(str(path))
    values = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # [z, y, x] -> [x, y, z]
    spacing, affine = sitk_geometry(img)
    return values, spacing, affine


SIGNS = {
    "right-anterior-superior": [1, 1, 1],
    "RAS": [1, 1, 1],
    "left-anterior-superior": [-1, 1, 1],
    "LAS": [-1, 1, 1],
    "left-posterior-superior": [-1, -1, 1],
    "LPS": [-1, -1, 1],
    "scanner-xyz": [-1, -1, 1],
    None: [-1, -1, 1],
}


def pynrrd_read(path):
    """pynrrd's values ([x, y, z], a size-1 non-spatial axis dropped) and the RAS+ geometry its
    header fields describe."""
    values, header = nrrd.read(str(path))  # index_order='F': the file's fastest axis first
    return pynrrd_geometry(header, values)


def pynrrd_geometry(header, values=None):
    sizes = list(header["sizes"])
    if "space directions" in header:
        dirs = np.asarray(header["space directions"], dtype=np.float64)
        spatial = [i for i in range(len(sizes)) if not np.all(np.isnan(dirs[i]))]
        columns = dirs[spatial].T
    else:
        spacings = np.asarray(header.get("spacings", [1.0] * len(sizes)), dtype=np.float64)
        spatial = [i for i in range(len(sizes)) if not (sizes[i] == 1 and np.isnan(spacings[i]))]
        steps = np.where(np.isnan(spacings[spatial]), 1.0, spacings[spatial])
        columns = np.diag(steps)
    if values is not None and len(spatial) != len(sizes):
        values = values.reshape([sizes[i] for i in spatial], order="F")
    origin = np.asarray(header.get("space origin", [0.0, 0.0, 0.0]), dtype=np.float64)
    signs = np.array(SIGNS[header.get("space")], dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = columns * signs[:, None]
    affine[:3, 3] = origin * signs
    spacing = np.sqrt((columns**2).sum(axis=0))
    return values, spacing, affine


def agree(name, a, b):
    """Two readers' (values, spacing, affine) must agree: values exactly, geometry to 1e-9."""
    va, sa, aa = a
    vb, sb, ab = b
    assert va.shape == vb.shape, (name, va.shape, vb.shape)
    assert np.array_equal(va.astype(np.float32), vb.astype(np.float32)), name
    assert np.allclose(sa, sb, rtol=0, atol=1e-9), (name, sa, sb)
    assert np.allclose(aa, ab, rtol=0, atol=1e-9), (name, aa, ab)


def record(name, fmt, writer, files, reference, others, datatype):
    values, spacing, affine = reference[1]
    assert values.shape == SHAPE, (name, values.shape)
    for other in others:
        agree(name, reference[1], other[1])
    npy = f"{name}.npy"
    np.save(OUT / npy, np.asfortranarray(values.astype(np.float32)))
    manifest.append(
        {
            "name": name,
            "file": files[0],
            "files": files,
            "format": fmt,
            "writer": writer,
            "references": [reference[0]] + [o[0] for o in others],
            "datatype": datatype,
            "values": npy,
            "shape": list(SHAPE),
            "spacing": [float(v) for v in spacing],
            "affine": [[float(v) for v in row] for row in affine],
        }
    )


def nrrd_case(name, fmt, writer, files, datatype, sitk_too=True):
    path = OUT / files[0]
    others = [("SimpleITK " + sitk.Version.VersionString(), sitk_read(path))] if sitk_too else []
    record(name, fmt, writer, files, ("pynrrd " + nrrd.__version__, pynrrd_read(path)), others,
           datatype)


def sitk_case(name, files, datatype, pynrrd_too=False, written=None):
    path = OUT / files[0]
    if written is not None:
        # SimpleITK prints a warning and returns garbage for data it cannot decode: the values
        # must be the ones written.
        assert np.array_equal(sitk_read(path)[0], written), name
    fmt = "NRRD" if files[0].endswith(".nrrd") else "MetaImage"
    others = [("pynrrd " + nrrd.__version__, pynrrd_read(path))] if pynrrd_too else []
    record(name, fmt, "SimpleITK" if name.startswith("s_") else "hand", files,
           ("SimpleITK " + sitk.Version.VersionString(), sitk_read(path)), others, datatype)


# ---------------------------------------------------------------------------------------------
# NRRD written by pynrrd

AXIS_ALIGNED = np.diag([0.75, 0.8, 2.5])


def pynrrd_write(name, dtype, *, encoding="raw", endian="<", space="left-posterior-superior",
                 directions=AXIS_ALIGNED, origin=(-90.5, 120.25, -300.0), detached=False,
                 extra=None):
    data = ramp(dtype).astype(np.dtype(dtype).newbyteorder(endian))
    header = {"encoding": encoding}
    if space is not None:
        header["space"] = space
    if directions is not None:
        header["space directions"] = np.asarray(directions, dtype=np.float64).T  # rows = axes
    if origin is not None:
        header["space origin"] = np.asarray(origin, dtype=np.float64)
    header.update(extra or {})
    ext = ".nhdr" if detached else ".nrrd"
    nrrd.write(str(OUT / f"{name}{ext}"), data, header, detached_header=detached,
               index_order="F")
    files = [f"{name}{ext}"]
    if detached:
        files.append(f"{name}.raw.gz" if encoding == "gzip" else f"{name}.raw")
    nrrd_case(name, "NRRD", "pynrrd", files, dtype_name(dtype))


def dtype_name(dtype):
    return {"float32": "float32", "float64": "float64"}.get(np.dtype(dtype).name,
                                                              np.dtype(dtype).name)


def pynrrd_cases():
    pynrrd_write("p_i16_raw_le_lps", np.int16)
    pynrrd_write("p_u8_gzip_ras", np.uint8, encoding="gzip", space="right-anterior-superior")
    pynrrd_write("p_f32_gzip_be", np.float32, encoding="gzip", endian=">")
    pynrrd_write("p_f64_raw_be_oblique", np.float64, endian=">",
                 directions=OBLIQUE @ np.diag([0.6, 0.7, 1.9]), origin=(12.5, -7.25, 33.0))
    pynrrd_write("p_i32_ras_oblique", np.int32, space="right-anterior-superior",
                 directions=OBLIQUE.T @ np.diag([1.1, 0.9, 3.0]))
    pynrrd_write("p_i8_las", np.int8, space="left-anterior-superior")
    pynrrd_write("p_u16_scanner", np.uint16, endian=">", space="scanner-xyz")
    pynrrd_write("p_i64_gzip", np.int64, encoding="gzip")
    pynrrd_write("p_u64_be", np.uint64, endian=">")
    pynrrd_write("p_u32_gzip_be", np.uint32, encoding="gzip", endian=">")
    pynrrd_write("p_i32_detached", np.int32, detached=True)
    pynrrd_write("p_u16_detached_gzip_be", np.uint16, encoding="gzip", endian=">",
                 detached=True, space="right-anterior-superior")
    pynrrd_write("p_f32_spacings", np.float32, space=None, directions=None, origin=None,
                 extra={"spacings": np.array([0.7, 0.8, 2.2])})

    # 4-D with a leading list axis of size 1: pynrrd and ct3d drop it; ITK reads it as a vector
    # image, so it is no peer here.
    data = ramp(np.int16)[np.newaxis]
    dirs = np.vstack([np.full(3, np.nan), AXIS_ALIGNED.T])
    nrrd.write(str(OUT / "p_4d_singleton.nrrd"), data,
               {"space": "left-posterior-superior", "space directions": dirs,
                "kinds": ["list", "domain", "domain", "domain"], "encoding": "raw"},
               index_order="F")
    nrrd_case("p_4d_singleton", "NRRD", "pynrrd", ["p_4d_singleton.nrrd"], "int16",
              sitk_too=False)


# ---------------------------------------------------------------------------------------------
# NRRD written by hand (fields pynrrd's writer does not produce)


def hand_nrrd_cases():
    values = ramp(np.int16)
    # Detached: type alias, comments, key:=value, big endian, line skip then byte skip.
    (OUT / "h_skips.nhdr").write_text(
        "NRRD0004\n"
        "# written by hand: aliases and skips\n"
        "type: signed short int\n"
        "dimension: 3\n"
        "space: RAS\n"
        "sizes: 7 6 5\n"
        "space directions: (0,0.9,0) (1.2,0,0) (0,0,-2)\n"
        "space origin: (5,6,7)\n"
        "kinds: domain domain domain\n"
        "endian: big\n"
        "encoding: raw\n"
        "line skip: 2\n"
        "byte skip: 3\n"
        "patient:=anonymous: really\n"
        "data file: h_skips.dat\n"
    )
    (OUT / "h_skips.dat").write_bytes(
        b"first line\nsecond\nxyz" + values.astype(">i2").tobytes(order="F")
    )
    nrrd_case("h_skips", "NRRD", "hand", ["h_skips.nhdr", "h_skips.dat"], "int16")

    # Attached, data at the end of the file (byte skip: -1) after junk; `unsigned char` alias.
    u8 = ramp(np.uint8)
    (OUT / "h_byteskip_end.nrrd").write_bytes(
        b"NRRD0005\n"
        b"type: unsigned char\n"
        b"dimension: 3\n"
        b"space: left-posterior-superior\n"
        b"sizes: 7 6 5\n"
        b"space directions: (0.5,0,0) (0,0.5,0) (0,0,1.5)\n"
        b"encoding: raw\n"
        b"byte skip: -1\n"
        b"\n" + b"JUNKJUNK" + u8.tobytes(order="F")
    )
    nrrd_case("h_byteskip_end", "NRRD", "hand", ["h_byteskip_end.nrrd"], "uint8")

    # Detached gzip: byte skip counts decompressed bytes; `gz` and `ushort` spellings.
    u16 = ramp(np.uint16)
    (OUT / "h_gzip_skip.nhdr").write_text(
        "NRRD0004\n"
        "type: ushort\n"
        "dimension: 3\n"
        "space: left-posterior-superior\n"
        "sizes: 7 6 5\n"
        "space directions: (1,0,0) (0,1,0) (0,0,1)\n"
        "space origin: (-1.5,2.5,3.5)\n"
        "endian: little\n"
        "encoding: gz\n"
        "byte skip: 4\n"
        "data file: h_gzip_skip.raw.gz\n"
    )
    (OUT / "h_gzip_skip.raw.gz").write_bytes(
        gzip.compress(b"\x01\x02\x03\x04" + u16.astype("<u2").tobytes(order="F"), mtime=0)
    )
    # pynrrd applies a byte skip to the compressed bytes as well as to the decompressed ones
    # (it seeks before inflating), so it cannot read this file; ITK (teem) skips decompressed
    # bytes only, as the NRRD format says. SimpleITK is the reference; the geometry must still be
    # what pynrrd's header fields describe.
    path = OUT / "h_gzip_skip.nhdr"
    reference = sitk_read(path)
    _, spacing, affine = pynrrd_geometry(nrrd.read_header(str(path)))
    assert np.array_equal(reference[0], u16), "SimpleITK skips decompressed bytes"
    agree("h_gzip_skip", reference, (reference[0], spacing, affine))
    record("h_gzip_skip", "NRRD", "hand", ["h_gzip_skip.nhdr", "h_gzip_skip.raw.gz"],
           ("SimpleITK " + sitk.Version.VersionString(), reference), [], "uint16")


# ---------------------------------------------------------------------------------------------
# Written by SimpleITK: MetaImage, and NRRD as a third peer


def sitk_image(dtype, direction=OBLIQUE, spacing=(0.5, 0.75, 2.0), origin=(10.0, -20.0, 30.5)):
    img = sitk.GetImageFromArray(np.ascontiguousarray(ramp(dtype).transpose(2, 1, 0)))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(tuple(np.asarray(direction, dtype=np.float64).flatten()))
    return img


def sitk_write(name, ext, dtype, compress=False, **geometry):
    sitk.WriteImage(sitk_image(dtype, **geometry), str(OUT / f"{name}{ext}"),
                    useCompression=compress)
    files = [f"{name}{ext}"]
    if ext == ".mhd":
        files.append(f"{name}.zraw" if compress else f"{name}.raw")
    sitk_case(name, files, dtype_name(dtype), pynrrd_too=ext == ".nrrd", written=ramp(dtype))


def sitk_cases():
    sitk_write("s_i16_oblique", ".mha", np.int16)
    sitk_write("s_u8_c", ".mha", np.uint8, compress=True, direction=np.eye(3))
    sitk_write("s_f32", ".mhd", np.float32)
    sitk_write("s_f64_c", ".mhd", np.float64, compress=True)
    sitk_write("s_i8", ".mha", np.int8, direction=np.diag([1.0, -1.0, -1.0]))
    sitk_write("s_u16_c", ".mha", np.uint16, compress=True)
    sitk_write("s_i32", ".mhd", np.int32)
    sitk_write("s_u32_c", ".mhd", np.uint32, compress=True)
    sitk_write("s_i64", ".mha", np.int64)
    sitk_write("s_u64_c", ".mha", np.uint64, compress=True)
    # SimpleITK's NRRD writer: attached, LPS, raw or gzip.
    sitk_write("s_i16_oblique", ".nrrd", np.int16)
    sitk_write("s_f32_gzip", ".nrrd", np.float32, compress=True)
    sitk_write("s_u8_flip", ".nrrd", np.uint8, direction=np.diag([-1.0, 1.0, -1.0]))


# ---------------------------------------------------------------------------------------------
# MetaImage written by hand (fields SimpleITK's writer does not produce)


def hand_mhd(name, lines, data_files):
    (OUT / f"{name}.mhd").write_text("".join(f"{line}\n" for line in lines))
    for file_name, data in data_files.items():
        (OUT / file_name).write_bytes(data)
    return [f"{name}.mhd"] + list(data_files)


def hand_metaimage_cases():
    i16 = ramp(np.int16)
    # Big-endian, ElementSize without ElementSpacing, Position, Orientation, an
    # AnatomicalOrientation that ITK ignores.
    files = hand_mhd("h_msb", [
        "ObjectType = Image", "NDims = 3", "BinaryData = True",
        "BinaryDataByteOrderMSB = True", "CompressedData = False",
        "Orientation = 0 1 0 -1 0 0 0 0 1", "Position = 1.5 -2 3",
        "AnatomicalOrientation = LPI", "ElementSize = 0.9 1.1 2.5", "DimSize = 7 6 5",
        "ElementType = MET_SHORT", "ElementDataFile = h_msb.raw",
    ], {"h_msb.raw": i16.astype(">i2").tobytes(order="F")})
    sitk_case("h_msb", files, "int16", written=i16)

    # HeaderSize skips bytes of the data file; MET_LONG is 32-bit; ElementByteOrderMSB alias.
    i32 = ramp(np.int32)
    files = hand_mhd("h_headersize", [
        "ObjectType = Image", "NDims = 3", "ElementByteOrderMSB = False",
        "ElementSpacing = 1 2 3", "Offset = 0 0 -10", "DimSize = 7 6 5",
        "HeaderSize = 16", "ElementType = MET_LONG", "ElementDataFile = h_headersize.raw",
    ], {"h_headersize.raw": b"0123456789abcdef" + i32.astype("<i4").tobytes(order="F")})
    sitk_case("h_headersize", files, "int32", written=i32)

    # HeaderSize = -1: the data is the end of the file.
    u16 = ramp(np.uint16)
    files = hand_mhd("h_headersize_end", [
        "ObjectType = Image", "NDims = 3", "DimSize = 7 6 5", "HeaderSize = -1",
        "ElementType = MET_USHORT", "ElementDataFile = h_headersize_end.raw",
    ], {"h_headersize_end.raw": b"some preamble" + u16.astype("<u2").tobytes(order="F")})
    sitk_case("h_headersize_end", files, "uint16", written=u16)

    # A LIST of slice files, one x-y slice each.
    f32 = ramp(np.float32)
    slices = {f"h_list_{z:02d}.raw": f32[:, :, z].astype("<f4").tobytes(order="F")
              for z in range(SHAPE[2])}
    files = hand_mhd("h_list", [
        "ObjectType = Image", "NDims = 3", "ElementSpacing = 0.8 0.8 1.25",
        "TransformMatrix = 1 0 0 0 0 1 0 -1 0", "Offset = 4 5 6", "DimSize = 7 6 5",
        "ElementType = MET_FLOAT", "ElementDataFile = LIST",
    ] + list(slices), slices)
    sitk_case("h_list", files, "float32", written=f32)

    # A negative spacing: ITK flips that axis' direction and keeps the spacing positive.
    u8 = ramp(np.uint8)
    files = hand_mhd("h_negative_spacing", [
        "ObjectType = Image", "NDims = 3", "ElementSpacing = -0.5 1 2", "DimSize = 7 6 5",
        "ElementType = MET_UCHAR", "ElementDataFile = h_negative_spacing.raw",
    ], {"h_negative_spacing.raw": u8.tobytes(order="F")})
    sitk_case("h_negative_spacing", files, "uint8", written=u8)

    # LOCAL zlib data with CompressedDataSize and bytes after the stream.
    i16 = ramp(np.int16)
    stream = zlib.compress(i16.astype("<i2").tobytes(order="F"), 6)
    text = "".join(f"{line}\n" for line in [
        "ObjectType = Image", "NDims = 3", "CompressedData = True",
        f"CompressedDataSize = {len(stream)}", "DimSize = 7 6 5", "ElementType = MET_SHORT",
        "ElementDataFile = LOCAL",
    ])
    (OUT / "h_zlib_sized.mha").write_bytes(text.encode() + stream + b"trailing")
    sitk_case("h_zlib_sized", ["h_zlib_sized.mha"], "int16", written=i16)


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    pynrrd_cases()
    hand_nrrd_cases()
    sitk_cases()
    hand_metaimage_cases()
    # One case per line: small diffs when a case changes.
    head = json.dumps({
        "generator": "tools/golden/gen_formats_golden.py",
        "pynrrd": nrrd.__version__,
        "SimpleITK": sitk.Version.VersionString(),
        "numpy": np.__version__,
    })[:-1]
    cases = ",\n  ".join(json.dumps(case) for case in manifest)
    (OUT / "manifest.json").write_text(f'{head}, "cases": [\n  {cases}\n]}}\n')
    by = {}
    for case in manifest:
        key = (case["format"], case["writer"])
        by[key] = by.get(key, 0) + 1
    for (fmt, writer), count in sorted(by.items()):
        print(f"{fmt:9} {writer:9} {count}")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(manifest)} scans, {len(list(OUT.iterdir()))} files, {total} bytes")


if __name__ == "__main__":
    main()
