//! Rows as SQLite holds them and as bundles carry them: column values both ways, and the *shape*
//! (key order, keys without a column) that lets a bundle come back exactly as it was stored.

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use serde_json::{Map, Value};

use crate::model::frame::{ANCHOR_COLS, EVENT_COLS, FRAME_COLS};
use crate::model::{Bundle, Result, Row};

pub(super) fn int_or_none(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Integer(i) => Some(i),
        ValueRef::Real(f) => Some(f as i64),
        _ => None,
    }
}

pub(super) fn sql_of(v: Option<&Value>, json_col: bool) -> SqlValue {
    match v {
        None | Some(Value::Null) => SqlValue::Null,
        Some(v) if json_col => SqlValue::Text(v.to_string()),
        Some(Value::String(s)) => SqlValue::Text(s.clone()),
        Some(Value::Bool(b)) => SqlValue::Integer(*b as i64),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        Some(other) => SqlValue::Text(other.to_string()),
    }
}

pub(super) fn json_of(v: ValueRef<'_>, json_col: bool) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            if json_col {
                // StackMemory writes JSON text; anything else is returned as the text it is.
                serde_json::from_str(&s).unwrap_or_else(|_| Value::String(s.into_owned()))
            } else {
                Value::String(s.into_owned())
            }
        }
        ValueRef::Blob(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
    }
}

pub(super) fn read_rows(
    c: &Connection,
    sql: &str,
    frame_id: &str,
    cols: &[&str],
    json_cols: &[&str],
) -> Result<Vec<Row>> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query([frame_id])?;
    let mut out = vec![];
    while let Some(r) = rows.next()? {
        let mut m = Map::new();
        for (i, col) in cols.iter().enumerate() {
            m.insert(col.to_string(), json_of(r.get_ref(i)?, json_cols.contains(col)));
        }
        out.push(m);
    }
    Ok(out)
}

/// Which keys a row had, when that differs from the standard columns in standard order, plus keys
/// we have no column for. Lets a bundle come back exactly as stored.
fn row_shape(row: &Row, cols: &[&str]) -> Option<Value> {
    let keys: Vec<&str> = row.keys().map(|k| k.as_str()).collect();
    let extras: Map<String, Value> =
        row.iter().filter(|(k, _)| !cols.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    if keys == cols && extras.is_empty() {
        return None;
    }
    let mut m = Map::new();
    m.insert("k".into(), Value::from(keys));
    if !extras.is_empty() {
        m.insert("x".into(), Value::Object(extras));
    }
    Some(Value::Object(m))
}

pub(super) fn bundle_shape(b: &Bundle) -> Option<String> {
    let mut shape = Map::new();
    if let Some(f) = row_shape(&b.frame, FRAME_COLS) {
        shape.insert("f".into(), f);
    }
    for (key, rows, id_col, cols) in
        [("e", &b.events, "event_id", EVENT_COLS), ("a", &b.anchors, "anchor_id", ANCHOR_COLS)]
    {
        let mut per = Map::new();
        for r in rows.iter() {
            if let Some(s) = row_shape(r, cols) {
                per.insert(r.get(id_col).and_then(Value::as_str).unwrap_or("").to_string(), s);
            }
        }
        if !per.is_empty() {
            shape.insert(key.into(), Value::Object(per));
        }
    }
    (!shape.is_empty()).then(|| Value::Object(shape).to_string())
}

pub(super) fn apply_shape(cols_row: Row, shape: Option<&Value>, cols: &[&str]) -> Row {
    let Some(Value::Object(s)) = shape else {
        return cols_row;
    };
    let keys = s.get("k").and_then(Value::as_array);
    let extras = s.get("x").and_then(Value::as_object);
    let Some(keys) = keys else { return cols_row };
    let mut out = Map::new();
    for k in keys.iter().filter_map(Value::as_str) {
        if cols.contains(&k) {
            out.insert(k.to_string(), cols_row.get(k).cloned().unwrap_or(Value::Null));
        } else if let Some(v) = extras.and_then(|x| x.get(k)) {
            out.insert(k.to_string(), v.clone());
        }
    }
    out
}
