//! # ct3d
//!
//! The parts of ct3d above single volumes: dataset splits, metrics, and (as they land) training,
//! evaluation, prediction, pictures and the HTML report. The `ct3d` binary is a thin command-line layer over this
//! library and over `ct3d-volume`.

pub mod callbacks;
pub mod cv;
pub mod demo;
pub mod evaluate;
pub mod folds;
pub mod history;
pub mod loader;
pub mod metrics;
pub mod pictures;
pub mod report;
pub mod resources;
pub mod run;
pub mod split;
pub mod train;

#[cfg(test)]
mod tests {
    /// The library speaks in its own types; flags and clap belong to the binary (main.rs and the
    /// `*_commands.rs` files), which converts its value enums into the library's.
    #[test]
    fn the_library_does_not_use_clap() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        let modules: Vec<&str> = lib
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
            .collect();
        assert!(modules.contains(&"evaluate"), "{modules:?}");
        for module in modules {
            let path = src.join(format!("{module}.rs"));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("clap"), "{} uses clap", path.display());
        }
    }
}
