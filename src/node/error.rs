//! The one place core results become JS results.
//!
//! napi's async bridge only rejects with `napi::Error<Status>`, whose JS `code` would be a napi
//! status such as `GenericFailure`. So the reason carries our stable code as a prefix,
//! `"ERR_CLOSED: TierManager is closed"`, and `index.js` (the loader) moves it to `err.code`.

use serde::Serialize;

use crate::model::{Result, TierError};

pub fn js_err(e: TierError) -> napi::Error {
    to_js(e)
}

fn to_js(e: TierError) -> napi::Error {
    crate::obs::log::count_error(crate::obs::log::ErrorKind::Returned, e.code());
    napi::Error::new(napi::Status::GenericFailure, format!("{}: {}", e.code(), e))
}

/// A core result as a JS result.
pub fn js<T>(r: Result<T>) -> napi::Result<T> {
    r.map_err(to_js)
}

/// A large report as JSON text (`index.js` parses it): a report of 100k frames is over napi's
/// 1M-value limit for converting a serde value.
pub fn report_text<T: Serialize>(r: Result<T>) -> napi::Result<String> {
    let v = js(r)?;
    serde_json::to_string(&v).map_err(|e| to_js(TierError::storage("report", e)))
}

/// A synchronous entry (it runs on the JS thread): a panic inside becomes an `ERR_STORAGE` error
/// instead of unwinding into Node.
pub fn guarded<T>(f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(to_js(TierError::storage("internal error", "a synchronous call panicked"))),
    }
}
