//! The one font every chart uses, compiled in so that pictures look the same everywhere and need
//! no fontconfig or system fonts.

use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::PlotError;

/// The family name charts ask plotters for.
pub(crate) const FAMILY: &str = "sans-serif";

/// DejaVu Sans (Bitstream Vera license, see `assets/DejaVuSans-LICENSE.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the font with plotters once per process.
pub(crate) fn ensure_registered() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Draw(
            "the embedded DejaVu Sans font does not parse".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_font_registers() {
        super::ensure_registered().unwrap();
        super::ensure_registered().unwrap();
    }
}
