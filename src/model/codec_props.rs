//! Property tests of the envelope decoders (`codec::decode`, `decode_with`, `decode_bundle`) on
//! bad bytes: arbitrary input, valid envelopes truncated, bit-flipped, with the wrong magic or a
//! huge declared size. Each must be refused quickly with an error, never a panic, and never by
//! allocating what the header declares (`test_alloc` measures the largest allocation).

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;

use super::codec::{decode, decode_bundle, decode_with, encode, encode_raw, encode_raw_with, Dictionary};
use super::normalize_bundle;
use super::Bundle;
use crate::prop_kit::check;
use crate::test_alloc::{peak, reset_peak};

/// A decode of a few KB must never take longer than this, nor allocate more than this.
const SLOW: Duration = Duration::from_secs(1);
const BIG: usize = 1024 * 1024;

fn fixtures() -> Vec<Bundle> {
    let v: Value = serde_json::from_str(include_str!("../../__test__/fixtures/frames.json")).expect("json");
    v.as_array().expect("array").iter().map(|b| normalize_bundle(b.clone()).expect("valid")).collect()
}

static DICT: LazyLock<Arc<Dictionary>> = LazyLock::new(|| {
    let samples: Vec<Vec<u8>> = (0..64)
        .flat_map(|i| fixtures().into_iter().map(move |b| format!("{i}{}", b.to_value()).into_bytes()))
        .collect();
    Arc::new(Dictionary::train(&samples, 4096).expect("train"))
});

fn lookup(id: u32) -> Option<Arc<Dictionary>> {
    (id == DICT.id).then(|| DICT.clone())
}

/// A valid envelope: (frame id, raw JSON, envelope bytes).
type Envelope = (String, Vec<u8>, Vec<u8>);

/// Valid envelopes of each fixture, both formats.
static ENVELOPES: LazyLock<Vec<Envelope>> = LazyLock::new(|| {
    let mut out = vec![];
    for b in fixtures() {
        let e = encode(&b, 3).expect("encode");
        let raw = b.canonical_bytes();
        let d = encode_raw_with(b.frame_id().to_string(), &raw, 3, &DICT).expect("encode");
        out.push((b.frame_id().to_string(), raw.clone(), e.bytes));
        out.push((b.frame_id().to_string(), raw, d.bytes));
    }
    out
});

/// Every decoder on `bytes`: none may panic, be slow or allocate a megabyte; whatever decodes must
/// be the original bytes when `original` is given (a flip the checksum missed would be data loss).
fn all_decoders(bytes: &[u8], original: Option<&[u8]>) -> Result<(), TestCaseError> {
    // The dictionary is built on first use: not inside the measurement.
    LazyLock::force(&DICT);
    let t = Instant::now();
    reset_peak();
    let plain = decode(bytes);
    let with = decode_with(bytes, &lookup);
    let bundle = decode_bundle("f", "cold", bytes);
    let (elapsed, largest) = (t.elapsed(), peak());
    prop_assert!(elapsed < SLOW, "decoding {} bytes took {elapsed:?}", bytes.len());
    prop_assert!(largest < BIG.max(bytes.len() * 64), "decoding {} bytes allocated {largest}", bytes.len());
    if let Some(o) = original {
        for (raw, _) in [&plain, &with].into_iter().flatten() {
            prop_assert_eq!(raw.as_slice(), o);
        }
    }
    if let Err(e) = bundle {
        prop_assert_eq!(e.code(), "ERR_CORRUPT");
    }
    Ok(())
}

#[test]
fn arbitrary_bytes_are_refused() {
    let bytes = prop::collection::vec(any::<u8>(), 0..600);
    check("codec: arbitrary bytes", file!(), 10_000, bytes, |b| all_decoders(&b, None));
}

#[test]
fn arbitrary_bytes_behind_a_valid_header_start_are_refused() {
    let s = (prop_oneof![Just(1u8), Just(2u8), any::<u8>()], prop::collection::vec(any::<u8>(), 0..600));
    check("codec: SMT + format + arbitrary bytes", file!(), 10_000, s, |(format, rest)| {
        let mut b = b"SMT".to_vec();
        b.push(format);
        b.extend(rest);
        all_decoders(&b, None)
    });
}

#[test]
fn every_truncation_of_a_valid_envelope_is_refused() {
    for (id, raw, env) in ENVELOPES.iter() {
        assert_eq!(decode_with(env, &lookup).expect("whole").0, *raw);
        if super::codec::dictionary_id(env).is_none() {
            assert_eq!(decode_bundle(id, "cold", env).map(|b| b.canonical_bytes()).as_ref(), Ok(raw));
        }
        for n in 0..env.len() {
            let cut = &env[..n];
            assert!(decode_with(cut, &lookup).is_err() && decode(cut).is_err(), "{n} of {} bytes decoded", env.len());
            all_decoders(cut, Some(raw)).expect("truncated");
        }
    }
}

#[test]
fn bit_flips_are_refused_or_harmless() {
    let s = (0..ENVELOPES.len(), prop::collection::vec(any::<prop::sample::Index>(), 1..4), 0u8..8);
    check("codec: bit flips", file!(), 10_000, s, |(which, at, bit)| {
        let (_, raw, env) = &ENVELOPES[which];
        let mut b = env.clone();
        for i in &at {
            b[i.index(env.len())] ^= 1 << bit;
        }
        all_decoders(&b, Some(raw))
    });
}

#[test]
fn wrong_magic_is_refused() {
    let s = (0..ENVELOPES.len(), any::<[u8; 3]>().prop_filter("not the magic", |m| m != b"SMT"));
    check("codec: wrong magic", file!(), 2000, s, |(which, magic)| {
        let mut b = ENVELOPES[which].2.clone();
        b[..3].copy_from_slice(&magic);
        prop_assert!(decode(&b).is_err() && decode_with(&b, &lookup).is_err());
        all_decoders(&b, None)
    });
}

#[test]
fn a_wrong_declared_size_is_refused_without_allocating_it() {
    let sizes = prop_oneof![any::<u32>(), 0u32..=4096, (200u32 << 20)..=(256u32 << 20), Just(u32::MAX)];
    check("codec: declared size", file!(), 5000, (0..ENVELOPES.len(), sizes), |(which, size)| {
        let (_, raw, env) = &ENVELOPES[which];
        prop_assume!(size as usize != raw.len());
        let mut b = env.clone();
        b[12..16].copy_from_slice(&size.to_le_bytes());
        prop_assert!(decode_with(&b, &lookup).is_err());
        all_decoders(&b, Some(raw))
    });
}

/// A zstd frame that itself claims the huge size (its own header agrees with ours), with almost
/// nothing behind it: only the payload's length can tell it is false.
#[test]
fn a_payload_too_short_for_its_size_is_refused_without_allocating_it() {
    // Past 32 KiB per payload byte (at most ~100 bytes here): no zstd frame inflates that far.
    let s = ((4usize << 20)..=(256 << 20), prop::collection::vec(any::<u8>(), 0..64));
    check("codec: short payload, huge size", file!(), 2000, s, |(size, junk)| {
        let zero = zstd::bulk::compress(&vec![b' '; 4096], 1).expect("zstd");
        let mut payload = zstd::bulk::compress(&[], 1).expect("zstd");
        payload.truncate(4);
        // Frame header descriptor: 8-byte content size, single segment; then the size itself.
        payload.push(0xE0);
        payload.extend_from_slice(&(size as u64).to_le_bytes());
        payload.extend_from_slice(&junk);
        payload.extend_from_slice(&zero[zero.len().min(8)..]);
        let mut b = encode_raw("f".into(), b"{}", 3).expect("encode").bytes;
        b.truncate(16);
        b[12..16].copy_from_slice(&(size as u32).to_le_bytes());
        b.extend_from_slice(&payload);
        prop_assert!(decode(&b).is_err());
        all_decoders(&b, None)
    });
}

#[test]
fn any_json_in_a_valid_envelope_decodes_to_a_bundle_or_err_corrupt() {
    let s = crate::prop_kit::json(&["frame", "events", "anchors", "frame_id", "run_id", "project_id", "type", "name"]);
    check("codec: decode_bundle of any JSON", file!(), 3000, s, |v| {
        let raw = serde_json::to_vec(&v).expect("json");
        let env = encode_raw("f".into(), &raw, 1).expect("encode").bytes;
        match decode_bundle("f", "warm", &env) {
            Ok(b) => prop_assert_eq!(b.frame_id(), "f"),
            Err(e) => prop_assert_eq!(e.code(), "ERR_CORRUPT"),
        }
        Ok(())
    });
}
