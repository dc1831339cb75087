//! The simulator's multi-seed acceptance table (see `stackmemory_tiers::sim::acceptance`).
//!
//! `cargo run --release --example seeds [-- tune|held-out|all] [--json]`
//! (`SIM_POLICIES='{...}'` overrides policy options as in the `policies` config).

use stackmemory_tiers::policy::PolicyOptions;
use stackmemory_tiers::sim::{acceptance, SimOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.iter().find(|a| !a.starts_with("--")).map(String::as_str).unwrap_or("all");
    let json = args.iter().any(|a| a == "--json");
    let mut opts = SimOptions::default();
    if let Ok(text) = std::env::var("SIM_POLICIES") {
        match serde_json::from_str(&text).map_err(|e| e.to_string()).and_then(|v| {
            PolicyOptions::from_json(&v, PolicyOptions::default().hot_max_age_ms).map_err(|e| e.to_string())
        }) {
            Ok(p) => opts.policy = p,
            Err(e) => {
                eprintln!("SIM_POLICIES: {e}");
                std::process::exit(2);
            }
        }
    }
    let only = std::env::var("SIM_CASE").ok();
    let mut out = serde_json::Map::new();
    for (label, seeds) in [("tune", acceptance::TUNE_SEEDS), ("held-out", acceptance::HELD_OUT_SEEDS)] {
        if which != "all" && which != label {
            continue;
        }
        let rows: Vec<_> = acceptance::cases()
            .iter()
            .filter(|c| only.as_deref().is_none_or(|o| c.name.starts_with(o)))
            .map(|c| acceptance::run(c, seeds.clone(), &opts))
            .collect();
        if json {
            out.insert(label.to_string(), serde_json::to_value(&rows).unwrap_or_default());
        } else {
            println!("## seeds {}-{} ({label})\n\n{}", seeds.start, seeds.end - 1, acceptance::markdown(&rows));
        }
    }
    if json {
        println!("{}", serde_json::Value::Object(out));
    }
}
