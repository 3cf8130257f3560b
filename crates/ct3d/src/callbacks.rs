//! The Keras example's two callbacks as a small state machine, so training, resuming and tests
//! share one definition:
//!
//! - `ModelCheckpoint(save_best_only=True)` watches `val_loss` (lower is better) and saves the
//!   weights whenever it strictly improves;
//! - `EarlyStopping(monitor="val_acc", patience=15)` stops once `val_acc` has not strictly
//!   improved for `patience` consecutive epochs.
//!
//! (The example watches different metrics for the two on purpose or not; we reproduce it.)

use serde::{Deserialize, Serialize};

/// What to do after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochDecision {
    /// `val_loss` improved: save these weights as the best.
    pub save_best: bool,
    /// Patience ran out: stop training after this epoch.
    pub stop: bool,
}

/// Checkpoint and early-stopping state; serialisable so a resumed run continues it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackState {
    /// Epochs without improvement of `val_acc` that end training.
    pub patience: usize,
    /// Lowest `val_loss` so far (`+inf` before the first epoch).
    #[serde(with = "crate::json_f64")]
    pub best_val_loss: f64,
    /// 1-based epoch of `best_val_loss` (0 before the first epoch).
    pub best_epoch: usize,
    /// Highest `val_acc` so far (`-inf` before the first epoch).
    #[serde(with = "crate::json_f64")]
    pub best_val_acc: f64,
    /// Consecutive epochs since `val_acc` last improved.
    pub wait: usize,
}

impl CallbackState {
    /// Fresh state for a new run.
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            best_val_loss: f64::INFINITY,
            best_epoch: 0,
            best_val_acc: f64::NEG_INFINITY,
            wait: 0,
        }
    }

    /// Updates the state with epoch `epoch` (1-based) and says whether to save and whether to stop.
    ///
    /// Follows Keras 3: the wait counter is bumped first and reset on a strict improvement; training
    /// stops when it reaches `patience` (never after the very first epoch). A NaN `val_loss` never
    /// counts as an improvement.
    pub fn on_epoch_end(&mut self, epoch: usize, val_loss: f64, val_acc: f64) -> EpochDecision {
        let save_best = val_loss < self.best_val_loss;
        if save_best {
            self.best_val_loss = val_loss;
            self.best_epoch = epoch;
        }
        self.wait += 1;
        let stop = if val_acc > self.best_val_acc {
            self.best_val_acc = val_acc;
            self.wait = 0;
            false
        } else {
            self.wait >= self.patience && epoch > 1
        };
        EpochDecision { save_best, stop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_on_strict_val_loss_improvement_only() {
        let mut s = CallbackState::new(15);
        assert!(s.on_epoch_end(1, 1.0, 0.5).save_best);
        assert!(!s.on_epoch_end(2, 1.0, 0.5).save_best);
        assert!(s.on_epoch_end(3, 0.9, 0.5).save_best);
        assert!(!s.on_epoch_end(4, f64::NAN, 0.5).save_best);
        assert_eq!((s.best_val_loss, s.best_epoch), (0.9, 3));
    }

    #[test]
    fn stops_after_patience_epochs_without_val_acc_gain() {
        let mut s = CallbackState::new(3);
        assert!(!s.on_epoch_end(1, 1.0, 0.6).stop); // improvement from -inf
        assert!(!s.on_epoch_end(2, 1.0, 0.6).stop); // equal is not better: wait 1
        assert!(!s.on_epoch_end(3, 1.0, 0.5).stop); // wait 2
        assert!(s.on_epoch_end(4, 1.0, 0.6).stop); // wait 3 = patience
    }

    #[test]
    fn improvement_resets_the_wait() {
        let mut s = CallbackState::new(2);
        s.on_epoch_end(1, 1.0, 0.5);
        s.on_epoch_end(2, 1.0, 0.4);
        assert!(!s.on_epoch_end(3, 1.0, 0.7).stop);
        assert_eq!(s.wait, 0);
        assert!(!s.on_epoch_end(4, 1.0, 0.7).stop);
        assert!(s.on_epoch_end(5, 1.0, 0.7).stop);
    }
}
