//! The envelope a frame bundle travels in to Redis and PostgreSQL:
//! `b"SMT" | format u8 | xxh3-64 of the JSON u64 LE | JSON length u32 LE | zstd(JSON)`.
//! The checksum is over the uncompressed canonical JSON, so a copy can be verified wherever it is.

use super::frame::{checksum, Bundle};
use crate::model::{Result, TierError};

const MAGIC: &[u8; 3] = b"SMT";
const FORMAT: u8 = 1;
const HEADER: usize = 3 + 1 + 8 + 4;
/// Refuse to inflate anything claiming to be larger than this (a corrupt header must not OOM us).
const MAX_RAW: u32 = 256 * 1024 * 1024;

/// A bundle ready to be written to a remote tier.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub frame_id: String,
    /// The envelope (header + zstd payload).
    pub bytes: Vec<u8>,
    /// xxh3-64 of the canonical JSON, 16 hex digits.
    pub checksum: String,
    pub raw_size: usize,
}

pub fn encode(bundle: &Bundle, level: i32) -> Result<Encoded> {
    let raw = bundle.canonical_bytes();
    encode_raw(bundle.frame_id().to_string(), &raw, level)
}

pub fn encode_raw(frame_id: String, raw: &[u8], level: i32) -> Result<Encoded> {
    let sum = xxhash_rust::xxh3::xxh3_64(raw);
    let compressed = zstd::bulk::compress(raw, level).map_err(|e| TierError::storage("zstd compress", e))?;
    let mut bytes = Vec::with_capacity(HEADER + compressed.len());
    bytes.extend_from_slice(MAGIC);
    bytes.push(FORMAT);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&compressed);
    Ok(Encoded { frame_id, bytes, checksum: format!("{sum:016x}"), raw_size: raw.len() })
}

/// The checksum an envelope claims, without decompressing it.
pub fn header_checksum(bytes: &[u8]) -> Option<String> {
    if bytes.len() < HEADER || &bytes[0..3] != MAGIC || bytes[3] != FORMAT {
        return None;
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&bytes[4..12]);
    Some(format!("{:016x}", u64::from_le_bytes(s)))
}

/// Decompress an envelope and verify its checksum; returns the JSON bytes and the checksum.
pub fn decode(bytes: &[u8]) -> std::result::Result<(Vec<u8>, String), String> {
    if bytes.len() < HEADER {
        return Err("envelope shorter than its header".into());
    }
    if &bytes[0..3] != MAGIC {
        return Err("not a stackmemory-tiers envelope".into());
    }
    if bytes[3] != FORMAT {
        return Err(format!("unknown envelope format {}", bytes[3]));
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&bytes[4..12]);
    let want = u64::from_le_bytes(s);
    let mut l = [0u8; 4];
    l.copy_from_slice(&bytes[12..16]);
    let raw_len = u32::from_le_bytes(l);
    if raw_len > MAX_RAW {
        return Err(format!("envelope claims {raw_len} bytes"));
    }
    let raw = zstd::bulk::decompress(&bytes[HEADER..], raw_len as usize).map_err(|e| format!("zstd: {e}"))?;
    if raw.len() != raw_len as usize {
        return Err(format!("length {} differs from header {raw_len}", raw.len()));
    }
    let got = xxhash_rust::xxh3::xxh3_64(&raw);
    if got != want {
        return Err(format!("checksum {got:016x} differs from header {want:016x}"));
    }
    Ok((raw, format!("{want:016x}")))
}

/// Decode and parse an envelope back into a bundle, naming the tier in errors.
pub fn decode_bundle(frame_id: &str, tier: &str, bytes: &[u8]) -> Result<Bundle> {
    let (raw, _) = decode(bytes).map_err(|m| TierError::Corrupt {
        frame_id: frame_id.to_string(),
        tier: tier.to_string(),
        message: m,
    })?;
    let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| TierError::Corrupt {
        frame_id: frame_id.to_string(),
        tier: tier.to_string(),
        message: format!("json: {e}"),
    })?;
    let b = Bundle::from_stored_value(v).map_err(|e| TierError::Corrupt {
        frame_id: frame_id.to_string(),
        tier: tier.to_string(),
        message: e.to_string(),
    })?;
    if b.frame_id() != frame_id {
        return Err(TierError::Corrupt {
            frame_id: frame_id.to_string(),
            tier: tier.to_string(),
            message: format!("holds frame {}", b.frame_id()),
        });
    }
    Ok(b)
}

/// Checksum of a bundle as the mover computes it before a copy.
pub fn bundle_checksum(b: &Bundle) -> String {
    checksum(&b.canonical_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let raw = br#"{"frame":{"frame_id":"x"}}"#;
        let e = encode_raw("x".into(), raw, 3).expect("encode");
        let (back, sum) = decode(&e.bytes).expect("decode");
        assert_eq!(back, raw);
        assert_eq!(sum, e.checksum);
        assert_eq!(header_checksum(&e.bytes), Some(e.checksum.clone()));
        let mut bad = e.bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(decode(&bad).is_err());
        assert!(decode(b"SMT").is_err());
        assert!(decode(b"garbage-garbage-garbage").is_err());
    }
}
