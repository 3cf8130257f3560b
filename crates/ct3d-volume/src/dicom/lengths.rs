//! A walk over a DICOM file's element headers that checks every declared value length against
//! the bytes that follow it, before dicom-rs parses the file.
//!
//! Why: dicom-rs (0.10) allocates and zero-fills a value's declared length before reading it,
//! so a 1 KiB file that declares a 4 GiB element costs 4 GiB of memory (found by fuzzing the
//! series reader: `fuzz/regressions/dicom_series/`). No declared length can exceed the file,
//! so checking that bound first costs one pass over the element headers (not the values) and
//! refuses such a file with one line instead.
//!
//! The walk follows the file meta group (explicit VR little endian) and then the data set in its
//! transfer syntax (implicit VR little endian, explicit VR big endian, else explicit VR little
//! endian), into sequences and items of defined and undefined length. It stops quietly where
//! the parser would fail anyway (a truncated element header) or cannot be followed (a deflated
//! data set), leaving the error to dicom-rs.

use dicom_core::VR;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::Tag;

/// A length of `0xFFFF_FFFF`: the value runs to a delimiter.
const UNDEFINED: u32 = u32::MAX;
/// Sequences nested deeper than this are refused (the walk recurses once per level).
const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy, PartialEq)]
enum Syntax {
    ExplicitLittle,
    ImplicitLittle,
    ExplicitBig,
}

/// `Err(one line)` when an element of `bytes` (a whole DICOM file, with or without the 128-byte
/// preamble and `DICM`) declares a value longer than what follows it, or sequences nest deeper
/// than 64 levels.
pub(super) fn check(bytes: &[u8]) -> Result<(), String> {
    let start = if bytes.get(128..132) == Some(b"DICM") {
        132
    } else {
        0
    };
    let mut walk = Walk {
        bytes,
        syntax: Syntax::ExplicitLittle,
        transfer_syntax: None,
    };
    let Some(data_set) = walk.meta_group(start)? else {
        return Ok(());
    };
    let uid = walk.transfer_syntax.take().unwrap_or_default();
    walk.syntax = match uid.as_str() {
        "1.2.840.10008.1.2" => Syntax::ImplicitLittle,
        "1.2.840.10008.1.2.2" => Syntax::ExplicitBig,
        // Deflated: the data set is a zlib stream, not element headers.
        "1.2.840.10008.1.2.1.99" => return Ok(()),
        _ => Syntax::ExplicitLittle,
    };
    walk.elements(data_set, bytes.len(), 0).map(|_| ())
}

struct Walk<'a> {
    bytes: &'a [u8],
    syntax: Syntax,
    transfer_syntax: Option<String>,
}

/// An element header: its tag, its value's length and where the value starts.
struct Element {
    tag: Tag,
    sequence: bool,
    length: u32,
    value: usize,
    /// Bytes per number for the fixed-size numeric VRs (1 for the others). dicom-rs reads
    /// `length / unit` numbers, so a length that is not a multiple of the unit leaves the rest
    /// unread and the next header is read from there; the walk must follow the same bytes.
    unit: usize,
}

/// [`Element::unit`] of a VR (PS3.5 6.2), as dicom-rs's value readers use it.
fn unit(vr: VR) -> usize {
    match vr {
        VR::US | VR::SS | VR::OW => 2,
        VR::AT | VR::UL | VR::SL | VR::FL | VR::OF | VR::OL => 4,
        VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => 8,
        _ => 1,
    }
}

impl Walk<'_> {
    fn u16_at(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at + 2)?.try_into().ok()?;
        Some(match self.syntax {
            Syntax::ExplicitBig => u16::from_be_bytes(b),
            _ => u16::from_le_bytes(b),
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(match self.syntax {
            Syntax::ExplicitBig => u32::from_be_bytes(b),
            _ => u32::from_le_bytes(b),
        })
    }

    /// The element header at `at`, or `None` where it is truncated.
    fn header(&self, at: usize) -> Option<Element> {
        let tag = Tag(self.u16_at(at)?, self.u16_at(at + 2)?);
        // Items and delimiters have no VR in any syntax.
        if tag.0 == 0xFFFE || self.syntax == Syntax::ImplicitLittle {
            let length = self.u32_at(at + 4)?;
            // Implicit VR: the dictionary's VR (relaxed as dicom-rs relaxes it), UN if unknown.
            let vr = (tag.0 != 0xFFFE)
                .then(|| StandardDataDictionary.by_tag(tag).map(|e| e.vr()))
                .flatten()
                .map_or(VR::UN, VirtualVr::relaxed);
            let sequence = tag.0 != 0xFFFE && (length == UNDEFINED || vr == VR::SQ);
            return Some(Element {
                tag,
                sequence,
                length,
                value: at + 8,
                unit: unit(vr),
            });
        }
        let vr_bytes: [u8; 2] = self.bytes.get(at + 4..at + 6)?.try_into().ok()?;
        let vr = VR::from_binary(vr_bytes).unwrap_or(VR::UN);
        let vr_bytes = &vr_bytes[..];
        // The VRs with a 2-byte length (PS3.5 7.1.2); every other one, and an unknown VR (read
        // as UN, as dicom-rs does), has 2 reserved bytes and a 4-byte length.
        let short = matches!(
            vr_bytes,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FL"
                | b"FD"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        );
        let long = !short;
        Some(if long {
            Element {
                tag,
                sequence: vr == VR::SQ,
                length: self.u32_at(at + 8)?,
                value: at + 12,
                unit: unit(vr),
            }
        } else {
            Element {
                tag,
                sequence: false,
                length: u32::from(self.u16_at(at + 6)?),
                value: at + 8,
                unit: unit(vr),
            }
        })
    }

    /// Walks the file meta group from `at` as dicom-rs reads it: `(0002,0000)` gives the group's
    /// length, and whole elements (explicit VR little endian, of any group) are read until that
    /// many bytes are consumed, remembering the transfer syntax. Returns where the data set
    /// starts (`None`: the parser stops before it).
    fn meta_group(&mut self, at: usize) -> Result<Option<usize>, String> {
        let Some(first) = self.header(at) else {
            return Ok(None);
        };
        if first.tag != Tag(0x0002, 0x0000) || first.length != 4 {
            return Ok(None);
        }
        let Some(group_length) = self.u32_at(first.value) else {
            return Ok(None);
        };
        let start = first.value + 4;
        let mut at = start;
        while at - start < group_length as usize {
            let Some(element) = self.header(at) else {
                return Ok(None);
            };
            if element.length == UNDEFINED {
                return Ok(None);
            }
            let end = self.value_end(&element)?;
            if element.tag == Tag(0x0002, 0x0010) {
                let text = String::from_utf8_lossy(&self.bytes[element.value..end]);
                self.transfer_syntax = Some(text.trim_end_matches(['\0', ' ']).trim().to_owned());
            }
            at = end;
        }
        Ok(Some(at))
    }

    /// The end of `element`'s defined-length value, refused when it runs past the file.
    fn value_end(&self, element: &Element) -> Result<usize, String> {
        let left = self.bytes.len().saturating_sub(element.value);
        if element.length as usize > left {
            return Err(format!(
                "element ({:04X},{:04X}) declares {} bytes but only {left} follow it",
                element.tag.0, element.tag.1, element.length
            ));
        }
        Ok(element.value + element.length as usize)
    }

    /// Where the parser reads the next header after `element`'s defined-length value (see
    /// [`Element::unit`]), once the declared length is checked against the file.
    fn next_after(&self, element: &Element) -> Result<usize, String> {
        self.value_end(element)?;
        let length = element.length as usize;
        Ok(element.value + length - length % element.unit)
    }

    /// Walks the fragments of encapsulated pixel data from `at`: defined-length items up to the
    /// sequence delimiter; returns where the walk stopped. Anything else (an undefined-length
    /// `UN` value, say) ends the check there.
    fn fragments(&self, mut at: usize, end: usize) -> Result<usize, String> {
        while at < end {
            let Some(item) = self.header(at) else {
                return Ok(end);
            };
            match (item.tag.0, item.tag.1) {
                (0xFFFE, 0xE0DD) => return Ok(item.value),
                (0xFFFE, 0xE000) if item.length != UNDEFINED => at = self.value_end(&item)?,
                _ => return Ok(end),
            }
        }
        Ok(at)
    }

    /// Walks elements from `at` up to `end`, or up to an item or sequence delimiter; returns
    /// where the walk stopped (after the delimiter).
    fn elements(&self, mut at: usize, end: usize, depth: usize) -> Result<usize, String> {
        if depth > MAX_DEPTH {
            return Err(format!("sequences nest deeper than {MAX_DEPTH} levels"));
        }
        while at < end {
            let Some(element) = self.header(at) else {
                return Ok(end);
            };
            match (element.tag.0, element.tag.1) {
                // Item and sequence delimiters end an undefined-length item or sequence.
                (0xFFFE, 0xE00D) | (0xFFFE, 0xE0DD) => return Ok(element.value),
                (0xFFFE, 0xE000) if element.length == UNDEFINED => {
                    at = self.elements(element.value, end, depth + 1)?;
                }
                (0xFFFE, 0xE000) => {
                    let item_end = self.value_end(&element)?;
                    self.elements(element.value, item_end, depth + 1)?;
                    at = item_end;
                }
                _ if element.length == UNDEFINED && element.sequence => {
                    at = self.elements(element.value, end, depth + 1)?;
                }
                _ if element.length == UNDEFINED => {
                    // Encapsulated pixel data: fragments (items of raw bytes), not data sets.
                    at = self.fragments(element.value, end)?;
                }
                _ if element.sequence => {
                    let value_end = self.value_end(&element)?;
                    self.elements(element.value, value_end, depth + 1)?;
                    at = value_end;
                }
                _ => at = self.next_after(&element)?,
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An explicit VR little endian element.
    fn element(
        group: u16,
        number: u16,
        vr: &[u8; 2],
        value: &[u8],
        length: Option<u32>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(group.to_le_bytes());
        out.extend(number.to_le_bytes());
        out.extend(vr);
        let length = length.unwrap_or(value.len() as u32);
        if !matches!(vr, b"UI" | b"US" | b"UL" | b"DS" | b"CS") {
            out.extend([0, 0]);
            out.extend(length.to_le_bytes());
        } else {
            out.extend((length as u16).to_le_bytes());
        }
        out.extend(value);
        out
    }

    fn file(data_set: &[u8]) -> Vec<u8> {
        let ts = element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0", None);
        let mut out = vec![0u8; 128];
        out.extend(b"DICM");
        let group_length = (ts.len() as u32).to_le_bytes();
        out.extend(element(0x0002, 0x0000, b"UL", &group_length, None));
        out.extend(ts);
        out.extend(data_set);
        out
    }

    #[test]
    fn honest_lengths_pass_and_a_lying_one_is_named() {
        let good = file(&element(0x0028, 0x0010, b"US", &[4, 0], None));
        assert_eq!(check(&good), Ok(()));
        let bomb = file(&element(
            0x0009,
            0x0010,
            b"OB",
            &[1, 2, 3, 4],
            Some(0x4000_0000),
        ));
        let err = check(&bomb).unwrap_err();
        assert_eq!(
            err,
            "element (0009,0010) declares 1073741824 bytes but only 4 follow it"
        );
    }

    #[test]
    fn lies_inside_sequences_and_items_are_found() {
        // An undefined-length sequence holding an undefined-length item holding the bomb.
        let mut inner = element(0x0009, 0x1001, b"OB", &[0; 2], Some(1 << 30));
        let mut sequence = element(0x0008, 0x1140, b"SQ", &[], Some(UNDEFINED));
        sequence.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        sequence.append(&mut inner);
        assert!(check(&file(&sequence)).unwrap_err().contains("(0009,1001)"));
        // A defined-length sequence is walked too.
        let value = element(0x0009, 0x1001, b"OB", &[], Some(1 << 30));
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend((value.len() as u32).to_le_bytes());
        item.extend(&value);
        let defined = element(0x0008, 0x1140, b"SQ", &item, None);
        assert!(check(&file(&defined)).unwrap_err().contains("(0009,1001)"));
    }

    #[test]
    fn an_unknown_vr_has_a_four_byte_length_as_the_parser_reads_it() {
        // "DW" is no VR: dicom-rs reads it as UN, with a 4-byte length after 2 reserved bytes.
        let mut bogus = Vec::new();
        bogus.extend(0x0028u16.to_le_bytes());
        bogus.extend(0x1053u16.to_le_bytes());
        bogus.extend(b"DW");
        bogus.extend([2, 0]);
        bogus.extend(0x7FFF_0000u32.to_le_bytes());
        bogus.extend([0; 8]);
        assert!(
            check(&file(&bogus))
                .unwrap_err()
                .contains("(0028,1053) declares 2147418112")
        );
    }

    #[test]
    fn a_number_list_of_odd_length_shifts_the_next_header_as_the_parser_does() {
        // A UL of 26 bytes: dicom-rs reads 6 numbers (24 bytes) and the next header 2 bytes
        // early, where these bytes spell an OB of 1 GiB.
        let mut value = vec![0u8; 24];
        value.extend([0x09, 0x00]);
        let mut data = element(0x0008, 0x0016, b"UL", &value, None);
        // The next header as the parser sees it starts at the last 2 bytes of the UL value.
        data.extend([0x10, 0x00, b'O', b'B', 0, 0]);
        data.extend((1u32 << 30).to_le_bytes());
        data.extend([0; 4]);
        let err = check(&file(&data)).unwrap_err();
        assert!(err.contains("(0009,0010) declares 1073741824"), "{err}");
    }

    #[test]
    fn the_meta_group_ends_where_its_group_length_says() {
        // A group length that takes in a zero element after the transfer syntax: dicom-rs
        // reads that element as meta, and the data set (implicit VR) starts after it.
        let ts = element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2\0", None);
        let filler = element(0x0000, 0x0000, b"\0\0", &[], Some(0));
        let mut out = vec![0u8; 128];
        out.extend(b"DICM");
        out.extend(element(
            0x0002,
            0x0000,
            b"UL",
            &((ts.len() + filler.len()) as u32).to_le_bytes(),
            None,
        ));
        out.extend(&ts);
        out.extend(&filler);
        // Implicit VR: (0009,0010), 4-byte length of 1 GiB.
        out.extend([0x09, 0x00, 0x10, 0x00]);
        out.extend((1u32 << 30).to_le_bytes());
        let err = check(&out).unwrap_err();
        assert!(err.contains("(0009,0010) declares 1073741824"), "{err}");
    }

    #[test]
    fn encapsulated_fragments_are_bytes_not_elements() {
        // Pixel data of undefined length: an empty offset table, then one fragment whose bytes
        // would read as a lying element header if walked as a data set.
        let mut pixels = element(0x7FE0, 0x0010, b"OB", &[], Some(UNDEFINED));
        pixels.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        pixels.extend([0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0]);
        pixels.extend([0xFF, 0xD8, 0xFF, 0xF7, 0xFF, 0xFF, 0xFF, 0x7F]);
        pixels.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(check(&file(&pixels)), Ok(()));
        // A fragment longer than the file is still refused.
        let mut lying = element(0x7FE0, 0x0010, b"OB", &[], Some(UNDEFINED));
        lying.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0x40]);
        assert!(check(&file(&lying)).unwrap_err().contains("(FFFE,E000)"));
    }

    #[test]
    fn deep_nesting_is_refused_and_truncation_is_left_to_the_parser() {
        let mut nested = Vec::new();
        for _ in 0..100 {
            nested.extend(element(0x0008, 0x1140, b"SQ", &[], Some(UNDEFINED)));
            nested.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(
            check(&file(&nested))
                .unwrap_err()
                .contains("deeper than 64")
        );
        let good = file(&element(0x0028, 0x0010, b"US", &[4, 0], None));
        assert_eq!(check(&good[..good.len() - 3]), Ok(()));
        assert_eq!(check(b""), Ok(()));
    }
}
