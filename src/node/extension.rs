//! The SQLite extension entry point of this very `.node` file. better-sqlite3 calls it through
//! `db.loadExtension(<this file>, 'sqlite3_stackmemorytiers_init')`; it binds the hot tier to the
//! host's library (`tiers/hot/library.rs`) and asks SQLite to keep the extension loaded.

use std::ffi::{c_char, c_int, CString};

use napi_derive::napi;
use rusqlite::{ffi, Connection};

use crate::tiers::hot::library;

/// The name the JS loader passes to `loadExtension`.
pub const ENTRY_POINT: &str = "sqlite3_stackmemorytiers_init";

/// Called by SQLite (inside `sqlite3_load_extension`) with the loading connection and its library's
/// API table. Checks the host's version and that no other library was bound, before rusqlite
/// initialises its API pointers: a version mismatch inside rusqlite would call an uninitialised
/// pointer and abort the process.
///
/// # Safety
/// Called by SQLite with valid pointers, as `sqlite3_load_extension` documents.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_stackmemorytiers_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    let run = std::panic::catch_unwind(|| {
        if p_api.is_null() {
            return ffi::SQLITE_ERROR;
        }
        let Some(version) = (*p_api).libversion_number else { return ffi::SQLITE_ERROR };
        let bound_before = library::current().is_some();
        if let Err(why) = library::bind(p_api as usize, version()) {
            set_error(p_api, pz_err_msg, &why);
            return ffi::SQLITE_ERROR;
        }
        if bound_before {
            // The same library again (another Database of the host): already initialised.
            return ffi::SQLITE_OK_LOAD_PERMANENTLY;
        }
        Connection::extension_init2(db, pz_err_msg, p_api, |_| Ok(true))
    });
    run.unwrap_or(ffi::SQLITE_ERROR)
}

/// `*pz_err_msg` must come from the host's `sqlite3_malloc`: its own `mprintf` makes it.
unsafe fn set_error(p_api: *mut ffi::sqlite3_api_routines, pz_err_msg: *mut *mut c_char, msg: &str) {
    let (Some(mprintf), false) = ((*p_api).mprintf, pz_err_msg.is_null()) else { return };
    if let Ok(text) = CString::new(msg) {
        *pz_err_msg = mprintf(c"%s".as_ptr(), text.as_ptr());
    }
}

/// The file this addon was loaded from (the one `loadExtension` must be given: the same file,
/// so the dynamic loader returns the module Node already has, not a second copy).
#[napi(skip_typescript)]
pub fn addon_path() -> Option<String> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let addr = sqlite3_stackmemorytiers_init as *const libc::c_void;
    // SAFETY: dladdr only reads the loader's tables for an address of our own code.
    let ok = unsafe { libc::dladdr(addr, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    name.to_str().ok().map(str::to_string)
}

/// The extension's entry point name.
#[napi(skip_typescript)]
pub fn extension_entry_point() -> String {
    ENTRY_POINT.to_string()
}

/// The SQLite library the addon is bound to, or null before the host loaded it.
#[napi(ts_return_type = "{ version: string, origin: string } | null")]
pub fn sqlite_library() -> Option<serde_json::Value> {
    library::current().map(|l| serde_json::json!({"version": l.version(), "origin": l.origin}))
}
