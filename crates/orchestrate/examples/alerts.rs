//! Every alert a model raises on recorded scenarios, with its evidence and the truth at that time:
//! what to read when a held-out figure goes wrong.
//!
//! Run: `cargo run -p orchestrate --example alerts -- STORE MODEL SCENARIO[,SCENARIO...] [WINDOW_SECS]`

use detect::online::{AlertEvent, DetectorModel, timeline};
use orchestrate::dataset::{Selection, load};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, model, scenarios, rest @ ..] = args.as_slice() else {
        eprintln!("usage: alerts STORE MODEL SCENARIO[,SCENARIO...] [WINDOW_SECS]");
        std::process::exit(2);
    };
    let window_ms = rest.first().map_or(5, |s| s.parse::<u64>().expect("window seconds")) * 1000;
    let store = store::Store::open(store).expect("store");
    let model = DetectorModel::from_json(&std::fs::read_to_string(model).expect("model file")).expect("model");
    let sel = Selection { include: scenarios.split(',').map(String::from).collect(), exclude: vec![] };
    for g in load(&store, &sel).expect("data") {
        let lg = g.labelled(window_ms);
        let Some(tl) = timeline(&model, &lg) else { continue };
        for ev in &tl.events {
            match ev {
                AlertEvent::Raised { guest, time_ms, role, score, evidence } => {
                    let t = time_ms * 1_000_000;
                    let truth = g.truth(t - 1, t).map_or("-".to_string(), |l| format!("{l:?}"));
                    let ev: Vec<String> = evidence
                        .iter()
                        .map(|e| format!("{}={:.1}{} (normal {:.1})", e.feature, e.value, e.unit, e.normal))
                        .collect();
                    println!(
                        "raised {guest} at {time_ms} role {role:?} score {score:.2} truth {truth}: {}",
                        ev.join(", ")
                    );
                }
                AlertEvent::Cleared { guest, time_ms, .. } => println!("cleared {guest} at {time_ms}"),
            }
        }
    }
}
