//! NRRD as a [`ScanFormat`]: `.nrrd` (header and data in one file) and `.nhdr` (a header whose
//! `data file:` names the data), read value for value as pynrrd reads them and placed in space as
//! ITK (and so 3D Slicer) places them.
//!
//! # What is read
//! - **Header**: the `NRRD000X` magic line, then `field: value` lines up to a blank line (or the
//!   end of an `.nhdr`); `#` comments and `key:=value` pairs are skipped; a field given twice is
//!   an error (as in pynrrd). Field names are matched in any case, with or without their space
//!   (`byte skip`/`byteskip`, `data file`/`datafile`, `line skip`/`lineskip`).
//! - **Samples**: `type` is any of NRRD's names for the ten integer and float scalar types
//!   (`short`, `unsigned char`, `uint16_t`, `float`, `double`, ...); `encoding` `raw` or
//!   `gzip`/`gz` (others, such as `ascii` or `bzip2`, are refused); `endian` `little` or `big`
//!   (required for samples wider than a byte); `line skip` (lines of the stored file) then
//!   `byte skip` (bytes of the decompressed data for gzip, as the NRRD format and pynrrd define
//!   it; `-1`, "the data is at the end of the file", for raw data only). Values become `f32` as
//!   `astype(np.float32)` does; NRRD has no intensity scaling. Bytes after the data are ignored.
//! - **Shape**: `dimension: 3`, `sizes` `x y z` with `x` fastest, so the volume is the file's
//!   order without a transpose. A 4-D file whose one extra axis has size 1 (and no space
//!   direction, `none`) is read as its 3-D volume.
//! - **Geometry**: with `space directions`, voxel axis `i` steps by its vector and the first
//!   voxel sits at `space origin` (0 without one); [`Volume::spacing`] is each vector's length.
//!   Without them, the old per-axis `spacings` (1 mm where absent or `nan`) along the world axes.
//!   The frame is `space`: `right-anterior-superior` (`RAS`) as it is,
//!   `left-posterior-superior` (`LPS`) with world x and y negated, `left-anterior-superior`
//!   (`LAS`) with world x negated. `scanner-xyz`, a bare `space dimension: 3` or no space at all
//!   are taken as LPS, as ITK reads them (it converts only the named anatomical spaces and leaves
//!   every other one as its native LPS), so ct3d and 3D Slicer show such a file the same way.
//!
//! Sizes are checked against the data file's length (gzip: against what its length can
//! decompress to) and ct3d's voxel limit before anything is allocated; every error is one line
//! beginning with the header's path.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::raw::{
    self, Block, ElementType, FormatError, Packing, Skip, bad, check_geometry, has_extension,
    header_beside, numbers, open_header,
};
use super::{Recognition, ScanError, ScanFiles, ScanFormat};
use crate::Volume;
use crate::nifti::ByteOrder;
use crate::volume::Provenance;

/// The NRRD format (see the module docs).
pub(super) struct Nrrd;

/// The names (lowercase) dataset folders list as NRRD scans.
const LISTED_EXTENSIONS: [&str; 2] = [".nrrd", ".nhdr"];

impl ScanFormat for Nrrd {
    fn name(&self) -> &'static str {
        "NRRD"
    }

    fn listed_as(&self) -> &'static str {
        "*.nrrd, *.nhdr"
    }

    /// A file named `*.nrrd` or `*.nhdr` is a scan; `x.raw`, `x.raw.gz` beside an `x.nhdr` is
    /// part of one (its data), never listed.
    fn recognize(&self, path: &Path) -> Recognition {
        if !path.is_file() {
            Recognition::No
        } else if has_extension(path, &LISTED_EXTENSIONS) {
            Recognition::Scan
        } else if header_beside(path, &["nhdr"]).is_some() {
            Recognition::Part
        } else {
            Recognition::No
        }
    }

    fn read(&self, path: &Path, _series: Option<&str>) -> Result<Volume, ScanError> {
        read_nrrd(path).map_err(|e| ScanError::Format(Box::new(e)))
    }

    /// The header, then its data file when that is separate (and exists: a missing one is the
    /// reader's error to report).
    fn files(&self, path: &Path) -> io::Result<ScanFiles> {
        match Header::read(path) {
            Ok(header) if header.detached && header.data_file.is_file() => {
                Ok(ScanFiles::Files(vec![path.to_owned(), header.data_file]))
            }
            _ => Ok(ScanFiles::Single),
        }
    }
}

/// Reads an NRRD file (`.nrrd`, or an `.nhdr` and its data file) into a [`Volume`]: `[x, y, z]`
/// with `x` fastest (NRRD's first axis), spacing in mm, affine voxel → RAS+ mm (see the
/// [module documentation](self)).
pub fn read_nrrd(path: &Path) -> Result<Volume, FormatError> {
    if !has_extension(path, &LISTED_EXTENSIONS)
        && let Some(header) = header_beside(path, &["nhdr"])
    {
        return Err(FormatError::DataFileGiven {
            path: path.to_owned(),
            header,
        });
    }
    let header = Header::read(path)?;
    let (count, _) = raw::sample_bytes(path, &header.sizes, header.element)?;
    let planned = header.block.clone().plan(path, count)?;
    let data = raw::read_blocks(path, std::slice::from_ref(&planned), count)?;
    let shape = header.shape.map(|n| n as usize);
    let mut volume = Volume::new(shape, data).map_err(|e| bad(path, e.to_string()))?;
    volume.spacing = header.spacing;
    volume.affine = header.affine;
    volume.provenance = Provenance {
        path: Some(path.to_owned()),
        datatype: Some(header.element.name().to_owned()),
    };
    Ok(volume)
}

/// What the header says, checked.
struct Header {
    /// Every axis's size, the dropped one of a 4-D file included.
    sizes: Vec<u64>,
    /// The volume's `[x, y, z]`.
    shape: [u64; 3],
    element: ElementType,
    spacing: [f64; 3],
    affine: crate::Affine,
    /// Whether the data is in a separate file.
    detached: bool,
    data_file: PathBuf,
    block: Block,
}

/// The world frame a `space` field names, as a sign per world axis that turns it into RAS+.
fn space_signs(path: &Path, space: Option<&str>) -> Result<[f64; 3], FormatError> {
    const LPS: [f64; 3] = [-1.0, -1.0, 1.0];
    let Some(space) = space else { return Ok(LPS) };
    match space.to_ascii_lowercase().as_str() {
        "right-anterior-superior" | "ras" => Ok([1.0, 1.0, 1.0]),
        "left-anterior-superior" | "las" => Ok([-1.0, 1.0, 1.0]),
        "left-posterior-superior" | "lps" | "scanner-xyz" => Ok(LPS),
        _ => Err(FormatError::Unsupported {
            path: path.to_owned(),
            what: format!("space {space:?}"),
            supported: "ct3d reads the 3-D spaces right-anterior-superior, \
                        left-anterior-superior, left-posterior-superior and scanner-xyz",
        }),
    }
}

/// NRRD's names for a sample type (pynrrd's table, lowercase).
fn element_type(name: &str) -> Option<ElementType> {
    use ElementType::*;
    Some(match name {
        "signed char" | "int8" | "int8_t" => I8,
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => U8,
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => I16,
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => U16,
        "int" | "signed int" | "int32" | "int32_t" => I32,
        "uint" | "unsigned int" | "uint32" | "uint32_t" => U32,
        "longlong"
        | "long long"
        | "long long int"
        | "signed long long"
        | "signed long long int"
        | "int64"
        | "int64_t" => I64,
        "ulonglong" | "unsigned long long" | "unsigned long long int" | "uint64" | "uint64_t" => {
            U64
        }
        "float" => F32,
        "double" => F64,
        _ => return None,
    })
}

/// A `space directions` value: one `(a,b,c)` vector or `none` per axis.
fn parse_directions(value: &str) -> Option<Vec<Option<[f64; 3]>>> {
    let mut rest = value.trim();
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('(') {
            let end = after.find(')')?;
            out.push(Some(parse_vector(&after[..end])?));
            rest = after[end + 1..].trim_start();
        } else if rest
            .get(..4)
            .is_some_and(|word| word.eq_ignore_ascii_case("none"))
        {
            // `get`: the fourth byte may fall inside a multi-byte character (found by fuzzing).
            out.push(None);
            rest = rest[4..].trim_start();
        } else {
            return None;
        }
    }
    Some(out)
}

/// The inside of `(a,b,c)`.
fn parse_vector(inside: &str) -> Option<[f64; 3]> {
    let parts: Vec<f64> = inside
        .split(',')
        .map(|t| t.trim().parse().ok())
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

impl Header {
    fn read(path: &Path) -> Result<Self, FormatError> {
        let (mut file, _) = open_header(path, "an NRRD")?;
        let mut magic = Vec::with_capacity(8);
        (&mut file)
            .take(8)
            .read_to_end(&mut magic)
            .map_err(|source| FormatError::Io {
                path: path.to_owned(),
                what: "the header".to_owned(),
                source,
            })?;
        let version = magic.strip_prefix(b"NRRD000").and_then(|v| v.first());
        if !matches!(version, Some(b'1'..=b'5')) {
            return Err(bad(
                path,
                "not an NRRD file: it does not begin with NRRD0001 ... NRRD0005",
            ));
        }
        let (file, _) = open_header(path, "an NRRD")?;
        let (lines, data_offset, ended) = raw::header_lines(path, file, str::is_empty)?;

        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        for line in lines.iter().skip(1) {
            if line.starts_with('#') {
                continue;
            }
            let Some((field, value)) = line.split_once(':') else {
                return Err(bad(
                    path,
                    format!("header line {line:?} is not `field: value`"),
                ));
            };
            if value.starts_with('=') {
                continue; // a key/value pair: free text, nothing ct3d reads
            }
            let field = field.trim().to_ascii_lowercase();
            let field = match field.as_str() {
                "byteskip" => "byte skip".to_owned(),
                "lineskip" => "line skip".to_owned(),
                "datafile" => "data file".to_owned(),
                _ => field,
            };
            if fields
                .insert(field.clone(), value.trim().to_owned())
                .is_some()
            {
                return Err(bad(path, format!("header field {field:?} is given twice")));
            }
        }
        let field = |name: &str| fields.get(name).map(String::as_str);
        let required = |name: &str| {
            field(name).ok_or_else(|| bad(path, format!("the header has no {name:?} field")))
        };
        let malformed =
            |name: &str, value: &str| bad(path, format!("malformed {name:?} field: {value:?}"));

        // Samples.
        let type_name = required("type")?;
        let element = match type_name.to_ascii_lowercase().as_str() {
            "block" => {
                return Err(FormatError::Unsupported {
                    path: path.to_owned(),
                    what: "type \"block\"".to_owned(),
                    supported: "ct3d reads integer, float and double samples",
                });
            }
            name => element_type(name).ok_or_else(|| malformed("type", type_name))?,
        };
        let encoding = required("encoding")?;
        let packing = match encoding.to_ascii_lowercase().as_str() {
            "raw" => Packing::Raw,
            "gzip" | "gz" => Packing::Gzip,
            _ => {
                return Err(FormatError::Unsupported {
                    path: path.to_owned(),
                    what: format!("encoding {encoding:?}"),
                    supported: "ct3d reads raw and gzip NRRD data",
                });
            }
        };
        let order = match field("endian").map(str::to_ascii_lowercase).as_deref() {
            Some("little") => ByteOrder::Little,
            Some("big") => ByteOrder::Big,
            None if element.size() == 1 => ByteOrder::Little,
            None => return Err(bad(path, "the header has no \"endian\" field")),
            Some(_) => return Err(malformed("endian", field("endian").unwrap_or_default())),
        };

        // Shape.
        let dimension_text = required("dimension")?;
        let dimension: usize = dimension_text
            .parse()
            .map_err(|_| malformed("dimension", dimension_text))?;
        let sizes_text = required("sizes")?;
        let sizes: Vec<u64> = numbers(sizes_text)
            .filter(|s: &Vec<u64>| s.len() == dimension && s.iter().all(|&n| n > 0))
            .ok_or_else(|| {
                bad(
                    path,
                    format!("\"sizes\" {sizes_text:?} is not {dimension} positive whole numbers"),
                )
            })?;
        let directions = match field("space directions") {
            Some(value) => Some(
                parse_directions(value)
                    .filter(|d| d.len() == dimension)
                    .ok_or_else(|| malformed("space directions", value))?,
            ),
            None => None,
        };
        let spacings = match field("spacings") {
            Some(value) => Some(
                numbers::<f64>(value)
                    .filter(|s| s.len() == dimension)
                    .ok_or_else(|| malformed("spacings", value))?,
            ),
            None => None,
        };
        let dropped = dropped_axis(path, &sizes, directions.as_deref(), spacings.as_deref())?;
        let axes: Vec<usize> = (0..dimension).filter(|&a| Some(a) != dropped).collect();
        let shape = [sizes[axes[0]], sizes[axes[1]], sizes[axes[2]]];

        // Geometry.
        if let Some(value) = field("space dimension")
            && value != "3"
        {
            return Err(FormatError::Unsupported {
                path: path.to_owned(),
                what: format!("space dimension {value}"),
                supported: "ct3d reads volumes in 3-D space",
            });
        }
        let signs = space_signs(path, field("space"))?;
        let origin = match field("space origin") {
            Some(value) => value
                .trim()
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .and_then(parse_vector)
                .ok_or_else(|| malformed("space origin", value))?,
            None => [0.0; 3],
        };
        let mut columns = [[0.0f64; 3]; 3];
        let mut spacing = [1.0f64; 3];
        for (k, &axis) in axes.iter().enumerate() {
            if let Some(directions) = &directions {
                let Some(vector) = directions[axis] else {
                    return Err(FormatError::InvalidGeometry {
                        path: path.to_owned(),
                        reason: format!("space direction of spatial axis {axis} is none"),
                    });
                };
                columns[k] = vector;
                spacing[k] = vector.iter().map(|v| v * v).sum::<f64>().sqrt();
            } else {
                // ITK's rule for the old field: a missing or nan spacing is 1 mm.
                let step = spacings
                    .as_ref()
                    .map(|s| s[axis])
                    .filter(|s| !s.is_nan())
                    .unwrap_or(1.0);
                columns[k][k] = step;
                spacing[k] = step.abs();
            }
        }
        check_geometry(
            path,
            &columns,
            &origin,
            "space directions, spacings or origin",
        )?;
        for column in columns.iter_mut() {
            for (value, sign) in column.iter_mut().zip(signs) {
                *value *= sign;
            }
        }
        let origin = [0, 1, 2].map(|k| origin[k] * signs[k]);
        let affine = raw::ras_affine(columns, origin);

        // Where the data is.
        let skip_text = field("byte skip").unwrap_or("0");
        let skip = match skip_text.parse::<i64>() {
            Ok(-1) => Skip::ToEnd,
            Ok(n) if n >= 0 => Skip::Bytes(n as u64),
            _ => return Err(malformed("byte skip", skip_text)),
        };
        let line_skip_text = field("line skip").unwrap_or("0");
        let line_skip: u64 = line_skip_text
            .parse()
            .map_err(|_| malformed("line skip", line_skip_text))?;
        let (detached, data_file, offset) = match field("data file") {
            Some(name) => {
                let tokens: Vec<&str> = name.split_whitespace().collect();
                if name.eq_ignore_ascii_case("list")
                    || tokens
                        .first()
                        .is_some_and(|t| t.eq_ignore_ascii_case("list"))
                    || (tokens.len() >= 4 && tokens[0].contains('%'))
                {
                    return Err(FormatError::Unsupported {
                        path: path.to_owned(),
                        what: format!("data file {name:?} (data in several files)"),
                        supported: "ct3d reads NRRD data from one file",
                    });
                }
                let data = Path::new(name);
                let data = if data.is_absolute() {
                    data.to_owned()
                } else {
                    path.parent().unwrap_or(Path::new("")).join(data)
                };
                (true, data, 0)
            }
            None if ended => (false, path.to_owned(), data_offset),
            None => {
                return Err(bad(
                    path,
                    "no blank line ends the header and it names no \"data file\"",
                ));
            }
        };
        Ok(Self {
            sizes,
            shape,
            element,
            spacing,
            affine,
            detached,
            data_file: data_file.clone(),
            block: Block {
                file: data_file,
                detached,
                offset,
                line_skip,
                skip,
                packing,
                compressed_len: None,
                element,
                order,
            },
        })
    }
}

/// The axis a 4-D file drops: its one extra axis of size 1 (with no space direction, or a `nan`
/// spacing, when the header gives them). `None` for a 3-D file; other dimensions are refused.
fn dropped_axis(
    path: &Path,
    sizes: &[u64],
    directions: Option<&[Option<[f64; 3]>]>,
    spacings: Option<&[f64]>,
) -> Result<Option<usize>, FormatError> {
    let unsupported = || FormatError::Unsupported {
        path: path.to_owned(),
        what: format!("{}-D image of sizes {sizes:?}", sizes.len()),
        supported: "ct3d reads 3-D volumes (and 4-D files whose one extra axis has size 1)",
    };
    match sizes.len() {
        3 => Ok(None),
        4 => {
            let candidates: Vec<usize> = (0..4)
                .filter(|&a| sizes[a] == 1)
                .filter(|&a| match (directions, spacings) {
                    (Some(d), _) => d[a].is_none(),
                    (None, Some(s)) => s[a].is_nan(),
                    (None, None) => true,
                })
                .collect();
            match candidates[..] {
                [axis] => Ok(Some(axis)),
                _ => Err(unsupported()),
            }
        }
        _ => Err(unsupported()),
    }
}
