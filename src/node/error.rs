//! The one place core errors become JS errors.
//!
//! napi's async bridge only rejects with `napi::Error<Status>`, whose JS `code` would be a napi
//! status such as `GenericFailure`. So the reason carries our stable code as a prefix,
//! `"ERR_CLOSED: TierManager is closed"`, and `index.js` (the loader) moves it to `err.code`.

use crate::model::TierError;

pub fn to_js(e: TierError) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, format!("{}: {}", e.code(), e))
}

pub fn invalid_arg(field: &str, message: impl std::fmt::Display) -> napi::Error {
    to_js(TierError::invalid_argument(field, message.to_string()))
}
