//! `Tier` (where a frame's body lives) and `EvictionStrategy` (how the warm tier's cap picks victims).

/// Where a frame's body lives. Numbers are the seed design's tier levels (`migrate --tier 2|3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Hot = 1,
    Warm = 2,
    Cold = 3,
}

/// `frames.tier_status` of a stub whose archived body retention deleted while child frames still
/// point at it: no tier holds a body (its level is 0). It stays for StackMemory's tree (parent
/// links), is never a candidate for a move, and reads back as the stub row alone.
pub const EXPIRED: &str = "expired";

/// The journal's `to_tier` for a retention deletion (0 is a discard of stale copies).
pub const EXPIRE_LEVEL: i64 = -1;

impl Tier {
    pub fn level(self) -> i64 {
        self as i64
    }
    pub fn from_level(l: i64) -> Option<Tier> {
        match l {
            1 => Some(Tier::Hot),
            2 => Some(Tier::Warm),
            3 => Some(Tier::Cold),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
    /// A JS value naming a tier: the numbers 1|2|3 or any spelling `parse` takes.
    pub fn from_json(v: &serde_json::Value) -> Option<Tier> {
        match v {
            serde_json::Value::Number(n) => n.as_i64().and_then(Tier::from_level),
            serde_json::Value::String(s) => Tier::parse(s),
            _ => None,
        }
    }

    /// `1|2|3`, `hot|warm|cold`, `sqlite|redis|postgres` (as the CLI and JS callers spell them).
    pub fn parse(s: &str) -> Option<Tier> {
        match s.trim().to_ascii_lowercase().as_str() {
            "1" | "hot" | "sqlite" => Some(Tier::Hot),
            "2" | "warm" | "redis" => Some(Tier::Warm),
            "3" | "cold" | "postgres" | "postgresql" => Some(Tier::Cold),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Tier {
    /// A tier as `Serialize` writes it (`"hot"`), or any spelling `from_json` takes.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tier, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Tier::from_json(&v).ok_or_else(|| serde::de::Error::custom(format!("unknown tier {v}")))
    }
}

/// How the warm tier chooses what to evict when it is over its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionStrategy {
    /// Least recently read first (the default).
    #[default]
    Lru,
    /// Fewest reads first.
    Lfu,
    /// Oldest created first.
    Age,
}

impl EvictionStrategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            EvictionStrategy::Lru => "LRU",
            EvictionStrategy::Lfu => "LFU",
            EvictionStrategy::Age => "AGE",
        }
    }
    /// `LRU|LFU|AGE`, any case.
    pub fn parse(s: &str) -> Option<EvictionStrategy> {
        match s.to_ascii_uppercase().as_str() {
            "LRU" => Some(EvictionStrategy::Lru),
            "LFU" => Some(EvictionStrategy::Lfu),
            "AGE" => Some(EvictionStrategy::Age),
            _ => None,
        }
    }
}
