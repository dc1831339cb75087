//! Our keys in Redis and the index keys (names, and the glob escaping SCAN needs).

use redis::{Script, ScriptInvocation};

use crate::model::EvictionStrategy;

/// `{prefix}frame:{<id>}`
pub fn frame_key(prefix: &str, id: &str) -> String {
    format!("{prefix}frame:{{{id}}}")
}

/// `{prefix}meta:{<id>}`
pub fn meta_key(prefix: &str, id: &str) -> String {
    format!("{prefix}meta:{{{id}}}")
}

/// The index keys, computed once from the prefix.
#[derive(Debug, Clone)]
pub(super) struct IndexKeys {
    pub(super) lru: String,
    pub(super) lfu: String,
    pub(super) age: String,
    pub(super) size: String,
    pub(super) bytes: String,
}

impl IndexKeys {
    pub(super) fn new(prefix: &str) -> Self {
        IndexKeys {
            lru: format!("{prefix}idx:lru"),
            lfu: format!("{prefix}idx:lfu"),
            age: format!("{prefix}idx:age"),
            size: format!("{prefix}idx:size"),
            bytes: format!("{prefix}idx:bytes"),
        }
    }

    pub(super) fn for_strategy(&self, s: EvictionStrategy) -> &str {
        match s {
            EvictionStrategy::Lru => &self.lru,
            EvictionStrategy::Lfu => &self.lfu,
            EvictionStrategy::Age => &self.age,
        }
    }

    /// Starts a script invocation with the five index keys as KEYS[1..5].
    pub(super) fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.lru).key(&self.lfu).key(&self.age).key(&self.size).key(&self.bytes);
        inv
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
