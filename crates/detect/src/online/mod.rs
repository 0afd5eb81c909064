//! Part B: vmguard's own detector, online.
//!
//! - [`features`]: per-guest sliding windows of counter deltas from every source → rates, ratios,
//!   per-packet normalisations ([`WindowExtractor`], [`FEATURES`]).
//! - [`model`]: per-kind multinomial logistic models on benign-anchored robust scaling, calibrated
//!   thresholds, role and evidence ([`DetectorModel`], [`KindModel::train`], [`KindModel::verdict`]);
//!   a kind without a model of its own gets the generic model's benign-only novelty check
//!   ([`DetectorModel::scorer_for`], [`ScoreMode`]).
//! - [`alert`]: the per-guest alert state machine with hysteresis ([`AlertState`]).
//! - [`labelled`]: training examples, training per guest kind, and replaying labelled windows
//!   through a model ([`train`], [`evaluate`], and one guest's score over time: [`timeline`]).
//!
//! The same code path serves training (`detect train` over recorded samples), evaluation and the agent
//! (one tick per guest per second), so what is measured offline is what runs online.

pub mod alert;
pub mod features;
pub mod labelled;
pub mod model;

pub use alert::{AlertEvent, AlertState};
pub use features::{
    BASE_COUNTERS, CounterDelta, FEATURES, FeatureDef, FeatureWindow, MIN_ROUND_MS, ROUND_GAP_MS, Tick,
    WindowExtractor, base_index, ticks,
};
pub use labelled::{
    Detection, LabelledGuest, PartBReport, Timeline, TimelinePoint, Training, evaluate, timeline, train,
    training_examples,
};
pub use model::{
    AlertParams, Class, DetectorModel, Evidence, KindModel, MODEL_VERSION, ModelError, ModelLoadError, Role, ScoreMode,
    TrainParams, TrainSummary, Verdict, direction_role, initiation_role,
};
