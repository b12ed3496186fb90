//! `rocmforge tune`: per device, which candidate of each kernel's knobs is fastest for a model's
//! real shapes, stored in a tuning database that `run`, `bench` and `verify` apply.
//!
//! ```text
//! problems  the model's tunable kernels (problem = op + shape) and the steps launching them
//! measure   check a candidate's output against the default's, time its launches with events
//! tuner     rank problems by share of a step, compile + check + time candidates
//! results   what was measured per candidate, which one wins, the database entry
//! db        fingerprint, entries keyed by problem, bucket and candidate-set checksum, files
//! apply     database -> TuningChoice for a model, and the one line saying what was applied
//! launch_mode  plain or dependent kernel launches in decode steps, measured and stored per model
//! ```

pub mod apply;
pub mod db;
pub mod error;
pub mod launch_mode;
pub mod measure;
pub mod problems;
pub mod results;
pub mod tuner;

pub use apply::{tuning_for_device, Applied};
pub use db::{DbRead, Entry, Fingerprint, TuningDb};
pub use error::TuneError;
pub use results::{ProblemResult, TuneReport};
pub use tuner::{TuneOptions, Tuner};
