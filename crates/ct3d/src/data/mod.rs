//! The data side of a run, as burn's guide keeps it apart from the model and the training loop:
//! where the scans come from and how a run records them ([`source`]), preparing them into the
//! cache ([`prepare`]), the train / validation split ([`split`]) and the k-fold assignment of
//! cross-validation ([`folds`]), and the batches the model is fed ([`loader`]).

pub mod folds;
pub mod loader;
pub mod prepare;
pub mod source;
pub mod split;
