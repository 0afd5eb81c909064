//! Part B's detector: per-kind-of-guest multinomial logistic models over benign-anchored robust
//! features, with calibrated thresholds, a role per alert and evidence per feature.
//!
//! Why this shape:
//! - Features are centred on the *benign* median and divided by the benign IQR (floored, so a feature
//!   that never moved in the baselines does not turn a tiny change into a huge one): a scaled value is
//!   "how many benign spreads away from normal".
//! - A linear model in log-rates extrapolates monotonically: a flood at a rate never seen in training
//!   (lower or higher) still falls on the attack side as long as it moves the same features the same
//!   way. Distance or density models (K-means, GMM) have no such guarantee.
//! - Three classes (normal, victim, attacker) learn the role from the data (a flooded guest receives
//!   small packets and answers with SYN-ACKs or cookies; a zombie sends them); when the training data
//!   has only one attack role for a kind of guest, the role comes from the direction of traffic.
//! - Evidence is each feature's share of the attack-vs-normal logit, `(w_attack - w_normal) * x`: the
//!   features that pushed the window towards the alert, in their own units.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::features::{FEATURES, FeatureDef, feature_index, transform};

/// What a guest does in an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Flooded by others.
    Victim,
    /// Flooding others (a zombie).
    Attacker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Victim => "victim",
            Role::Attacker => "attacker",
        }
    }
}

/// A training class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Normal,
    Victim,
    Attacker,
}

impl Class {
    pub fn role(self) -> Option<Role> {
        match self {
            Class::Normal => None,
            Class::Victim => Some(Role::Victim),
            Class::Attacker => Some(Role::Attacker),
        }
    }
}

/// Why a model could not be trained or loaded.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ModelError {
    /// No normal windows: nothing to anchor the scaling on.
    #[error("no normal windows for guest kind '{0}': record benign baselines first")]
    NoNormal(String),
    /// No attack windows: nothing to learn an attack from.
    #[error("no attack windows for guest kind '{0}': record attack runs first")]
    NoAttack(String),
    /// No feature is available in the windows.
    #[error("no feature is available in the windows of guest kind '{0}': were the sources collected?")]
    NoFeatures(String),
    /// A model names a feature this version does not know.
    #[error("the model uses feature '{0}', which this version of vmguard does not compute: retrain it")]
    UnknownFeature(String),
    /// A model's arrays do not match its feature list.
    #[error("the model for guest kind '{0}' is inconsistent (array lengths differ): retrain it")]
    Inconsistent(String),
    /// Bad hyperparameters.
    #[error("invalid training parameter: {0}")]
    BadParam(&'static str),
}

/// Training hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// L2 penalty on the weights (not the biases), per window.
    pub l2: f64,
    /// Optimizer steps (full batch, Adam).
    pub iterations: usize,
    pub learning_rate: f64,
    /// Smallest scale of a log-feature (a factor of e^floor in the rate); smaller IQRs are raised to it.
    pub log_scale_floor: f64,
    /// Smallest scale of a linear feature (CPU cores).
    pub linear_scale_floor: f64,
    /// A feature must be available in at least this fraction of the kind's windows to be used.
    pub min_availability: f64,
    /// The novelty check alarms when a watched feature exceeds its benign ceiling by this factor.
    pub novelty_factor: f64,
    /// The benign ceiling is this quantile of the benign windows (at least the feature's floor).
    pub novelty_quantile: f64,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            l2: 1e-3,
            iterations: 1500,
            learning_rate: 0.05,
            log_scale_floor: 0.5,
            linear_scale_floor: 0.05,
            min_availability: 0.95,
            novelty_factor: 3.0,
            novelty_quantile: 0.995,
        }
    }
}

/// One evidence item: a feature, its value and its share of the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub feature: String,
    /// Raw value in `unit`.
    pub value: f64,
    pub unit: String,
    /// Benign median of the raw value (for comparison).
    pub normal: f64,
    /// Contribution to the attack-vs-normal logit.
    pub contribution: f64,
}

/// The verdict on one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// 1 - P(normal), in [0, 1].
    pub score: f64,
    /// Most likely role if it is an attack.
    pub role: Role,
    /// Whether `score >= threshold`.
    pub alarm: bool,
    /// Top features pushing towards an attack, strongest first.
    pub evidence: Vec<Evidence>,
    /// How far the window is above the benign ceilings of the novelty check (largest ratio; above the
    /// model's factor it alarms on its own). 0 without a novelty check.
    #[serde(default)]
    pub novelty: f64,
    /// The alarm comes from the novelty check alone (the supervised half scored the window normal).
    #[serde(default)]
    pub by_novelty: bool,
}

/// What the model saw in training, for the model file's reader.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainSummary {
    pub windows_normal: usize,
    pub windows_victim: usize,
    pub windows_attacker: usize,
    /// Window accuracy on the training data at the threshold.
    pub train_accuracy: f64,
}

/// The model for one kind of guest (`qemu`, `container`, `vanilla`, `xen`, or `*` for any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindModel {
    pub kind: String,
    pub features: Vec<String>,
    /// Benign median of each model input.
    pub center: Vec<f64>,
    /// Benign IQR of each model input, floored.
    pub scale: Vec<f64>,
    pub classes: Vec<Class>,
    /// Per class: one weight per feature, then the bias.
    pub weights: Vec<Vec<f64>>,
    /// Alarm at `score >= threshold`.
    pub threshold: f64,
    /// An alert clears after windows below this (hysteresis).
    pub clear_threshold: f64,
    pub summary: TrainSummary,
    /// The benign-only half: flood-shape rates far above anything benign (an attack kind the
    /// supervised half never saw). Absent in files of older versions.
    #[serde(default)]
    pub novelty: Option<Novelty>,
    #[serde(skip)]
    idx: Vec<usize>,
}

/// The novelty check, fitted on benign windows only: for every flood-shape feature
/// ([`FeatureDef::novelty_floor`]), the benign ceiling; a window whose value exceeds a ceiling by
/// `factor` is an attack whatever the supervised half says.
///
/// One-sided and per feature on purpose: heavy benign load moves packet and byte rates, CPU and
/// connection rates, but not refused packets or bare small packets, so only those are watched, and only
/// upwards. A distance over every feature (Mahalanobis) would call any unseen benign mix an attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Novelty {
    pub features: Vec<String>,
    /// Benign ceiling of each, in the feature's unit.
    pub ceiling: Vec<f64>,
    pub factor: f64,
    #[serde(skip)]
    idx: Vec<usize>,
}

impl Novelty {
    /// Fits the ceilings on benign windows (raw values in [`FEATURES`] order). `None` if no watched
    /// feature is available in most of them.
    pub fn fit(normal: &[&Vec<Option<f64>>], p: &TrainParams) -> Option<Novelty> {
        let mut idx = Vec::new();
        let mut ceiling = Vec::new();
        for (j, def) in FEATURES.iter().enumerate() {
            let Some(floor) = def.novelty_floor else { continue };
            let vals: Vec<f64> = normal.iter().filter_map(|v| v[j]).filter(|x| x.is_finite()).collect();
            if vals.is_empty() || (vals.len() as f64) < p.min_availability * normal.len() as f64 {
                continue;
            }
            idx.push(j);
            ceiling.push(quantile(vals, p.novelty_quantile).max(floor));
        }
        (!idx.is_empty()).then(|| Novelty {
            features: idx.iter().map(|&j| FEATURES[j].name.to_string()).collect(),
            ceiling,
            factor: p.novelty_factor,
            idx,
        })
    }

    fn prepare(&mut self) -> Result<(), ModelError> {
        self.idx = self
            .features
            .iter()
            .map(|n| feature_index(n).ok_or_else(|| ModelError::UnknownFeature(n.clone())))
            .collect::<Result<_, _>>()?;
        if self.ceiling.len() != self.idx.len() || self.factor <= 1.0 {
            return Err(ModelError::Inconsistent("novelty".into()));
        }
        Ok(())
    }

    /// `(position in [`Novelty::features`], (1 + value) / (1 + ceiling))` of every watched feature
    /// available in the window.
    fn ratios<'a>(&'a self, raw: &'a [Option<f64>]) -> impl Iterator<Item = (usize, f64)> + 'a {
        self.idx.iter().zip(&self.ceiling).enumerate().filter_map(|(i, (&j, &c))| {
            raw.get(j).copied().flatten().filter(|v| v.is_finite()).map(|v| (i, (1.0 + v.max(0.0)) / (1.0 + c)))
        })
    }

    /// The largest `(1 + value) / (1 + ceiling)` over the watched features, and which one (position
    /// in [`Novelty::features`]); `(0, None)` when none is available.
    pub fn ratio(&self, raw: &[Option<f64>]) -> (f64, Option<usize>) {
        let mut best = (0.0, None);
        for (i, r) in self.ratios(raw) {
            if r > best.0 {
                best = (r, Some(i));
            }
        }
        best
    }

    /// The shape gate's ratio: the largest `(1 + value) / (1 + ceiling)` over the watched
    /// flood-shape features ([`FeatureDef::shape`]) available in the window; `None` when none is (a
    /// source without handshake accounting: the gate cannot judge, so it lets the window through).
    pub fn shape(&self, raw: &[Option<f64>]) -> Option<f64> {
        self.ratios(raw).filter(|&(i, _)| FEATURES[self.idx[i]].shape).map(|(_, r)| r).reduce(f64::max)
    }

    /// Whether the window may alarm: some flood-shape rate is above its benign ceiling, or no
    /// shape feature is available. Volume alone (packets, bytes, CPU, small packets) never alarms:
    /// a flash crowd, a bulk transfer or a fast stream of small datagrams moves every volume feature
    /// a flood moves, and only a flood makes handshakes fail, refusals, repeated SYNs or a spread of
    /// UDP flows.
    pub fn shape_allows(&self, raw: &[Option<f64>]) -> bool {
        self.shape(raw).is_none_or(|r| r > SHAPE_GATE)
    }

    /// The evidence item of watched feature `i` (position in [`Novelty::features`]) at `ratio`: its
    /// value against its benign ceiling, contributing `ln(ratio)`.
    fn evidence(&self, i: usize, raw: &[Option<f64>], ratio: f64) -> Evidence {
        let j = self.idx[i];
        Evidence {
            feature: self.features[i].clone(),
            value: raw.get(j).copied().flatten().unwrap_or(f64::NAN),
            unit: FEATURES[j].unit.to_string(),
            // The benign ceiling: the value is compared with it.
            normal: self.ceiling[i],
            contribution: ratio.ln(),
        }
    }
}

/// A window alarms only if a flood-shape rate exceeds its benign ceiling by this factor
/// ([`Novelty::shape_allows`]); the ceilings are floored ([`FeatureDef::novelty_floor`]), so a
/// baseline that never saw any of it lets a flood of a few hundred packets a second through.
pub const SHAPE_GATE: f64 = 1.0;

/// How a kind of guest is scored ([`DetectorModel::scorer_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreMode {
    /// By the model trained on guests of this kind: the supervised half and its novelty check.
    Own,
    /// By the benign-only novelty check alone (of the generic `*` model, fitted on the benign
    /// windows of every kind): the kind has no model of its own, and the supervised half learnt what
    /// an attack looks like on other kinds of guest, whose rates and packet sizes need not carry
    /// over to this one.
    NoveltyOnly,
}

impl ScoreMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreMode::Own => "own",
            ScoreMode::NoveltyOnly => "novelty_only",
        }
    }
}

/// The novelty ratio on the score scale: `factor` lands on `threshold`, so that the alert hysteresis
/// treats both halves alike.
fn novelty_score(ratio: f64, factor: f64, threshold: f64) -> f64 {
    if ratio > 1.0 { (threshold * ratio.ln() / factor.ln()).clamp(0.0, 1.0) } else { 0.0 }
}

/// Scaled inputs are clipped to this many benign spreads (keeps the logits finite).
const CLIP: f64 = 50.0;

fn softmax(logits: &mut [f64]) {
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for l in logits.iter_mut() {
        *l = (*l - m).exp();
        s += *l;
    }
    for l in logits.iter_mut() {
        *l /= s;
    }
}

fn median_iqr(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (v.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        v[lo] + (pos - lo as f64) * (v[hi] - v[lo])
    };
    (q(0.5), q(0.75) - q(0.25))
}

fn quantile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
}

impl KindModel {
    /// Trains on raw feature values (in [`FEATURES`] order, `None` = unavailable) and classes.
    pub fn train(kind: &str, windows: &[(Vec<Option<f64>>, Class)], p: &TrainParams) -> Result<Self, ModelError> {
        if p.iterations == 0 || p.learning_rate <= 0.0 || p.l2 < 0.0 {
            return Err(ModelError::BadParam("iterations and learning_rate must be positive, l2 non-negative"));
        }
        let normal: Vec<&Vec<Option<f64>>> =
            windows.iter().filter(|(_, c)| *c == Class::Normal).map(|(v, _)| v).collect();
        if normal.is_empty() {
            return Err(ModelError::NoNormal(kind.into()));
        }
        let mut classes: Vec<Class> = windows.iter().map(|(_, c)| *c).collect();
        classes.sort();
        classes.dedup();
        if classes.len() < 2 {
            return Err(ModelError::NoAttack(kind.into()));
        }
        // Features available in enough windows, and not constant over all of them.
        let mut idx = Vec::new();
        for (j, def) in FEATURES.iter().enumerate() {
            let vals: Vec<f64> = windows.iter().filter_map(|(v, _)| v[j]).map(|x| transform(def, x)).collect();
            if (vals.len() as f64) < p.min_availability * windows.len() as f64 {
                continue;
            }
            let (lo, hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            if hi > lo {
                idx.push(j);
            }
        }
        if idx.is_empty() {
            return Err(ModelError::NoFeatures(kind.into()));
        }
        let d = idx.len();
        let mut center = Vec::with_capacity(d);
        let mut scale = Vec::with_capacity(d);
        for &j in &idx {
            let def = &FEATURES[j];
            let mut vals: Vec<f64> = normal.iter().filter_map(|v| v[j]).map(|x| transform(def, x)).collect();
            let (m, iqr) = if vals.is_empty() { (0.0, 0.0) } else { median_iqr(&mut vals) };
            let floor = if def.log { p.log_scale_floor } else { p.linear_scale_floor };
            center.push(m);
            scale.push(iqr.max(floor));
        }
        let mut model = KindModel {
            kind: kind.into(),
            features: idx.iter().map(|&j| FEATURES[j].name.to_string()).collect(),
            center,
            scale,
            classes: classes.clone(),
            weights: vec![vec![0.0; d + 1]; classes.len()],
            threshold: 0.5,
            clear_threshold: 0.3,
            summary: TrainSummary::default(),
            novelty: Novelty::fit(&normal, p),
            idx,
        };
        // Scaled design matrix and class-balanced weights.
        let x: Vec<Vec<f64>> = windows.iter().map(|(v, _)| model.scaled(v)).collect();
        let y: Vec<usize> =
            windows.iter().map(|(_, c)| classes.iter().position(|k| k == c).expect("class listed")).collect();
        let mut count = vec![0usize; classes.len()];
        for &c in &y {
            count[c] += 1;
        }
        let n = windows.len() as f64;
        let cw: Vec<f64> = count.iter().map(|&c| n / (classes.len() as f64 * c as f64)).collect();
        model.fit_adam(&x, &y, &cw, p);
        // Calibrate: between the benign tail and the attack bulk, when they are apart.
        let scores: Vec<f64> = x.iter().map(|r| model.score_scaled(r).0).collect();
        let benign: Vec<f64> = scores.iter().zip(&y).filter(|(_, c)| **c == 0).map(|(s, _)| *s).collect();
        let attack: Vec<f64> = scores.iter().zip(&y).filter(|(_, c)| **c != 0).map(|(s, _)| *s).collect();
        let (b, a) = (quantile(benign, 0.995), quantile(attack, 0.01));
        model.threshold = if b < a { ((a + b) / 2.0).clamp(0.2, 0.8) } else { 0.5 };
        model.clear_threshold = 0.6 * model.threshold;
        let correct = scores.iter().zip(&y).filter(|(s, c)| (**s >= model.threshold) == (**c != 0)).count();
        let cnt = |k: Class| windows.iter().filter(|(_, c)| *c == k).count();
        model.summary = TrainSummary {
            windows_normal: cnt(Class::Normal),
            windows_victim: cnt(Class::Victim),
            windows_attacker: cnt(Class::Attacker),
            train_accuracy: correct as f64 / n,
        };
        Ok(model)
    }

    fn fit_adam(&mut self, x: &[Vec<f64>], y: &[usize], cw: &[f64], p: &TrainParams) {
        let (k, d) = (self.classes.len(), self.idx.len());
        let np = k * (d + 1);
        let (mut m, mut v) = (vec![0.0; np], vec![0.0; np]);
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        let wsum: f64 = y.iter().map(|&c| cw[c]).sum();
        let mut grad = vec![0.0; np];
        let mut prob = vec![0.0; k];
        for it in 1..=p.iterations {
            grad.iter_mut().for_each(|g| *g = 0.0);
            for (r, &c) in x.iter().zip(y) {
                for (kk, pr) in prob.iter_mut().enumerate() {
                    let w = &self.weights[kk];
                    *pr = w[d] + r.iter().zip(w).map(|(a, b)| a * b).sum::<f64>();
                }
                softmax(&mut prob);
                for kk in 0..k {
                    let e = cw[c] * (prob[kk] - if kk == c { 1.0 } else { 0.0 }) / wsum;
                    let g = &mut grad[kk * (d + 1)..(kk + 1) * (d + 1)];
                    for (gj, xj) in g.iter_mut().zip(r) {
                        *gj += e * xj;
                    }
                    g[d] += e;
                }
            }
            for kk in 0..k {
                for j in 0..d {
                    grad[kk * (d + 1) + j] += p.l2 * self.weights[kk][j];
                }
            }
            let (c1, c2) = (1.0 - f64::powi(b1, it as i32), 1.0 - f64::powi(b2, it as i32));
            for (i, g) in grad.iter().enumerate() {
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let step = p.learning_rate * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
                self.weights[i / (d + 1)][i % (d + 1)] -= step;
            }
        }
    }

    /// Resolves feature names after loading and checks the arrays.
    pub fn prepare(&mut self) -> Result<(), ModelError> {
        self.idx = self
            .features
            .iter()
            .map(|n| feature_index(n).ok_or_else(|| ModelError::UnknownFeature(n.clone())))
            .collect::<Result<_, _>>()?;
        let d = self.idx.len();
        if self.center.len() != d
            || self.scale.len() != d
            || self.weights.len() != self.classes.len()
            || self.weights.iter().any(|w| w.len() != d + 1)
            || self.classes.first() != Some(&Class::Normal)
        {
            return Err(ModelError::Inconsistent(self.kind.clone()));
        }
        if let Some(n) = &mut self.novelty {
            n.prepare().map_err(|e| match e {
                ModelError::Inconsistent(_) => ModelError::Inconsistent(self.kind.clone()),
                e => e,
            })?;
        }
        Ok(())
    }

    /// Model inputs of a window: transformed, centred, scaled, clipped; unavailable = 0 (benign median).
    fn scaled(&self, raw: &[Option<f64>]) -> Vec<f64> {
        self.idx
            .iter()
            .enumerate()
            .map(|(i, &j)| match raw.get(j).copied().flatten() {
                Some(v) if v.is_finite() => {
                    ((transform(&FEATURES[j], v) - self.center[i]) / self.scale[i]).clamp(-CLIP, CLIP)
                }
                _ => 0.0,
            })
            .collect()
    }

    /// (score, probabilities per class).
    fn score_scaled(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let d = x.len();
        let mut prob: Vec<f64> =
            self.weights.iter().map(|w| w[d] + x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>()).collect();
        softmax(&mut prob);
        (1.0 - prob[0], prob)
    }

    /// The verdict on one window's raw feature values (in [`FEATURES`] order), with up to `top`
    /// evidence items.
    pub fn verdict(&self, raw: &[Option<f64>], top: usize) -> Verdict {
        let x = self.scaled(raw);
        let (sup_score, prob) = self.score_scaled(&x);
        let sup_alarm = sup_score >= self.threshold;
        // The novelty check, on the same score scale.
        let (ratio, which) = self.novelty.as_ref().map_or((0.0, None), |n| n.ratio(raw));
        let factor = self.novelty.as_ref().map_or(f64::INFINITY, |n| n.factor);
        let nov_alarm = which.is_some() && ratio >= factor;
        let nov_score = novelty_score(ratio, factor, self.threshold);
        let score = sup_score.max(nov_score);
        let shaped = self.novelty.as_ref().is_none_or(|n| n.shape_allows(raw));
        let (sup_alarm, nov_alarm) = (sup_alarm && shaped, nov_alarm && shaped);
        let attack_k = (1..self.classes.len()).max_by(|&a, &b| prob[a].total_cmp(&prob[b])).unwrap_or(0);
        let nov_feature = which.and_then(|i| self.novelty.as_ref().map(|n| n.features[i].as_str()));
        // Role: who started the traffic, when the flow source saw it; else the likelier attack class,
        // or the direction of traffic when only one is known; for an alarm of the novelty check
        // alone, the direction of the bare packets.
        let role = if let Some(r) = initiation_role(raw) {
            r
        } else if nov_alarm && !sup_alarm {
            if nov_feature == Some("bare_tx_pps") { Role::Attacker } else { Role::Victim }
        } else if self.classes.contains(&Class::Victim) && self.classes.contains(&Class::Attacker) {
            self.classes[attack_k].role().unwrap_or(Role::Victim)
        } else {
            direction_role(raw)
        };
        let d = x.len();
        let k = self.classes.iter().position(|c| c.role() == Some(role)).unwrap_or(attack_k);
        let mut ev: Vec<Evidence> = (0..d)
            .map(|i| {
                let def: &FeatureDef = &FEATURES[self.idx[i]];
                let contribution = (self.weights[k][i] - self.weights[0][i]) * x[i];
                let normal = if def.log { self.center[i].exp_m1() } else { self.center[i] };
                Evidence {
                    feature: def.name.to_string(),
                    value: raw.get(self.idx[i]).copied().flatten().unwrap_or(f64::NAN),
                    unit: def.unit.to_string(),
                    normal,
                    contribution,
                }
            })
            .filter(|e| e.contribution > 0.0 && e.value.is_finite())
            .collect();
        ev.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        if nov_alarm && let (Some(n), Some(i)) = (&self.novelty, which) {
            ev.retain(|e| e.feature != n.features[i]);
            ev.insert(0, n.evidence(i, raw, ratio));
        }
        ev.truncate(top);
        Verdict {
            score,
            role,
            alarm: sup_alarm || nov_alarm,
            evidence: ev,
            novelty: ratio,
            by_novelty: nov_alarm && !sup_alarm,
        }
    }

    /// The verdict of the benign-only novelty check alone, for a kind of guest this model was not
    /// trained on ([`ScoreMode::NoveltyOnly`]): the score is the novelty ratio on the score scale
    /// (`factor` lands on the threshold), the alarm is the novelty alarm, the evidence is every
    /// watched feature above its benign ceiling (largest ratio first), and the role comes from the
    /// direction of traffic ([`direction_role`]): the watched features count both sides of a
    /// handshake (a flooded guest's SYN-ACKs are bare packets sent, too), so they do not tell the
    /// role apart on their own. Never alarms without a novelty check.
    pub fn novelty_verdict(&self, raw: &[Option<f64>], top: usize) -> Verdict {
        let role = initiation_role(raw).unwrap_or_else(|| direction_role(raw));
        let Some(n) = &self.novelty else {
            return Verdict { score: 0.0, role, alarm: false, evidence: vec![], novelty: 0.0, by_novelty: false };
        };
        let (ratio, which) = n.ratio(raw);
        let alarm = which.is_some() && ratio >= n.factor && n.shape_allows(raw);
        let mut ev: Vec<Evidence> =
            n.ratios(raw).filter(|&(_, r)| r > 1.0).map(|(i, r)| n.evidence(i, raw, r)).collect();
        ev.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        ev.truncate(top);
        Verdict {
            score: novelty_score(ratio, n.factor, self.threshold),
            role,
            alarm,
            evidence: ev,
            novelty: ratio,
            by_novelty: alarm,
        }
    }

    /// The verdict in `mode`: [`KindModel::verdict`] or [`KindModel::novelty_verdict`].
    pub fn verdict_as(&self, mode: ScoreMode, raw: &[Option<f64>], top: usize) -> Verdict {
        match mode {
            ScoreMode::Own => self.verdict(raw, top),
            ScoreMode::NoveltyOnly => self.novelty_verdict(raw, top),
        }
    }
}

/// Role from the direction of initiation (the flow source's counters), `None` without them or with
/// too little of either side to tell: a guest is the attacker when what it starts and the answers it
/// gets (SYNs and datagrams sent; SYN-ACKs, resets and unreachables received) outweigh what others
/// start at it and the answers it gives. Volume alone never decides: a guest that only answers a
/// flood (SYN-ACKs, resets, unreachables: many packets) counts on the victim's side, so it is never
/// the attacker.
pub fn initiation_role(raw: &[Option<f64>]) -> Option<Role> {
    let rates = |name: &str| -> Option<f64> { raw.get(feature_index(name)?).copied().flatten() };
    let side = |names: &[&str]| -> Option<f64> {
        let v: Vec<f64> = names.iter().filter_map(|n| rates(n)).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let at_guest = side(&["syn_in_ps", "flow_udp_in_ps", "synack_out_ps", "refusals_out_ps"])?;
    let by_guest = side(&["syn_out_ps", "flow_udp_out_ps", "synack_in_ps", "refusals_in_ps"])?;
    if at_guest + by_guest < 10.0 {
        return None;
    }
    Some(if by_guest > at_guest { Role::Attacker } else { Role::Victim })
}

/// Role from the direction of traffic: a guest sending clearly more packets than it receives is the
/// attacker, else the victim.
pub fn direction_role(raw: &[Option<f64>]) -> Role {
    let rx = raw.first().copied().flatten().unwrap_or(0.0);
    let tx = raw.get(1).copied().flatten().unwrap_or(0.0);
    if tx > 1.5 * rx + 10.0 { Role::Attacker } else { Role::Victim }
}

/// Alert hysteresis: raise after `raise_after` consecutive alarming windows, clear after `clear_after`
/// consecutive windows below the clear threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertParams {
    pub raise_after: u32,
    pub clear_after: u32,
}

impl Default for AlertParams {
    fn default() -> Self {
        Self { raise_after: 2, clear_after: 5 }
    }
}

/// The whole detector: one model per kind of guest, the window length they were trained on, and the
/// alert hysteresis. Serialized as JSON by `detect train`, read by `agent` and `detect eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorModel {
    /// File format version.
    pub version: u32,
    pub window_ms: u64,
    pub alert: AlertParams,
    /// Per kind; the `*` model's novelty check serves kinds without their own
    /// ([`DetectorModel::scorer_for`]).
    pub models: Vec<KindModel>,
    /// Scenarios the model was trained on (for honest held-out figures).
    pub trained_on: Vec<String>,
}

/// The current model file version.
pub const MODEL_VERSION: u32 = 1;

impl DetectorModel {
    /// Reads a model from JSON and prepares it for scoring.
    pub fn from_json(text: &str) -> Result<Self, ModelLoadError> {
        let mut m: DetectorModel = serde_json::from_str(text)?;
        if m.version != MODEL_VERSION {
            return Err(ModelLoadError::Version(m.version));
        }
        for k in &mut m.models {
            k.prepare()?;
        }
        Ok(m)
    }

    /// The model trained on guests of this kind (`*`: the generic one), if any.
    pub fn own_model(&self, kind: &str) -> Option<&KindModel> {
        self.models.iter().find(|m| m.kind == kind)
    }

    /// How guests of `kind` are scored: by their own model ([`ScoreMode::Own`]), else by the generic
    /// `*` model's benign-only novelty check ([`ScoreMode::NoveltyOnly`], score with
    /// [`KindModel::verdict_as`]); `None` when neither exists (no `*` model, or one without a novelty
    /// check: a model file of an older version, or benign windows with no watched feature).
    pub fn scorer_for(&self, kind: &str) -> Option<(&KindModel, ScoreMode)> {
        if let Some(m) = self.own_model(kind) {
            return Some((m, ScoreMode::Own));
        }
        self.own_model("*").filter(|m| m.novelty.is_some()).map(|m| (m, ScoreMode::NoveltyOnly))
    }
}

/// Why a model file could not be read.
#[derive(Debug, Error)]
pub enum ModelLoadError {
    #[error("not a vmguard model: {0}")]
    Json(#[from] serde_json::Error),
    #[error("model file version {0} is not supported (this vmguard reads version {MODEL_VERSION}): retrain it")]
    Version(u32),
    #[error(transparent)]
    Model(#[from] ModelError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::features::{FEATURES, feature_index};

    /// rx_pps, tx_pps, rx size, tx size + the rest unavailable.
    fn raw(rx: f64, tx: f64, rxs: f64, txs: f64) -> Vec<Option<f64>> {
        let mut v = vec![None; FEATURES.len()];
        v[0] = Some(rx);
        v[1] = Some(tx);
        v[4] = Some(rxs);
        v[5] = Some(txs);
        v[6] = Some((tx + 1.0) / (rx + 1.0));
        v
    }

    fn data() -> Vec<(Vec<Option<f64>>, Class)> {
        let mut d = Vec::new();
        for i in 0..60 {
            let j = (i % 7) as f64;
            // Benign: idle, bulk receive (big packets), bulk send.
            d.push((raw(5.0 + j, 4.0 + j, 300.0, 200.0), Class::Normal));
            d.push((raw(3000.0 + 50.0 * j, 1500.0, 1400.0, 66.0), Class::Normal));
            d.push((raw(1500.0, 3000.0 + 50.0 * j, 66.0, 1400.0), Class::Normal));
            // Flooded: many small packets in, answers out.
            d.push((raw(5000.0 + 100.0 * j, 4800.0, 60.0, 58.0), Class::Victim));
            // Zombie: many small packets out.
            d.push((raw(2.0, 8000.0 + 100.0 * j, 60.0, 60.0), Class::Attacker));
        }
        d
    }

    #[test]
    fn learns_roles_and_generalises_to_other_rates() {
        let m = KindModel::train("container", &data(), &TrainParams::default()).unwrap();
        assert!(m.summary.train_accuracy > 0.99, "{:?}", m.summary);
        let idle = m.verdict(&raw(6.0, 5.0, 300.0, 200.0), 3);
        assert!(!idle.alarm, "{idle:?}");
        // Rates never seen in training.
        let v = m.verdict(&raw(1500.0, 1400.0, 60.0, 58.0), 3);
        assert!(v.alarm && v.role == Role::Victim, "{v:?}");
        let z = m.verdict(&raw(1.0, 50_000.0, 60.0, 60.0), 3);
        assert!(z.alarm && z.role == Role::Attacker, "{z:?}");
        assert!(!z.evidence.is_empty());
        assert!(z.evidence.windows(2).all(|w| w[0].contribution >= w[1].contribution));
        // Serializes and scores the same after loading.
        let dm = DetectorModel {
            version: MODEL_VERSION,
            window_ms: 5000,
            alert: AlertParams::default(),
            models: vec![m.clone()],
            trained_on: vec!["x".into()],
        };
        let back = DetectorModel::from_json(&serde_json::to_string(&dm).unwrap()).unwrap();
        let (m2, mode) = back.scorer_for("container").unwrap();
        assert_eq!(mode, ScoreMode::Own);
        assert_eq!(m2.verdict(&raw(1.0, 50_000.0, 60.0, 60.0), 3), z);
        assert!(back.scorer_for("qemu").is_none());
    }

    #[test]
    fn novelty_catches_an_unseen_flood_kind_and_not_heavier_benign_load() {
        let refused = feature_index("refused_ps").unwrap();
        let bare = feature_index("bare_rx_pps").unwrap();
        let with = |mut v: Vec<Option<f64>>, r: f64, b: f64| {
            v[refused] = Some(r);
            v[bare] = Some(b);
            v
        };
        let mut d: Vec<_> = data()
            .into_iter()
            .map(|(v, c)| {
                let (r, b) = if c == Class::Victim { (4800.0, 5000.0) } else { (2.0, 20.0) };
                (with(v, r, b), c)
            })
            .collect();
        d.truncate(250);
        let m = KindModel::train("container", &d, &TrainParams::default()).unwrap();
        let n = m.novelty.as_ref().unwrap();
        assert_eq!(n.features, ["refused_ps", "bare_rx_pps"].map(String::from).to_vec());
        // Floors: a baseline with almost no refused packets does not alarm on a few dozen.
        assert_eq!(n.ceiling[0], 50.0);
        // Benign but heavier than anything in training: more packets, bigger, few refused.
        let busy = m.verdict(&with(raw(20_000.0, 9000.0, 1400.0, 66.0), 30.0, 150.0), 3);
        assert!(!busy.alarm, "{busy:?}");
        // A UDP flood at a closed port: the packet rates look like a benign idle window's and only the
        // refused packets (UDP no-port) are out of line.
        let udp = m.verdict(&with(raw(8.0, 5.0, 300.0, 200.0), 800.0, 90.0), 3);
        assert!(udp.alarm && udp.role == Role::Victim && udp.novelty > 3.0, "{udp:?}");
        assert_eq!(udp.evidence[0].feature, "refused_ps");
        // Survives the model file.
        let dm = DetectorModel {
            version: MODEL_VERSION,
            window_ms: 5000,
            alert: AlertParams::default(),
            models: vec![m.clone()],
            trained_on: vec![],
        };
        let back = DetectorModel::from_json(&serde_json::to_string(&dm).unwrap()).unwrap();
        assert_eq!(back.models[0].verdict(&with(raw(8.0, 5.0, 300.0, 200.0), 800.0, 90.0), 3), udp);
    }

    /// A window with the novelty check's features set: refused packets and bare received packets.
    fn with(mut v: Vec<Option<f64>>, refused: f64, bare: f64) -> Vec<Option<f64>> {
        v[feature_index("refused_ps").unwrap()] = Some(refused);
        v[feature_index("bare_rx_pps").unwrap()] = Some(bare);
        v
    }

    /// [`data`] with the novelty check's features, low in benign windows, high in flooded ones.
    fn data_with_novelty() -> Vec<(Vec<Option<f64>>, Class)> {
        data()
            .into_iter()
            .map(|(v, c)| {
                let (r, b) = if c == Class::Victim { (4800.0, 5000.0) } else { (2.0, 20.0) };
                (with(v, r, b), c)
            })
            .collect()
    }

    fn detector(models: Vec<KindModel>) -> DetectorModel {
        DetectorModel {
            version: MODEL_VERSION,
            window_ms: 5000,
            alert: AlertParams::default(),
            models,
            trained_on: vec![],
        }
    }

    #[test]
    fn a_kind_without_a_model_of_its_own_gets_the_novelty_check_only() {
        let d = data_with_novelty();
        let p = TrainParams::default();
        let own = KindModel::train("container", &d, &p).unwrap();
        let generic = KindModel::train("*", &d, &p).unwrap();
        assert!(generic.novelty.is_some());
        let dm = detector(vec![own.clone(), generic.clone()]);
        let (m, mode) = dm.scorer_for("container").unwrap();
        assert_eq!((m.kind.as_str(), mode), ("container", ScoreMode::Own));
        let (m, mode) = dm.scorer_for("qemu").unwrap();
        assert_eq!((m.kind.as_str(), mode), ("*", ScoreMode::NoveltyOnly));
        assert_eq!(dm.scorer_for("*").map(|(m, mode)| (m.kind.as_str(), mode)), Some(("*", ScoreMode::Own)));
        assert_eq!(dm.own_model("qemu"), None);
        // No generic model, or one without a novelty check (an older file): not scored.
        assert!(detector(vec![own.clone()]).scorer_for("qemu").is_none());
        let mut old = generic.clone();
        old.novelty = None;
        assert!(detector(vec![own, old.clone()]).scorer_for("qemu").is_none());
        assert!(!old.novelty_verdict(&raw(5000.0, 4800.0, 60.0, 60.0), 3).alarm);
    }

    #[test]
    fn volume_alone_never_alarms() {
        let m = KindModel::train("container", &data_with_novelty(), &TrainParams::default()).unwrap();
        // A fast benign stream of small datagrams: a flooded guest's packet rates and sizes, but it
        // refuses nothing. The supervised half scores it as a flood; the shape gate stops the alarm.
        let stream = with(raw(5000.0, 4800.0, 60.0, 58.0), 2.0, 5000.0);
        let v = m.verdict(&stream, 3);
        assert!(v.score >= m.threshold && !v.alarm && !v.by_novelty, "{v:?}");
        assert!(m.novelty.as_ref().unwrap().shape(&stream).unwrap() < SHAPE_GATE);
        // Small packets far above anything benign, alone: volume still, no alarm from either half.
        let small = with(raw(8.0, 5.0, 300.0, 200.0), 2.0, 90_000.0);
        assert!(!m.verdict(&small, 3).alarm && !m.novelty_verdict(&small, 3).alarm);
        // The same volume refusing what it gets: flood shape, an alarm.
        let flood = with(raw(5000.0, 4800.0, 60.0, 58.0), 800.0, 5000.0);
        assert!(m.verdict(&flood, 3).alarm);
        // No shape feature recorded (a source without handshake accounting or refused counters): the
        // gate cannot judge and lets the supervised half decide.
        let bare = feature_index("bare_rx_pps").unwrap();
        let no_shape: Vec<_> = data()
            .into_iter()
            .map(|(mut v, c)| {
                v[bare] = Some(if c == Class::Victim { 5000.0 } else { 20.0 });
                (v, c)
            })
            .collect();
        let m = KindModel::train("container", &no_shape, &TrainParams::default()).unwrap();
        let mut unknown = raw(5000.0, 4800.0, 60.0, 58.0);
        unknown[bare] = Some(5000.0);
        assert_eq!(m.novelty.as_ref().unwrap().shape(&unknown), None);
        assert!(m.verdict(&unknown, 3).alarm);
    }

    #[test]
    fn novelty_only_verdicts_ignore_the_supervised_half() {
        // Training floods that refused as few packets as benign traffic: the supervised half learns
        // the packet rates and sizes only.
        let d: Vec<_> = data().into_iter().map(|(v, c)| (with(v, 2.0, 20.0), c)).collect();
        let m = KindModel::train("*", &d, &TrainParams::default()).unwrap();
        assert!(!m.features.iter().any(|f| f == "refused_ps"));
        // A window the supervised half calls a flood, below the novelty check's factor.
        let busy = with(raw(5000.0, 4800.0, 60.0, 58.0), 100.0, 150.0);
        assert!(m.verdict_as(ScoreMode::Own, &busy, 3).alarm);
        assert_eq!(m.verdict_as(ScoreMode::Own, &busy, 3), m.verdict(&busy, 3));
        let v = m.verdict_as(ScoreMode::NoveltyOnly, &busy, 3);
        assert!(!v.alarm && !v.by_novelty && v.score > 0.0 && v.score < m.threshold, "{v:?}");
        assert_eq!(v.evidence.iter().map(|e| e.feature.as_str()).collect::<Vec<_>>(), ["refused_ps"]);
        // Nothing above a ceiling: score 0, no evidence.
        let calm = m.novelty_verdict(&with(raw(5000.0, 4800.0, 60.0, 58.0), 2.0, 20.0), 3);
        assert!(!calm.alarm && calm.score == 0.0 && calm.evidence.is_empty(), "{calm:?}");
        // Refused packets far above the benign ceiling: an alarm, with the novelty check's evidence.
        let udp = with(raw(8.0, 5.0, 300.0, 200.0), 800.0, 90.0);
        let v = m.novelty_verdict(&udp, 3);
        assert!(v.alarm && v.by_novelty && v.score >= m.threshold && v.novelty > 3.0, "{v:?}");
        assert_eq!(v.role, Role::Victim);
        assert_eq!(v.evidence.len(), 1, "only the feature above its ceiling: {v:?}");
        assert_eq!(v.evidence[0].feature, "refused_ps");
        assert_eq!(v.evidence[0].normal, m.novelty.as_ref().unwrap().ceiling[0]);
        // Above the ceiling but below the factor: a score under the threshold, no alarm.
        let v = m.novelty_verdict(&with(raw(8.0, 5.0, 300.0, 200.0), 80.0, 20.0), 3);
        assert!(!v.alarm && v.score > 0.0 && v.score < m.threshold, "{v:?}");
        // The role is the direction of traffic.
        let v = m.novelty_verdict(&with(raw(2.0, 50_000.0, 60.0, 60.0), 800.0, 20.0), 3);
        assert!(v.alarm && v.role == Role::Attacker, "{v:?}");
    }

    #[test]
    fn errors_are_named() {
        let only_normal: Vec<_> = data().into_iter().filter(|(_, c)| *c == Class::Normal).collect();
        assert_eq!(KindModel::train("q", &only_normal, &TrainParams::default()), Err(ModelError::NoAttack("q".into())));
        let only_attack: Vec<_> = data().into_iter().filter(|(_, c)| *c != Class::Normal).collect();
        assert_eq!(KindModel::train("q", &only_attack, &TrainParams::default()), Err(ModelError::NoNormal("q".into())));
        assert!(matches!(DetectorModel::from_json("{}"), Err(ModelLoadError::Json(_))));
    }

    #[test]
    fn direction() {
        assert_eq!(direction_role(&raw(1.0, 9000.0, 60.0, 60.0)), Role::Attacker);
        assert_eq!(direction_role(&raw(9000.0, 9000.0, 60.0, 60.0)), Role::Victim);
    }

    #[test]
    fn the_role_follows_who_started_the_traffic() {
        // (syn_in, syn_out, synack_in, synack_out, udp_in, udp_out, refusals_in, refusals_out) per second.
        let w = |v: [f64; 8]| {
            let mut raw = vec![None; FEATURES.len()];
            let names = [
                "syn_in_ps",
                "syn_out_ps",
                "synack_in_ps",
                "synack_out_ps",
                "flow_udp_in_ps",
                "flow_udp_out_ps",
                "refusals_in_ps",
                "refusals_out_ps",
            ];
            for (n, x) in names.iter().zip(v) {
                raw[feature_index(n).unwrap()] = Some(x);
            }
            initiation_role(&raw)
        };
        // SYN flood victim, its SYN-ACKs to spoofed sources answered by resets: still the victim.
        assert_eq!(w([17e3, 0.0, 0.0, 17e3, 0.0, 0.0, 17e3, 0.0]), Some(Role::Victim));
        // The zombie of a spoofed SYN flood gets nothing back; an unspoofed one gets SYN-ACKs (and
        // its kernel resets them: answers it gives, outweighed).
        assert_eq!(w([0.0, 3e3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]), Some(Role::Attacker));
        assert_eq!(w([0.0, 3e3, 3e3, 0.0, 0.0, 0.0, 0.0, 3e3]), Some(Role::Attacker));
        // UDP flood: the victim answers with rate-limited unreachables; the zombie receives them.
        assert_eq!(w([0.0, 0.0, 0.0, 0.0, 17e3, 0.0, 0.0, 1e3]), Some(Role::Victim));
        assert_eq!(w([0.0, 0.0, 0.0, 0.0, 0.0, 17e3, 1e3, 0.0]), Some(Role::Attacker));
        // ACK flood: the victim only resets; the zombie only receives resets.
        assert_eq!(w([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9e3]), Some(Role::Victim));
        assert_eq!(w([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9e3, 0.0]), Some(Role::Attacker));
        // Nothing to go by: no flow source, or almost no traffic.
        assert_eq!(initiation_role(&vec![None; FEATURES.len()]), None);
        assert_eq!(w([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]), None);
    }
}
