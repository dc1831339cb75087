//! The three tiers, one backend each: `hot` (SQLite, StackMemory's own file), `warm` (Redis, a
//! non-durable shared copy), `cold` (PostgreSQL, the durable archive). A tier knows its backend and
//! the model, never another tier, the mover or the policies.

pub mod cold;
pub mod hot;
pub mod warm;

/// Told, by a remote tier, that a call failed because its server is unreachable (an I/O error, a
/// deadline passed, a connection refused): the manager's circuit breaker opens on it. The text
/// never holds a password.
pub type OutageHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// `s` with the password of every `scheme://user:password@` URL, and every `password=` value,
/// replaced by `***` (for `Debug` output of configs and anything else that may show a
/// connection string). Over-masking is the safe side: the password runs to the last `@`.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, word) in s.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&redact_word(word));
    }
    out
}

fn redact_word(w: &str) -> String {
    let mut w = w.to_string();
    if let Some(scheme_end) = w.find("://") {
        let rest = &w[scheme_end + 3..];
        if let Some(at) = rest.rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                w = format!("{}{}:***{}", &w[..scheme_end + 3], &rest[..colon], &rest[at..]);
            }
        }
    }
    let lower = w.to_ascii_lowercase();
    if let Some(p) = lower.find("password=") {
        let start = p + "password=".len();
        let end = w[start..].find('&').map(|e| start + e).unwrap_or(w.len());
        w = format!("{}***{}", &w[..start], &w[end..]);
    }
    w
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn masks_url_and_parameter_passwords() {
        assert_eq!(super::redact("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(super::redact("postgres://u:p/w@ss@h/db?x=1"), "postgres://u:***@h/db?x=1");
        assert_eq!(super::redact("host=h password=pw user=u"), "host=h password=*** user=u");
        assert_eq!(super::redact("postgres://h/db?password=pw&a=b"), "postgres://h/db?password=***&a=b");
        assert_eq!(super::redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn config_debug_never_shows_the_password() {
        let v = serde_json::json!({"tiers": {
            "redis": {"connectionString": "rediss://:Sekr1t@h:6380"},
            "postgres": {"connectionString": "postgres://u:Sekr1t@h/db?sslmode=require"}}});
        let env = crate::manager::config::EnvFallback {
            redis_url: Some("redis://:Sekr1t@h".into()),
            database_url: Some("host=h password=Sekr1t".into()),
        };
        let c = crate::manager::config::TierConfig::from_json_with_env(&v, &env).unwrap();
        let shown = format!("{c:?} {c:#?} {env:?}");
        assert!(!shown.contains("Sekr1t"), "{shown}");
        assert!(shown.contains("rediss://:***@h:6380"), "{shown}");
    }
}
