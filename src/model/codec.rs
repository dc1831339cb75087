//! The envelope a frame bundle travels in to Redis and PostgreSQL:
//! `b"SMT" | format u8 | xxh3-64 of the JSON u64 LE | JSON length u32 LE | zstd(JSON)`.
//! The checksum is over the uncompressed canonical JSON, so a copy can be verified wherever it is.
//!
//! Format 2 (`encode_raw_with`, `decode_with`) is the same with a `u32 LE` dictionary id after the
//! length, the payload compressed with that zstd dictionary (`Dictionary::train`). Format 1
//! envelopes stay readable by both decoders. `decode` reads format 2 with the dictionaries of
//! this process's registry (`register`); the mover loads a dictionary there (from SQLite or
//! PostgreSQL, `moves/dictionaries.rs`) before it decodes an envelope that names it.

use super::frame::{checksum, Bundle};
use crate::model::{Result, TierError};

const MAGIC: &[u8; 3] = b"SMT";
const FORMAT: u8 = 1;
const FORMAT_DICT: u8 = 2;
const HEADER: usize = 3 + 1 + 8 + 4;
const HEADER_DICT: usize = HEADER + 4;
/// Refuse to inflate anything claiming to be larger than this (a corrupt header must not OOM us).
const MAX_RAW: u32 = 256 * 1024 * 1024;
/// The most one byte of a zstd frame can inflate to: a 128 KiB block (zstd's largest) stored as a
/// 4-byte RLE block. A declared size past `payload × this` cannot be true, whatever the payload.
const MAX_ZSTD_RATIO: usize = 32 * 1024;

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
    let compressed = deflate(raw, level, None)?;
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
    let header = match bytes.get(3) {
        Some(&FORMAT) => HEADER,
        Some(&FORMAT_DICT) => HEADER_DICT,
        _ => return None,
    };
    if bytes.len() < header || &bytes[0..3] != MAGIC {
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
    if bytes[3] == FORMAT_DICT {
        return decode_with(bytes, &registered);
    }
    if bytes[3] != FORMAT {
        return Err(format!("unknown envelope format {}", bytes[3]));
    }
    let (want, raw_len) = sizes(bytes)?;
    let payload = &bytes[HEADER..];
    plausible(payload, raw_len)?;
    let raw = inflate(payload, raw_len as usize, None)?;
    checked(raw, raw_len, want)
}

thread_local! {
    /// One zstd context of each kind per thread, reused: setting one up (hundreds of KB of tables)
    /// costs more than compressing or decompressing a typical frame.
    static CCTX: std::cell::RefCell<Option<zstd::zstd_safe::CCtx<'static>>> = const { std::cell::RefCell::new(None) };
    static DCTX: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { std::cell::RefCell::new(None) };
}

/// zstd of `raw` (with the dictionary's prepared tables when given), the content size in the frame.
fn deflate(raw: &[u8], level: i32, dict: Option<&zstd::dict::EncoderDictionary<'_>>) -> Result<Vec<u8>> {
    CCTX.with(|c| {
        let mut c = c.try_borrow_mut().map_err(|_| TierError::storage("zstd compress", "context in use"))?;
        let ctx = match &mut *c {
            Some(ctx) => ctx,
            None => c.insert(
                zstd::zstd_safe::CCtx::try_create().ok_or_else(|| TierError::storage("zstd compress", "no memory"))?,
            ),
        };
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
        let r = match dict {
            None => ctx.compress(&mut out, raw, level),
            Some(d) => ctx.compress_using_cdict(&mut out, raw, d.as_cdict()),
        };
        r.map_err(|code| TierError::storage("zstd compress", zstd::zstd_safe::get_error_name(code)))?;
        Ok(out)
    })
}

/// The `raw_len` bytes of a zstd frame (the caller checked its declared size is plausible).
fn inflate(payload: &[u8], raw_len: usize, dict: Option<&Dictionary>) -> std::result::Result<Vec<u8>, String> {
    DCTX.with(|c| {
        let mut c = c.try_borrow_mut().map_err(|_| "zstd: context in use".to_string())?;
        let ctx = match &mut *c {
            Some(ctx) => ctx,
            None => c.insert(zstd::zstd_safe::DCtx::try_create().ok_or("zstd: no memory")?),
        };
        let mut out = Vec::with_capacity(raw_len);
        let r = match dict {
            None => ctx.decompress(&mut out, payload),
            Some(d) => ctx.decompress_using_ddict(&mut out, payload, d.decoder.as_ddict()),
        };
        r.map_err(|code| format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))?;
        Ok(out)
    })
}

/// The header's checksum and declared raw length (bounded: a huge claim is refused before any
/// allocation). The caller checked the length of the header.
fn sizes(bytes: &[u8]) -> std::result::Result<(u64, u32), String> {
    let mut s = [0u8; 8];
    s.copy_from_slice(&bytes[4..12]);
    let mut l = [0u8; 4];
    l.copy_from_slice(&bytes[12..16]);
    let raw_len = u32::from_le_bytes(l);
    if raw_len > MAX_RAW {
        return Err(format!("envelope claims {raw_len} bytes"));
    }
    Ok((u64::from_le_bytes(s), raw_len))
}

/// Whether the payload can hold `raw_len` bytes, checked before zstd allocates that much for its
/// output: the zstd frame's own content size (our encoders always write it) must be the header's,
/// and within what the payload's length can inflate to. A corrupt length field, or a short payload
/// under a huge claim, is refused here without allocating anything.
fn plausible(payload: &[u8], raw_len: u32) -> std::result::Result<(), String> {
    match zstd::zstd_safe::get_frame_content_size(payload) {
        Ok(Some(n)) if n == u64::from(raw_len) => {}
        Ok(Some(n)) => return Err(format!("zstd frame holds {n} bytes, header says {raw_len}")),
        Ok(None) | Err(_) => return Err("payload is not a zstd frame with its size".into()),
    }
    if raw_len as usize > payload.len().saturating_mul(MAX_ZSTD_RATIO) {
        return Err(format!("envelope claims {raw_len} bytes from a {}-byte payload", payload.len()));
    }
    Ok(())
}

/// Decompressed bytes checked against the header's length and checksum.
fn checked(raw: Vec<u8>, raw_len: u32, want: u64) -> std::result::Result<(Vec<u8>, String), String> {
    if raw.len() != raw_len as usize {
        return Err(format!("length {} differs from header {raw_len}", raw.len()));
    }
    let got = xxhash_rust::xxh3::xxh3_64(&raw);
    if got != want {
        return Err(format!("checksum {got:016x} differs from header {want:016x}"));
    }
    Ok((raw, format!("{want:016x}")))
}

/// A zstd dictionary trained on a sample of frames; its id (xxh3 of its bytes, truncated, never 0)
/// goes into every envelope it compressed. Kept prepared for decoding (zstd's `DDict`), so a read
/// does not parse the dictionary again.
pub struct Dictionary {
    pub id: u32,
    pub bytes: Vec<u8>,
    decoder: zstd::dict::DecoderDictionary<'static>,
    /// Prepared for compressing at one level (the first one asked for; other levels prepare it
    /// per call).
    encoder: std::sync::OnceLock<(i32, zstd::dict::EncoderDictionary<'static>)>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dictionary {{ id: {}, {} bytes }}", self.id, self.bytes.len())
    }
}

impl Dictionary {
    pub fn new(bytes: Vec<u8>) -> Dictionary {
        let id = (xxhash_rust::xxh3::xxh3_64(&bytes) as u32).max(1);
        let decoder = zstd::dict::DecoderDictionary::copy(&bytes);
        Dictionary { id, bytes, decoder, encoder: std::sync::OnceLock::new() }
    }

    /// A stored or fetched copy of dictionary `id`: the dictionary when its bytes hash to `id`,
    /// else the id they hash to (such a copy must not decode anything).
    pub fn named(id: u32, bytes: Vec<u8>) -> std::result::Result<Dictionary, u32> {
        let d = Dictionary::new(bytes);
        if d.id == id {
            Ok(d)
        } else {
            Err(d.id)
        }
    }

    /// zstd's dictionary builder over `samples` (canonical JSON of frames), at most `max_size` bytes.
    pub fn train<S: AsRef<[u8]>>(samples: &[S], max_size: usize) -> Result<Dictionary> {
        let d = zstd::dict::from_samples(samples, max_size).map_err(|e| TierError::storage("zstd dictionary", e))?;
        Ok(Dictionary::new(d))
    }
}

/// The dictionaries this process can decode with, by id. An id is a hash of the dictionary's
/// bytes, so the same id names the same dictionary in every process and every manager: one
/// registry serves them all. Dictionaries are small (16 KiB by default) and few (one per project,
/// plus the older ones retraining left), and are never dropped while the process runs.
static REGISTRY: std::sync::RwLock<Vec<std::sync::Arc<Dictionary>>> = std::sync::RwLock::new(Vec::new());

/// Add a dictionary to the registry (a no-op when it is there). Two dictionaries with one id and
/// different bytes (a hash collision) are refused: an envelope must name one dictionary only.
pub fn register(d: std::sync::Arc<Dictionary>) -> Result<()> {
    let mut g = REGISTRY.write().map_err(|_| TierError::storage("dictionary registry", "poisoned"))?;
    match g.iter().find(|x| x.id == d.id) {
        Some(x) if x.bytes == d.bytes => Ok(()),
        Some(_) => Err(TierError::storage("dictionary registry", format!("dictionary id {} collides", d.id))),
        None => {
            g.push(d);
            Ok(())
        }
    }
}

/// A registered dictionary.
pub fn registered(id: u32) -> Option<std::sync::Arc<Dictionary>> {
    REGISTRY.read().ok()?.iter().find(|x| x.id == id).cloned()
}

/// `encode` with the dictionary when there is one: a format 2 envelope, else format 1.
pub fn encode_maybe_with(bundle: &Bundle, level: i32, dict: Option<&Dictionary>) -> Result<Encoded> {
    match dict {
        None => encode(bundle, level),
        Some(d) => encode_raw_with(bundle.frame_id().to_string(), &bundle.canonical_bytes(), level, d),
    }
}

/// `encode_raw` with a dictionary: a format 2 envelope naming it.
pub fn encode_raw_with(frame_id: String, raw: &[u8], level: i32, dict: &Dictionary) -> Result<Encoded> {
    let sum = xxhash_rust::xxh3::xxh3_64(raw);
    let (at, prepared) = dict.encoder.get_or_init(|| (level, zstd::dict::EncoderDictionary::copy(&dict.bytes, level)));
    let compressed = if *at == level {
        deflate(raw, level, Some(prepared))?
    } else {
        deflate(raw, level, Some(&zstd::dict::EncoderDictionary::copy(&dict.bytes, level)))?
    };
    let mut bytes = Vec::with_capacity(HEADER_DICT + compressed.len());
    bytes.extend_from_slice(MAGIC);
    bytes.push(FORMAT_DICT);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&dict.id.to_le_bytes());
    bytes.extend_from_slice(&compressed);
    Ok(Encoded { frame_id, bytes, checksum: format!("{sum:016x}"), raw_size: raw.len() })
}

/// The dictionary id of a format 2 envelope (`None`: format 1, or not an envelope).
pub fn dictionary_id(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < HEADER_DICT || &bytes[0..3] != MAGIC || bytes[3] != FORMAT_DICT {
        return None;
    }
    let mut d = [0u8; 4];
    d.copy_from_slice(&bytes[HEADER..HEADER_DICT]);
    Some(u32::from_le_bytes(d))
}

/// `decode` for both formats: a format 2 envelope's dictionary comes from `dict` by its id.
pub fn decode_with(
    bytes: &[u8],
    dict: &dyn Fn(u32) -> Option<std::sync::Arc<Dictionary>>,
) -> std::result::Result<(Vec<u8>, String), String> {
    let Some(id) = dictionary_id(bytes) else {
        if bytes.get(3) == Some(&FORMAT_DICT) {
            // Not `decode`: it hands format 2 back here.
            return Err("envelope shorter than its header, or not an envelope".into());
        }
        return decode(bytes);
    };
    let d = dict(id).ok_or_else(|| format!("zstd dictionary {id} not found"))?;
    let (want, raw_len) = sizes(bytes)?;
    plausible(&bytes[HEADER_DICT..], raw_len)?;
    let raw = inflate(&bytes[HEADER_DICT..], raw_len as usize, Some(&d))?;
    checked(raw, raw_len, want)
}

/// Decode and parse an envelope back into a bundle, naming the tier in errors.
pub fn decode_bundle(frame_id: &str, tier: &str, bytes: &[u8]) -> Result<Bundle> {
    let (raw, _) = decode(bytes).map_err(|m| TierError::Corrupt {
        frame_id: frame_id.to_string(),
        tier: tier.to_string(),
        message: m,
    })?;
    bundle_from_raw(frame_id, tier, &raw)
}

/// The bundle in an envelope's verified JSON bytes, which must be `frame_id`'s.
pub fn bundle_from_raw(frame_id: &str, tier: &str, raw: &[u8]) -> Result<Bundle> {
    let v: serde_json::Value = serde_json::from_slice(raw).map_err(|e| TierError::Corrupt {
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

    /// Found by fuzzing (`codec_props.rs`): a header declaring 200 MB over a 40-byte payload made
    /// zstd allocate the 200 MB for its output before finding the payload short.
    #[test]
    fn a_huge_declared_size_is_refused_before_any_allocation() {
        let e = encode_raw("x".into(), b"{\"frame\":{}}", 3).expect("encode");
        let mut bad = e.bytes.clone();
        bad[12..16].copy_from_slice(&(200u32 * 1024 * 1024).to_le_bytes());
        crate::test_alloc::reset_peak();
        assert!(decode(&bad).is_err());
        assert!(crate::test_alloc::peak() < 1024 * 1024, "largest allocation {} bytes", crate::test_alloc::peak());
    }

    /// Found by fuzzing (`normalize_props.rs`): serde_json's default float parser is off by one
    /// unit in the last place on some numbers (-6.959233769339269e-290 came back as
    /// -6.95923376933927e-290), so a bundle changed, and its checksum with it, on its way through
    /// an envelope. serde_json's `float_roundtrip` feature is on since.
    #[test]
    fn floats_survive_the_envelope_exactly() {
        for x in [-6.959233769339269e-290, 5e-324, f64::MAX, 0.1 + 0.2, 1.7976931348623157e308, 2.2250738585072014e-308]
        {
            let b = crate::model::normalize_bundle(serde_json::json!({"frame": {"frame_id": "f", "run_id": "r",
                "project_id": "p", "type": "t", "name": "n", "inputs": {"x": x}}}))
            .expect("valid");
            let e = encode(&b, 3).expect("encode");
            let back = decode_bundle("f", "cold", &e.bytes).expect("decode");
            assert_eq!(back.frame["inputs"]["x"].as_f64(), Some(x));
            assert_eq!(back.canonical_bytes(), b.canonical_bytes());
        }
    }

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

    /// StackMemory-shaped frames (keys, event shapes, the digest twice), varied by a seeded rng.
    fn frames(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let words = [
            "refactor",
            "parser",
            "cache",
            "timeout",
            "retry",
            "migration",
            "schema",
            "index",
            "token",
            "session",
            "deploy",
            "lint",
            "review",
            "bundle",
            "worker",
            "queue",
            "redis",
            "postgres",
            "sqlite",
            "frame",
        ];
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|i| {
                let mut w = |k: usize| (0..k).map(|_| words[(next() % 20) as usize]).collect::<Vec<_>>().join(" ");
                let digest = w(12);
                let events: Vec<String> = (0..6)
                    .map(|j| {
                        format!(
                            r#"{{"event_id":"e-{i}-{j}","event_type":"tool_call","frame_id":"f-{i}","payload":{{"content":"{}","tool":"bash","exit_code":0}},"run_id":"run-{i}","seq":{j},"ts":{}}}"#,
                            w(10),
                            1_700_000_000_000u64 + (i * 1000 + j) as u64
                        )
                    })
                    .collect();
                format!(
                    r#"{{"anchors":[{{"anchor_id":"a-{i}","priority":1,"text":"{}","type":"FACT"}}],"events":[{}],"frame":{{"closed_at":1700000900,"created_at":1700000000,"depth":1,"digest_json":{{"summary":"{digest}"}},"digest_text":"{digest}","frame_id":"f-{i}","inputs":{{"goals":"{}"}},"name":"{}","outputs":{{"summary":"{}"}},"project_id":"git-github-com-acme-widget","run_id":"run-{i}","state":"closed","type":"task"}}}}"#,
                    w(8),
                    events.join(","),
                    w(6),
                    w(3),
                    w(8)
                )
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn dictionary_envelopes_round_trip_and_old_frames_stay_readable() {
        let train = frames(400, 1);
        let held_out = frames(200, 2);
        let dict = std::sync::Arc::new(Dictionary::train(&train, 16 * 1024).expect("train"));
        let lookup = |id: u32| (id == dict.id).then(|| dict.clone());
        let (mut raw, mut plain, mut with) = (0usize, 0usize, 0usize);
        for (i, f) in held_out.iter().enumerate() {
            let e = encode_raw_with(format!("f-{i}"), f, 3, &dict).expect("encode");
            assert_eq!(dictionary_id(&e.bytes), Some(dict.id));
            assert_eq!(header_checksum(&e.bytes), Some(e.checksum.clone()));
            let (back, sum) = decode_with(&e.bytes, &lookup).expect("decode");
            assert_eq!((&back, &sum), (f, &e.checksum));
            assert!(registered(dict.id).is_some() || decode(&e.bytes).is_err(), "format 2 needs its dictionary");
            assert!(decode_with(&e.bytes, &|_| None).is_err());
            let old = encode_raw(format!("f-{i}"), f, 3).expect("encode");
            assert_eq!(decode_with(&old.bytes, &lookup).expect("format 1").0, *f);
            raw += f.len();
            plain += old.bytes.len();
            with += e.bytes.len();
        }
        // Decompression speed, each envelope decoded (and verified) 20 times.
        let enc_plain: Vec<Encoded> = held_out.iter().map(|f| encode_raw("f".into(), f, 3).expect("encode")).collect();
        let enc_dict: Vec<Encoded> =
            held_out.iter().map(|f| encode_raw_with("f".into(), f, 3, &dict).expect("encode")).collect();
        let t = std::time::Instant::now();
        for _ in 0..20 {
            for e in &enc_plain {
                decode(&e.bytes).expect("decode");
            }
        }
        let t_plain = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for _ in 0..20 {
            for e in &enc_dict {
                decode_with(&e.bytes, &lookup).expect("decode");
            }
        }
        let t_dict = t.elapsed().as_secs_f64();
        let mb = (raw * 20) as f64 / 1e6;
        eprintln!("decode: plain {:.0} MB/s, with the dictionary {:.0} MB/s", mb / t_plain, mb / t_dict);
        let (rp, rd) = (raw as f64 / plain as f64, raw as f64 / with as f64);
        eprintln!("zstd-3 ratio on held-out synthetic frames: plain {rp:.2}x, with a 16 KB dictionary {rd:.2}x ({:.2}x plain)", rd / rp);
        assert!(rd > rp);
    }
}
