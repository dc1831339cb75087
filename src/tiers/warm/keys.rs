//! Our keys in Redis and the index keys (names, and the glob escaping SCAN needs).
//!
//! Two layouts, chosen once at connect:
//!
//! * **standalone** (one index): `{p}frame:{<id>}`, `{p}meta:{<id>}`, `{p}idx:lru` ...
//! * **cluster** (`CLUSTER_BUCKETS` indexes): every frame belongs to one bucket (a hash of its id),
//!   and the bucket's hash tag comes first in each of its keys: `{p}frame:{w<k>}<id>`,
//!   `{p}meta:{w<k>}<id>`, `{p}idx:{w<k>}lru` ... so a frame's keys and its bucket's index entries
//!   share one slot, and every script touches the keys of one slot only.

use redis::{Script, ScriptInvocation};

/// Buckets (index shards, one hash tag each) on Redis Cluster. Each holds `maxSize / 16`.
pub(super) const CLUSTER_BUCKETS: usize = 16;

/// `{prefix}frame:{<id>}` (the standalone layout)
#[cfg(test)]
pub(super) fn frame_key(prefix: &str, id: &str) -> String {
    format!("{prefix}frame:{{{id}}}")
}

/// `{prefix}meta:{<id>}` (the standalone layout)
#[cfg(test)]
pub(super) fn meta_key(prefix: &str, id: &str) -> String {
    format!("{prefix}meta:{{{id}}}")
}

/// The index keys of one bucket.
#[derive(Debug, Clone)]
pub(super) struct IndexKeys {
    pub(super) lru: String,
    pub(super) lfu: String,
    pub(super) age: String,
    pub(super) size: String,
    pub(super) bytes: String,
    /// id → expiry deadline, unix ms by the server's clock.
    pub(super) exp: String,
    /// What goes before / after an id in its frame and meta key names (the scripts build the
    /// names of eviction candidates from these).
    pub(super) frame_parts: (String, String),
    pub(super) meta_parts: (String, String),
}

impl IndexKeys {
    fn new(idx: &str, frame_parts: (String, String), meta_parts: (String, String)) -> Self {
        IndexKeys {
            lru: format!("{idx}lru"),
            lfu: format!("{idx}lfu"),
            age: format!("{idx}age"),
            size: format!("{idx}size"),
            bytes: format!("{idx}bytes"),
            exp: format!("{idx}exp"),
            frame_parts,
            meta_parts,
        }
    }

    /// Starts a script invocation with the six index keys as KEYS[1..6] and the key-name parts
    /// as ARGV[1..4] (see `scripts::PRELUDE`).
    pub(super) fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.lru).key(&self.lfu).key(&self.age).key(&self.size).key(&self.bytes).key(&self.exp);
        inv.arg(&self.frame_parts.0).arg(&self.frame_parts.1).arg(&self.meta_parts.0).arg(&self.meta_parts.1);
        inv
    }
}

/// Where every key of a prefix lives, in one of the two layouts.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    prefix: String,
    cluster: bool,
    buckets: Vec<IndexKeys>,
}

impl Layout {
    pub(super) fn new(prefix: &str, cluster: bool) -> Self {
        let buckets = if cluster {
            (0..CLUSTER_BUCKETS)
                .map(|k| {
                    IndexKeys::new(
                        &format!("{prefix}idx:{{w{k}}}"),
                        (format!("{prefix}frame:{{w{k}}}"), String::new()),
                        (format!("{prefix}meta:{{w{k}}}"), String::new()),
                    )
                })
                .collect()
        } else {
            vec![IndexKeys::new(
                &format!("{prefix}idx:"),
                (format!("{prefix}frame:{{"), "}".to_string()),
                (format!("{prefix}meta:{{"), "}".to_string()),
            )]
        };
        Layout { prefix: prefix.to_string(), cluster, buckets }
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster
    }

    #[cfg(test)]
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// All buckets (one in the standalone layout).
    pub(super) fn buckets(&self) -> &[IndexKeys] {
        &self.buckets
    }

    /// The bucket a frame belongs to (FNV-1a of the id; stable across machines and versions).
    pub(super) fn bucket_of(&self, id: &str) -> usize {
        if self.buckets.len() <= 1 {
            return 0;
        }
        let mut h: u32 = 0x811c_9dc5;
        for b in id.as_bytes() {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h as usize % self.buckets.len()
    }

    pub(super) fn index_of(&self, id: &str) -> &IndexKeys {
        &self.buckets[self.bucket_of(id)]
    }

    pub(super) fn frame(&self, id: &str) -> String {
        let (a, b) = &self.index_of(id).frame_parts;
        format!("{a}{id}{b}")
    }

    pub(super) fn meta(&self, id: &str) -> String {
        let (a, b) = &self.index_of(id).meta_parts;
        format!("{a}{id}{b}")
    }

    /// `{prefix}dict:<id>`: a dictionary (one key, so one slot on a cluster too).
    pub(super) fn dict(&self, id: u32) -> String {
        format!("{}dict:{id}", self.prefix)
    }

    /// The cap of one bucket: the configured cap split evenly, so the sum never exceeds it.
    pub(super) fn bucket_cap(&self, max_size: u64) -> u64 {
        max_size / self.buckets.len().max(1) as u64
    }

    /// Indexes of `ids` grouped by bucket, each group in the order of `ids`.
    pub(super) fn group<'a, T>(&self, items: &'a [T], id: impl Fn(&T) -> &str) -> Vec<(usize, Vec<&'a T>)> {
        let mut groups: Vec<Vec<&T>> = vec![Vec::new(); self.buckets.len()];
        for it in items {
            groups[self.bucket_of(id(it))].push(it);
        }
        groups.into_iter().enumerate().filter(|(_, g)| !g.is_empty()).collect()
    }
}

/// Escapes the glob characters SCAN MATCH understands, so a prefix matches only itself.
pub(super) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One `name:value` line of an INFO reply.
pub(super) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}
