//! # ct3d
//!
//! The parts of ct3d above single volumes: dataset splits, metrics, and (as they land) training,
//! evaluation, prediction, pictures and the HTML report. The `ct3d` binary is a thin command-line layer over this
//! library and over `ct3d-volume`.

pub mod callbacks;
pub mod cv;
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
