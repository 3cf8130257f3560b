//! MetaImage (ITK's MetaIO) as a [`ScanFormat`]: `.mha` (header and data in one file) and
//! `.mhd` (a header whose `ElementDataFile` names the data), read as SimpleITK reads them.
//!
//! # What is read
//! - **Header**: `Key = Value` lines (keys in any case) up to `ElementDataFile`, which MetaIO
//!   requires to be the last field. `ObjectType` must be `Image` when given; `NDims = 3`;
//!   `ElementNumberOfChannels` 1; `BinaryData` true (ASCII data is refused).
//! - **Samples**: `ElementType` `MET_CHAR`, `MET_UCHAR`, `MET_SHORT`, `MET_USHORT`, `MET_INT`,
//!   `MET_UINT`, `MET_LONG`, `MET_ULONG` (32-bit in MetaIO, whatever C's `long` is),
//!   `MET_LONG_LONG`, `MET_ULONG_LONG`, `MET_FLOAT`, `MET_DOUBLE`; byte order from
//!   `BinaryDataByteOrderMSB` or `ElementByteOrderMSB` (little-endian when absent);
//!   `CompressedData = True` is a zlib stream (as ITK writes it; SimpleITK cannot read a gzip
//!   stream there, so ct3d refuses one as corrupt), `CompressedDataSize` bounding it when given. Values become `f32` as
//!   `astype(np.float32)` does; no scaling is applied.
//! - **Data**: `ElementDataFile = LOCAL` (the bytes after that line), a file name (relative to the
//!   header's folder), or `LIST` followed by one file name per slice, each holding one raw
//!   `x`×`y` slice. `HeaderSize` skips bytes at the start of a raw data file; `-1` means the data
//!   is the end of the file. The `%d` file-pattern form and compressed `LIST`s are refused.
//! - **Geometry**, as ITK's `MetaImageIO`: `ElementSpacing` (else `ElementSize`, else 1 mm),
//!   origin `Offset` (or `Position`, `Origin`), direction cosines `TransformMatrix` (or
//!   `Rotation`, `Orientation`), whose numbers list the **columns** of ITK's direction matrix one
//!   after the other: numbers `3i..3i+3` are voxel axis `i`'s direction. All are LPS, so the RAS+
//!   affine is `[D · diag(spacing) | origin]` with its first two rows negated.
//!   `AnatomicalOrientation` is ignored, as ITK ignores it on reading (its writer fills it in
//!   from the direction matrix only as a hint). A negative spacing flips its axis' direction, as
//!   ITK does; a zero spacing is refused, as ITK refuses it.
//!
//! Sizes are checked against the data file's length (compressed: against what its length can
//! decompress to) and ct3d's voxel limit before anything is allocated; every error is one line
//! beginning with the header's path.

use std::io;
use std::path::{Path, PathBuf};

use super::raw::{
    self, Block, ElementType, FormatError, Packing, Skip, bad, check_geometry, has_extension,
    header_beside, numbers, open_header,
};
use super::{Recognition, ScanError, ScanFiles, ScanFormat};
use crate::Volume;
use crate::nifti::ByteOrder;
use crate::volume::Provenance;

/// The MetaImage format (see the module docs).
pub(super) struct MetaImage;

/// The names (lowercase) dataset folders list as MetaImage scans.
const LISTED_EXTENSIONS: [&str; 2] = [".mha", ".mhd"];

impl ScanFormat for MetaImage {
    fn name(&self) -> &'static str {
        "MetaImage"
    }

    fn listed_as(&self) -> &'static str {
        "*.mha, *.mhd"
    }

    /// A file named `*.mha` or `*.mhd` is a scan; `x.raw` or `x.zraw` beside an `x.mhd` is part
    /// of one (its data), never listed.
    fn recognize(&self, path: &Path) -> Recognition {
        if !path.is_file() {
            Recognition::No
        } else if has_extension(path, &LISTED_EXTENSIONS) {
            Recognition::Scan
        } else if header_beside(path, &["mhd"]).is_some() {
            Recognition::Part
        } else {
            Recognition::No
        }
    }

    fn read(&self, path: &Path, _series: Option<&str>) -> Result<Volume, ScanError> {
        read_metaimage(path).map_err(|e| ScanError::Format(Box::new(e)))
    }

    /// The header, then its data files when they are separate (and exist: a missing one is the
    /// reader's error to report).
    fn files(&self, path: &Path) -> io::Result<ScanFiles> {
        match Header::read(path) {
            Ok(header) if !header.blocks.is_empty() && header.blocks[0].detached => {
                let data: Vec<PathBuf> = header.blocks.into_iter().map(|b| b.file).collect();
                if data.iter().all(|file| file.is_file()) {
                    Ok(ScanFiles::Files(
                        std::iter::once(path.to_owned()).chain(data).collect(),
                    ))
                } else {
                    Ok(ScanFiles::Single)
                }
            }
            _ => Ok(ScanFiles::Single),
        }
    }
}

/// Reads a MetaImage (`.mha`, or an `.mhd` and its data) into a [`Volume`]: `[x, y, z]` with
/// `x` fastest (`DimSize`'s order), spacing in mm, affine voxel → RAS+ mm (see the
/// [module documentation](self)).
pub fn read_metaimage(path: &Path) -> Result<Volume, FormatError> {
    if !has_extension(path, &LISTED_EXTENSIONS)
        && let Some(header) = header_beside(path, &["mhd"])
    {
        return Err(FormatError::DataFileGiven {
            path: path.to_owned(),
            header,
        });
    }
    let header = Header::read(path)?;
    let (count, _) = raw::sample_bytes(path, &header.shape, header.element)?;
    let per_block = count / header.blocks.len();
    let planned = header
        .blocks
        .into_iter()
        .map(|block| block.plan(path, per_block))
        .collect::<Result<Vec<_>, _>>()?;
    let data = raw::read_blocks(path, &planned, count)?;
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
    shape: [u64; 3],
    element: ElementType,
    spacing: [f64; 3],
    affine: crate::Affine,
    /// The whole volume, or one block per slice for a `LIST`.
    blocks: Vec<Block>,
}

/// MetaIO's sample type names.
fn element_type(name: &str) -> Option<ElementType> {
    use ElementType::*;
    Some(match name {
        "MET_CHAR" => I8,
        "MET_UCHAR" => U8,
        "MET_SHORT" => I16,
        "MET_USHORT" => U16,
        // MetaIO's MET_LONG is 4 bytes on every platform (its type-size table says so, and ITK
        // writes 64-bit images as MET_LONG_LONG).
        "MET_INT" | "MET_LONG" => I32,
        "MET_UINT" | "MET_ULONG" => U32,
        "MET_LONG_LONG" => I64,
        "MET_ULONG_LONG" => U64,
        "MET_FLOAT" => F32,
        "MET_DOUBLE" => F64,
        _ => return None,
    })
}

/// A MetaIO boolean.
fn boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" => Some(true),
        "false" | "f" | "0" => Some(false),
        _ => None,
    }
}

impl Header {
    fn read(path: &Path) -> Result<Self, FormatError> {
        let (file, _) = open_header(path, "a MetaImage")?;
        let mut invalid: Option<String> = None;
        let mut data_value: Option<String> = None;
        let (lines, data_offset, found) = raw::header_lines(path, file, |line| {
            if line.trim().is_empty() {
                return false;
            }
            match line.split_once('=') {
                Some((key, value)) if key.trim().eq_ignore_ascii_case("ElementDataFile") => {
                    data_value = Some(value.trim().to_owned());
                    true
                }
                Some(_) => false,
                None => {
                    invalid = Some(line.chars().take(60).collect());
                    true
                }
            }
        })?;
        if let Some(line) = invalid {
            let binary = line
                .chars()
                .any(|c| c == char::REPLACEMENT_CHARACTER || (c.is_control() && c != '\t'));
            return Err(bad(
                path,
                if binary {
                    "not a MetaImage header: binary data before any ElementDataFile line".to_owned()
                } else {
                    format!("not a MetaImage header: line {line:?} is not `Key = Value`")
                },
            ));
        }
        let (true, Some(data_value)) = (found, data_value) else {
            return Err(bad(path, "the header has no ElementDataFile line"));
        };

        // Keys in any case; a key given twice is ambiguous.
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in lines.iter().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line.split_once('=').expect("checked while reading");
            let key = key.trim().to_ascii_lowercase();
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(bad(path, format!("header field {:?} is given twice", key)));
            }
            fields.push((key, value.trim().to_owned()));
        }
        let field = |name: &str| {
            let name = name.to_ascii_lowercase();
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        let first_of = |names: &[&str]| names.iter().find_map(|name| field(name));
        let malformed = |name: &str, value: &str| bad(path, format!("malformed {name}: {value:?}"));
        let unsupported = |what: String, supported: &'static str| FormatError::Unsupported {
            path: path.to_owned(),
            what,
            supported,
        };

        if let Some(kind) = field("ObjectType")
            && !kind.eq_ignore_ascii_case("image")
        {
            return Err(unsupported(
                format!("ObjectType {kind:?}"),
                "ct3d reads MetaImage images",
            ));
        }
        let ndims_text = field("NDims").ok_or_else(|| bad(path, "the header has no NDims"))?;
        let ndims: usize = ndims_text
            .parse()
            .map_err(|_| malformed("NDims", ndims_text))?;
        if ndims != 3 {
            return Err(unsupported(
                format!("NDims = {ndims}"),
                "ct3d reads 3-D volumes",
            ));
        }
        if let Some(channels) = field("ElementNumberOfChannels")
            && channels != "1"
        {
            return Err(unsupported(
                format!("ElementNumberOfChannels = {channels}"),
                "ct3d reads scalar volumes (one channel)",
            ));
        }
        if let Some(binary) = field("BinaryData")
            && boolean(binary) == Some(false)
        {
            return Err(unsupported(
                "ASCII data (BinaryData = False)".to_owned(),
                "ct3d reads binary MetaImage data",
            ));
        }
        let dims_text = field("DimSize").ok_or_else(|| bad(path, "the header has no DimSize"))?;
        let shape: [u64; 3] = numbers::<u64>(dims_text)
            .filter(|d| d.iter().all(|&n| n > 0))
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| {
                bad(
                    path,
                    format!("DimSize {dims_text:?} is not 3 positive whole numbers"),
                )
            })?;
        let type_text =
            field("ElementType").ok_or_else(|| bad(path, "the header has no ElementType"))?;
        let element = element_type(type_text.trim()).ok_or_else(|| {
            unsupported(
                format!("ElementType {type_text}"),
                "ct3d reads MET_CHAR, MET_UCHAR, MET_SHORT, MET_USHORT, MET_INT, MET_UINT, \
                 MET_LONG, MET_ULONG, MET_LONG_LONG, MET_ULONG_LONG, MET_FLOAT and MET_DOUBLE",
            )
        })?;
        let order = match first_of(&["BinaryDataByteOrderMSB", "ElementByteOrderMSB"]) {
            Some(value) => match boolean(value) {
                Some(true) => ByteOrder::Big,
                Some(false) => ByteOrder::Little,
                None => return Err(malformed("BinaryDataByteOrderMSB", value)),
            },
            None => ByteOrder::Little,
        };
        let compressed = match field("CompressedData") {
            Some(value) => boolean(value).ok_or_else(|| malformed("CompressedData", value))?,
            None => false,
        };
        let compressed_len = match field("CompressedDataSize") {
            Some(value) if compressed => Some(
                value
                    .parse::<u64>()
                    .map_err(|_| malformed("CompressedDataSize", value))?,
            ),
            _ => None,
        };
        let header_size = match field("HeaderSize") {
            Some(value) => match value.parse::<i64>() {
                Ok(-1) => Skip::ToEnd,
                Ok(n) if n >= 0 => Skip::Bytes(n as u64),
                _ => return Err(malformed("HeaderSize", value)),
            },
            None => Skip::Bytes(0),
        };

        // Geometry, as ITK's MetaImageIO builds it.
        let vector = |names: &[&str], default: [f64; 3]| -> Result<[f64; 3], FormatError> {
            match first_of(names) {
                Some(value) => numbers::<f64>(value)
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| malformed(names[0], value)),
                None => Ok(default),
            }
        };
        let spacing = vector(&["ElementSpacing", "ElementSize"], [1.0; 3])?;
        if spacing.contains(&0.0) {
            return Err(FormatError::InvalidGeometry {
                path: path.to_owned(),
                reason: format!("ElementSpacing {spacing:?} has a zero spacing"),
            });
        }
        let origin = vector(&["Offset", "Position", "Origin"], [0.0; 3])?;
        let names = ["TransformMatrix", "Rotation", "Orientation"];
        let direction: [f64; 9] = match first_of(&names) {
            Some(value) => numbers::<f64>(value)
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| malformed("TransformMatrix", value))?,
            None => [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        };
        // TransformMatrix lists the direction matrix's columns: ITK writes
        // `matrix[i * 3 + j] = direction(j, i)` and reads it back the same way.
        let columns: [[f64; 3]; 3] =
            std::array::from_fn(|i| std::array::from_fn(|j| direction[i * 3 + j] * spacing[i]));
        check_geometry(
            path,
            &columns,
            &origin,
            "TransformMatrix, ElementSpacing or Offset",
        )?;
        let affine = raw::lps_affine(columns, origin);

        // Where the data is.
        let block = |file: PathBuf, detached: bool, offset: u64, skip: Skip| Block {
            file,
            detached,
            offset,
            line_skip: 0,
            skip,
            packing: if compressed {
                Packing::Zlib
            } else {
                Packing::Raw
            },
            compressed_len,
            element,
            order,
        };
        let beside = |name: &str| {
            let data = Path::new(name);
            if data.is_absolute() {
                data.to_owned()
            } else {
                path.parent().unwrap_or(Path::new("")).join(data)
            }
        };
        let tokens: Vec<&str> = data_value.split_whitespace().collect();
        let header_size_unsupported = |where_: &str| {
            unsupported(
                format!("HeaderSize with {where_}"),
                "ct3d reads HeaderSize only for an uncompressed data file",
            )
        };
        let blocks = match tokens.first().map(|t| t.to_ascii_uppercase()).as_deref() {
            None => return Err(bad(path, "ElementDataFile is empty")),
            Some("LOCAL") => {
                if header_size != Skip::Bytes(0) {
                    return Err(header_size_unsupported("LOCAL data"));
                }
                vec![block(path.to_owned(), false, data_offset, Skip::Bytes(0))]
            }
            Some("LIST") => {
                if compressed || header_size != Skip::Bytes(0) {
                    return Err(unsupported(
                        "a compressed LIST or one with HeaderSize".to_owned(),
                        "ct3d reads a LIST of uncompressed 2-D slice files",
                    ));
                }
                if tokens.get(1).is_some_and(|t| !t.eq_ignore_ascii_case("2D")) {
                    return Err(unsupported(
                        format!("ElementDataFile = {data_value}"),
                        "ct3d reads a LIST of 2-D slice files",
                    ));
                }
                list_blocks(path, data_offset, shape[2])?
                    .iter()
                    .map(|name| block(beside(name), true, 0, Skip::Bytes(0)))
                    .collect()
            }
            Some(_) if tokens.len() >= 4 && tokens[0].contains('%') => {
                return Err(unsupported(
                    format!("ElementDataFile = {data_value} (a file-name pattern)"),
                    "ct3d reads one data file, LOCAL data or a LIST of slice files",
                ));
            }
            Some(_) => {
                if compressed && header_size != Skip::Bytes(0) {
                    return Err(header_size_unsupported("compressed data"));
                }
                vec![block(beside(&data_value), true, 0, header_size)]
            }
        };
        Ok(Self {
            shape,
            element,
            spacing: spacing.map(f64::abs),
            affine,
            blocks,
        })
    }
}

/// The slice file names after `ElementDataFile = LIST` (whitespace-separated, as MetaIO reads
/// them): exactly `slices` of them.
fn list_blocks(path: &Path, offset: u64, slices: u64) -> Result<Vec<String>, FormatError> {
    use std::io::{Seek, SeekFrom};
    let (mut file, len) = open_header(path, "a MetaImage")?;
    let lines = if offset < len {
        file.seek(SeekFrom::Start(offset))
            .map_err(|source| FormatError::Io {
                path: path.to_owned(),
                what: "the header".to_owned(),
                source,
            })?;
        raw::header_lines(path, file, |_| false)?.0
    } else {
        Vec::new()
    };
    let names: Vec<String> = lines
        .iter()
        .flat_map(|line| line.split_whitespace())
        .map(str::to_owned)
        .collect();
    if names.len() as u64 != slices {
        return Err(bad(
            path,
            format!(
                "ElementDataFile = LIST names {} files but DimSize has {slices} slices",
                names.len()
            ),
        ));
    }
    Ok(names)
}
