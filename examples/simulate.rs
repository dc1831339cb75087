//! Replays the shipped StackMemory-shaped traces against our policy engine and the baselines
//! (LRU, LFU, S3-FIFO, Bélády's optimum) and prints one markdown table per trace.
//!
//! Reproduce: `cargo run --release --example simulate` (optionally `-- <days>`, default 7;
//! `SIM_POLICIES='{"hotMaxAge":"2d"}'` overrides policy options as in the `policies` config).

use stackmemory_tiers::policy::PolicyOptions;
use stackmemory_tiers::sim::{self, SimOptions};

const SEED: u64 = 42;

fn main() {
    let days: u32 = match std::env::args().nth(1) {
        None => 7,
        Some(s) => match s.parse() {
            Ok(d) if d >= 1 => d,
            _ => {
                eprintln!("usage: simulate [days >= 1]");
                std::process::exit(2);
            }
        },
    };
    let mut opts = SimOptions::default();
    if let Ok(text) = std::env::var("SIM_POLICIES") {
        let parsed = serde_json::from_str(&text).map_err(|e| e.to_string()).and_then(|v| {
            PolicyOptions::from_json(&v, PolicyOptions::default().hot_max_age_ms).map_err(|e| e.to_string())
        });
        match parsed {
            Ok(p) => opts.policy = p,
            Err(e) => {
                eprintln!("SIM_POLICIES: {e}");
                std::process::exit(2);
            }
        }
    }
    println!("# Tiering policy simulation\n");
    println!(
        "Seed {SEED}, {days} day(s) per trace, hot capacity {} frames, a policy cycle every {} s.",
        opts.hot_capacity_frames.map(|f| f.to_string()).unwrap_or_else(|| "unlimited".into()),
        opts.cycle_ms / 1000
    );
    println!(
        "Reproduce with: `cargo run --release --example simulate{}`\n",
        if days == 7 { String::new() } else { format!(" -- {days}") }
    );
    for (name, trace) in sim::traces::shipped(SEED, days) {
        let r = sim::simulate(&trace, &opts);
        println!("## {name}: {} events, {} reads, {} frames\n\n{}", r.events, r.reads, r.frames, r.to_markdown());
    }
}
