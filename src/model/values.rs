//! Readers for JSON option objects: each takes the object, a key and the object's dotted path, and
//! fails with a named-field error (`tiers.redis.ttl: must be ...`). Every config section and every
//! method's options object is read with these, so units and messages are the same everywhere.

use serde_json::{Map, Value};

use super::error::{Result, TierError};
use super::units::{parse_duration_ms, parse_size};

pub type Obj = Map<String, Value>;

/// Which error a reader reports: config sections say `ERR_INVALID_CONFIG`, method options
/// `ERR_INVALID_ARGUMENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Config,
    Argument,
}

/// An object being read, with its dotted path (`""` for the root) and its error kind.
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    pub obj: &'a Obj,
    pub path: &'a str,
    pub kind: Kind,
}

fn empty() -> &'static Obj {
    static EMPTY: std::sync::OnceLock<Obj> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

impl<'a> Fields<'a> {
    /// The root of a config (`null` reads as `{}`).
    pub fn root(v: &'a Value, path: &'a str, kind: Kind) -> Result<Fields<'a>> {
        match v {
            Value::Null => Ok(Fields { obj: empty(), path, kind }),
            Value::Object(obj) => Ok(Fields { obj, path, kind }),
            _ => Err(error(kind, if path.is_empty() { "config" } else { path }, "must be an object")),
        }
    }

    /// The dotted path of `key` in this object.
    pub fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn fail(&self, key: &str, message: impl Into<String>) -> TierError {
        error(self.kind, self.at(key), message)
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// Rejects keys not in `known`, naming the first unknown one.
    pub fn known(&self, known: &[&str]) -> Result<()> {
        match self.obj.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(self.fail(k, format!("unknown option (known: {})", known.join(", ")))),
            None => Ok(()),
        }
    }

    /// A nested object (`{}` when absent); `path` is the caller's name for it.
    pub fn section(&self, key: &str, path: &'a str) -> Result<Fields<'a>> {
        match self.get(key) {
            None => Ok(Fields { obj: empty(), path, kind: self.kind }),
            Some(Value::Object(obj)) => Ok(Fields { obj, path, kind: self.kind }),
            Some(_) => Err(self.fail(key, "must be an object")),
        }
    }

    /// Whether the key is present and not null.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A string; blank counts as absent.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.fail(key, "must be a string")),
        }
    }

    pub fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.fail(key, "must be true or false")),
        }
    }

    /// A whole number in `min..=max`.
    pub fn int(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| self.fail(key, format!("must be a whole number from {min} to {max}"))),
        }
    }

    /// A number in `min..=max`.
    pub fn number(&self, key: &str, default: f64, min: f64, max: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && (min..=max).contains(x))
                .ok_or_else(|| self.fail(key, format!("must be a number from {min} to {max}"))),
        }
    }

    /// A number from 0 to 1.
    pub fn frac(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && (0.0..=1.0).contains(x))
                .ok_or_else(|| self.fail(key, "must be a number from 0 to 1")),
        }
    }

    /// Bytes, as a number or a size such as `"500MB"`; at least `min`.
    pub fn size(&self, key: &str, default: u64, min: u64) -> Result<u64> {
        let v = match self.get(key) {
            None => return Ok(default),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => parse_size(s),
            Some(_) => None,
        };
        v.filter(|v| *v >= min).ok_or_else(|| {
            let least =
                if min <= 1 { "a positive number of bytes".to_string() } else { format!("at least {min} bytes") };
            self.fail(key, format!("must be {least} or a size such as '500MB'"))
        })
    }

    /// Milliseconds, as a number or a duration such as `"24h"`; at least `min`.
    pub fn duration_ms(&self, key: &str, default: u64, min: u64) -> Result<u64> {
        let v = match self.get(key) {
            None => return Ok(default),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => parse_duration_ms(s),
            Some(_) => None,
        };
        v.filter(|v| *v >= min)
            .ok_or_else(|| self.fail(key, format!("must be milliseconds (at least {min}) or a duration such as '24h'")))
    }

    /// An array of strings (absent: `None`).
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| self.fail(key, "must be an array of strings")))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(self.fail(key, "must be an array of strings")),
        }
    }
}

fn error(kind: Kind, field: impl Into<String>, message: impl Into<String>) -> TierError {
    match kind {
        Kind::Config => TierError::invalid_config(field, message),
        Kind::Argument => TierError::invalid_argument(field, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readers_name_the_field_and_apply_units() {
        let v = json!({"a": {"size": "2KB", "ttl": "1h", "n": 7, "f": 0.5, "flag": true, "s": " "}});
        let root = Fields::root(&v, "", Kind::Config).expect("root");
        let a = root.section("a", "tiers.a").expect("section");
        assert_eq!(a.size("size", 0, 1).expect("size"), 2048);
        assert_eq!(a.duration_ms("ttl", 0, 1).expect("ttl"), 3_600_000);
        assert_eq!(a.int("n", 0, 1, 10).expect("n"), 7);
        assert_eq!(a.frac("f", 0.0).expect("f"), 0.5);
        assert!(a.boolean("flag", false).expect("flag"));
        assert_eq!(a.opt_string("s").expect("s"), None);
        match a.int("n", 0, 8, 10) {
            Err(TierError::InvalidConfig { field, .. }) => assert_eq!(field, "tiers.a.n"),
            other => panic!("{other:?}"),
        }
        match a.known(&["size"]) {
            Err(TierError::InvalidConfig { field, .. }) => assert!(field.starts_with("tiers.a.")),
            other => panic!("{other:?}"),
        }
        let args = Fields::root(&v, "options", Kind::Argument).expect("root");
        assert_eq!(args.fail("x", "bad").code(), "ERR_INVALID_ARGUMENT");
        assert!(Fields::root(&json!(3), "", Kind::Config).is_err());
    }
}
