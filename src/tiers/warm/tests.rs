//! The warm tier against the test Redis (`REDIS_TEST_URL`): accounting, eviction, orphans, outages.
use super::frames::WarmItem;
use super::keys::{frame_key, glob_escape, info_field, meta_key};
use super::*;
use crate::model::codec;
use crate::model::EvictionStrategy;
use redis::AsyncCommands;

fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn test_cfg(strategy: EvictionStrategy, max_size: u64, ttl_secs: u64) -> RedisConfig {
    RedisConfig {
        enabled: true,
        connection_string: Some(redis_url()),
        ttl_secs,
        max_size,
        key_prefix: format!("t:{:016x}:", rand::random::<u64>()),
        connect_timeout_ms: 2000,
        eviction_strategy: strategy,
        cluster: false,
        ca_file: None,
    }
}

async fn tier(strategy: EvictionStrategy, max_size: u64, ttl_secs: u64) -> WarmTier {
    WarmTier::connect(&test_cfg(strategy, max_size, ttl_secs)).await.expect("connect to test Redis")
}

/// An envelope whose size differs per id (padding), so size accounting is really tested.
fn item(id: &str, created_s: i64, access_count: u64) -> WarmItem {
    let pad: String = id.repeat(50 + 10 * id.len());
    let raw = serde_json::to_vec(&serde_json::json!({"frame": {"frame_id": id}, "pad": pad})).expect("json");
    let enc = codec::encode_raw(id.to_string(), &raw, 3).expect("encode");
    WarmItem { frame_id: id.to_string(), bytes: enc.bytes, created_s, access_count, version: 0 }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn exists(t: &WarmTier, key: &str) -> bool {
    let mut c = t.conn.lock().expect("lock").clone();
    c.exists::<_, bool>(key).await.expect("exists")
}

#[tokio::test]
async fn put_get_round_trip() {
    let t = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
    let a = item("a", 100, 2);
    let b = item("b", 200, 0);
    t.put_many(&[a.clone(), b.clone()]).await.expect("put");
    let got = t.get("a").await.expect("get").expect("hit");
    assert_eq!(got, a.bytes);
    assert_eq!(codec::header_checksum(&got), codec::header_checksum(&a.bytes));
    assert!(codec::decode(&got).is_ok());
    assert_eq!(t.get("missing").await.expect("get"), None);

    // Meta hash and indexes.
    let mut c = t.conn.lock().expect("lock").clone();
    let p = &t.cfg.key_prefix;
    let meta: std::collections::HashMap<String, String> = c.hgetall(meta_key(p, "a")).await.expect("meta");
    assert_eq!(meta.get("tier").map(String::as_str), Some("2"));
    assert_eq!(meta.get("access_count").map(String::as_str), Some("3"));
    assert_eq!(meta.get("size"), Some(&a.bytes.len().to_string()));
    assert_eq!(meta.get("created_at").map(String::as_str), Some("100"));
    let lfu: Option<f64> = c.zscore(&t.layout.buckets()[0].lfu, "a").await.expect("zscore");
    assert_eq!(lfu, Some(3.0));
    let stats = t.stats().await.expect("stats");
    assert_eq!(stats.frames, 2);
    assert_eq!(stats.bytes, (a.bytes.len() + b.bytes.len()) as u64);

    // Re-put replaces and re-accounts the size.
    let bigger = WarmItem { bytes: item("aaaa", 100, 0).bytes, ..a.clone() };
    t.put_many(std::slice::from_ref(&bigger)).await.expect("re-put");
    let stats = t.stats().await.expect("stats");
    assert_eq!(stats.frames, 2);
    assert_eq!(stats.bytes, (bigger.bytes.len() + b.bytes.len()) as u64);
    assert_eq!(t.get("a").await.expect("get"), Some(bigger.bytes.clone()));

    // Not an envelope: refused before anything is written.
    let bad = WarmItem { frame_id: "bad".into(), bytes: b"plain".to_vec(), created_s: 0, access_count: 0, version: 0 };
    assert!(matches!(t.put_many(&[bad]).await, Err(TierError::InvalidFrame { .. })));
    assert!(t.flush_prefix().await.expect("flush") > 0);
}

#[tokio::test]
async fn an_older_version_never_replaces_a_newer_copy() {
    let t = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
    let v = |version: i64, pad: &str| WarmItem { version, ..item(&format!("f{pad}"), 1, 0) };
    // Three versions of one frame "f" (different bytes each), as three machines might write them.
    let (v1, v2, v3) = (
        WarmItem { frame_id: "f".into(), ..v(1, "a") },
        WarmItem { frame_id: "f".into(), ..v(2, "bb") },
        WarmItem { frame_id: "f".into(), ..v(3, "ccc") },
    );
    assert_eq!(t.put_many(std::slice::from_ref(&v2)).await.expect("put v2").kept_newer, Vec::<String>::new());
    // Older, and unknown (0): kept out; the stored copy is v2's.
    assert_eq!(t.put_many(std::slice::from_ref(&v1)).await.expect("put v1").kept_newer, ids(&["f"]));
    let unknown = WarmItem { version: 0, ..v1.clone() };
    assert_eq!(t.put_many(&[unknown]).await.expect("put v0").kept_newer, ids(&["f"]));
    assert_eq!(t.get("f").await.expect("get"), Some(v2.bytes.clone()));
    // Equal (a re-put of the same version) and newer replace it.
    let again = WarmItem { bytes: v3.bytes.clone(), ..v2.clone() };
    assert!(t.put_many(&[again]).await.expect("re-put v2").kept_newer.is_empty());
    assert!(t.put_many(std::slice::from_ref(&v3)).await.expect("put v3").kept_newer.is_empty());
    assert_eq!(t.get("f").await.expect("get"), Some(v3.bytes.clone()));
    assert_eq!(t.stats().await.expect("stats").bytes, v3.bytes.len() as u64);
    // A copy whose frame key is gone (evicted, expired) does not block an older version.
    t.delete_many(&ids(&["f"])).await.expect("delete");
    assert!(t.put_many(std::slice::from_ref(&v1)).await.expect("put v1").kept_newer.is_empty());
    assert_eq!(t.get("f").await.expect("get"), Some(v1.bytes.clone()));
    assert!(t.flush_prefix().await.expect("flush") > 0);
}

#[tokio::test]
async fn get_renews_ttl() {
    let t = tier(EvictionStrategy::Lru, 1 << 30, 10).await;
    t.put_many(&[item("x", 1, 0)]).await.expect("put");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = t.conn.lock().expect("lock").clone();
    let fk = frame_key(&t.cfg.key_prefix, "x");
    let mk = meta_key(&t.cfg.key_prefix, "x");
    let before: i64 = c.pttl(&fk).await.expect("pttl");
    let meta_before: i64 = c.pttl(&mk).await.expect("pttl");
    assert!(before > 0 && before <= 8_600, "pttl before {before}");
    assert!(meta_before > 0 && meta_before <= 8_600, "meta pttl before {meta_before}");
    assert!(t.get("x").await.expect("get").is_some());
    let after: i64 = c.pttl(&fk).await.expect("pttl");
    let meta_after: i64 = c.pttl(&mk).await.expect("pttl");
    assert!(after > before && after > 9_000, "pttl after {after}");
    assert!(meta_after > meta_before && meta_after > 9_000, "meta pttl after {meta_after}");
    // get_many does not renew.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = t.get_many(&ids(&["x"])).await.expect("get_many");
    let later: i64 = c.pttl(&fk).await.expect("pttl");
    assert!(later < after - 900, "get_many renewed the TTL: {later} vs {after}");
    t.flush_prefix().await.expect("flush");
}

#[tokio::test]
async fn get_many_and_delete_many() {
    let t = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
    let items: Vec<WarmItem> = ["a", "b", "c", "d"].iter().map(|id| item(id, 1, 0)).collect();
    t.put_many(&items).await.expect("put");
    let got = t.get_many(&ids(&["b", "zz", "a", "d"])).await.expect("get_many");
    assert_eq!(
        got,
        vec![Some(items[1].bytes.clone()), None, Some(items[0].bytes.clone()), Some(items[3].bytes.clone())]
    );
    assert!(t.get_many(&[]).await.expect("empty").is_empty());

    // Many ids: spans several MGET chunks.
    let many: Vec<WarmItem> = (0..150).map(|i| item(&format!("m{i}"), i, 0)).collect();
    t.put_many(&many).await.expect("put many");
    let many_ids: Vec<String> = many.iter().map(|i| i.frame_id.clone()).collect();
    let got = t.get_many(&many_ids).await.expect("get_many");
    assert!(got.iter().zip(&many).all(|(g, i)| g.as_deref() == Some(&i.bytes[..])));

    t.delete_many(&ids(&["a", "c", "nope"])).await.expect("delete");
    t.delete_many(&many_ids).await.expect("delete many");
    let stats = t.stats().await.expect("stats");
    assert_eq!(stats.frames, 2);
    assert_eq!(stats.bytes, (items[1].bytes.len() + items[3].bytes.len()) as u64);
    assert_eq!(t.get("a").await.expect("get"), None);
    assert!(!exists(&t, &meta_key(&t.cfg.key_prefix, "a")).await);
    let mut c = t.conn.lock().expect("lock").clone();
    let lru: Vec<String> = c.zrange(&t.layout.buckets()[0].lru, 0, -1).await.expect("zrange");
    assert_eq!(sorted(lru), ids(&["b", "d"]));
    // Deleting twice does not double-subtract.
    t.delete_many(&ids(&["b"])).await.expect("delete");
    t.delete_many(&ids(&["b"])).await.expect("delete again");
    assert_eq!(t.stats().await.expect("stats").bytes, items[3].bytes.len() as u64);
    t.flush_prefix().await.expect("flush");
}

/// Puts a..e, sets the cap so exactly the two expected victims must go, and checks.
async fn check_eviction(strategy: EvictionStrategy, items: Vec<WarmItem>, touch: &[&str], victims: &[&str]) {
    let t0 = tier(strategy, 1 << 30, 600).await;
    t0.put_many(&items).await.expect("put");
    for id in touch {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(t0.get(id).await.expect("get").is_some());
    }
    let size = |id: &str| items.iter().find(|i| i.frame_id == id).map(|i| i.bytes.len() as u64).unwrap_or(0);
    let total: u64 = items.iter().map(|i| i.bytes.len() as u64).sum();
    let cap = total - victims.iter().map(|v| size(v)).sum::<u64>();
    // Same keys, smaller cap.
    let t = WarmTier { cfg: RedisConfig { max_size: cap, ..t0.cfg.clone() }, ..t0.clone() };
    assert_eq!(t.stats().await.expect("stats").bytes, total);
    let evicted = t.enforce_cap().await.expect("enforce_cap");
    assert_eq!(sorted(evicted), ids(victims), "strategy {}", strategy.as_str());
    let stats = t.stats().await.expect("stats");
    assert!(stats.bytes <= cap);
    assert_eq!(stats.bytes, cap);
    assert_eq!(stats.frames, (items.len() - victims.len()) as u64);
    for v in victims {
        assert!(!exists(&t, &frame_key(&t.cfg.key_prefix, v)).await);
    }
    // Already under the cap: nothing more to do.
    assert!(t.enforce_cap().await.expect("again").is_empty());
    t.flush_prefix().await.expect("flush");
}

#[tokio::test]
async fn enforce_cap_lru() {
    let items = vec![item("a", 1, 0), item("b", 1, 0), item("c", 1, 0), item("d", 1, 0), item("e", 1, 0)];
    // a, b, c are read after the put, so d and e are the least recently used.
    check_eviction(EvictionStrategy::Lru, items, &["a", "b", "c"], &["d", "e"]).await;
}

#[tokio::test]
async fn enforce_cap_lfu() {
    let items = vec![item("a", 1, 5), item("b", 1, 1), item("c", 1, 9), item("d", 1, 0), item("e", 1, 3)];
    // d has 0 reads and b has 1: the two least frequently used.
    check_eviction(EvictionStrategy::Lfu, items, &[], &["b", "d"]).await;
}

#[tokio::test]
async fn enforce_cap_age() {
    let items = vec![item("a", 1000, 0), item("b", 500, 0), item("c", 3000, 0), item("d", 2000, 0), item("e", 100, 0)];
    check_eviction(EvictionStrategy::Age, items, &["e", "b"], &["b", "e"]).await;
}

#[tokio::test]
async fn enforce_cap_cleans_expired_entries() {
    let t0 = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
    let items = vec![item("a", 1, 0), item("b", 1, 0), item("c", 1, 0)];
    t0.put_many(&items).await.expect("put");
    for id in ["b", "c"] {
        tokio::time::sleep(Duration::from_millis(5)).await;
        t0.get(id).await.expect("get");
    }
    // a's key vanishes behind our back (as if it expired); its index entry stays.
    let mut c = t0.conn.lock().expect("lock").clone();
    let _: () = c.del(frame_key(&t0.cfg.key_prefix, "a")).await.expect("del");
    let total: u64 = items.iter().map(|i| i.bytes.len() as u64).sum();
    let cap = total - items[0].bytes.len() as u64 - items[1].bytes.len() as u64;
    let t = WarmTier { cfg: RedisConfig { max_size: cap, ..t0.cfg.clone() }, ..t0.clone() };
    let evicted = t.enforce_cap().await.expect("enforce_cap");
    assert_eq!(evicted, ids(&["b"]));
    let stats = t.stats().await.expect("stats");
    assert_eq!((stats.frames, stats.bytes), (1, items[2].bytes.len() as u64));
    assert!(!exists(&t, &meta_key(&t.cfg.key_prefix, "a")).await);
    t.flush_prefix().await.expect("flush");
}

#[tokio::test]
async fn remove_orphans_keeps_live_frames() {
    let t = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
    let items: Vec<WarmItem> = ["a", "b", "c", "d"].iter().map(|id| item(id, 1, 0)).collect();
    t.put_many(&items).await.expect("put");
    let p = t.cfg.key_prefix.clone();
    let mut c = t.conn.lock().expect("lock").clone();
    // Frames gone behind our back: a deleted, b unlinked with its meta too.
    let _: () = c.del(frame_key(&p, "a")).await.expect("del");
    let _: () =
        redis::cmd("UNLINK").arg(frame_key(&p, "b")).arg(meta_key(&p, "b")).query_async(&mut c).await.expect("unlink");
    // A meta hash whose frame is gone and that is in no index.
    let _: () = c.hset(meta_key(&p, "lonely"), "tier", 2).await.expect("hset");
    // Another machine's frame without our index entries: must survive.
    let _: () = c.set(frame_key(&p, "other"), b"SMT-other".to_vec()).await.expect("set");
    // Drift the running total; remove_orphans recomputes it.
    let _: () = c.set(&t.layout.buckets()[0].bytes, 1).await.expect("set");

    let removed = t.remove_orphans().await.expect("remove_orphans");
    assert_eq!(removed, 3);
    let stats = t.stats().await.expect("stats");
    assert_eq!(stats.frames, 2);
    assert_eq!(stats.bytes, (items[2].bytes.len() + items[3].bytes.len()) as u64);
    assert!(!exists(&t, &meta_key(&p, "a")).await);
    assert!(!exists(&t, &meta_key(&p, "lonely")).await);
    assert!(exists(&t, &frame_key(&p, "other")).await);
    assert!(exists(&t, &frame_key(&p, "c")).await && exists(&t, &meta_key(&p, "c")).await);
    let lru: Vec<String> = c.zrange(&t.layout.buckets()[0].lru, 0, -1).await.expect("zrange");
    assert_eq!(sorted(lru), ids(&["c", "d"]));
    assert_eq!(t.remove_orphans().await.expect("again"), 0);
    t.flush_prefix().await.expect("flush");
    assert!(!exists(&t, &frame_key(&p, "other")).await);
}

#[tokio::test]
async fn stats_fields() {
    let t = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
    let empty = t.stats().await.expect("stats");
    assert_eq!((empty.frames, empty.bytes), (0, 0));
    t.put_many(&[item("s", 1, 0)]).await.expect("put");
    let s = t.stats().await.expect("stats");
    assert_eq!(s.frames, 1);
    assert_eq!(s.bytes, item("s", 1, 0).bytes.len() as u64);
    assert!(s.used_memory.unwrap_or(0) > 0);
    assert!(s.maxmemory.is_some());
    assert!(s.version.chars().next().is_some_and(|c| c.is_ascii_digit()), "version {:?}", s.version);
    assert!(s.latency_us < 1_000_000);
    assert!(t.ping().await.expect("ping") < Duration::from_secs(1));
    let json = serde_json::to_value(&s).expect("serialize");
    assert!(json.get("latency_us").is_some());
    assert_eq!(s.expired_removed, 0);
    // frame, meta, four sorted sets (lru, lfu, age, exp), the size hash and the total.
    assert_eq!(t.flush_prefix().await.expect("flush"), 8);
}

/// Every write keeps the total under the cap, evicting by the strategy inside the put script.
#[tokio::test]
async fn every_put_keeps_the_cap() {
    let one = item("f00", 1, 0).bytes.len() as u64;
    let cap = one * 5 + one / 2;
    let t = tier(EvictionStrategy::Age, cap, 600).await;
    let mut evicted_all = Vec::new();
    // One at a time, oldest first: each put beyond five evicts exactly the oldest frame.
    for i in 0..12 {
        let out = t.put_many(&[item(&format!("f{i:02}"), 100 + i, 0)]).await.expect("put");
        assert!(out.not_stored.is_empty());
        let st = t.stats().await.expect("stats");
        assert!(st.bytes <= cap, "bytes {} over cap {cap} after put {i}", st.bytes);
        evicted_all.extend(out.evicted);
    }
    assert_eq!(evicted_all, (0..7).map(|i| format!("f{i:02}")).collect::<Vec<_>>());
    // A batch larger than the cap: the batch's own oldest frames go too, and are reported.
    let batch: Vec<WarmItem> = (20..40).map(|i| item(&format!("f{i:02}"), 100 + i, 0)).collect();
    let out = t.put_many(&batch).await.expect("put batch");
    let st = t.stats().await.expect("stats");
    assert!(st.bytes <= cap && st.frames == 5, "{st:?}");
    assert_eq!(out.evicted.len(), 5 + 15);
    let kept: Vec<Option<Vec<u8>>> = t.get_many(&ids(&["f35", "f36", "f37", "f38", "f39"])).await.expect("get");
    assert!(kept.iter().all(Option::is_some));
    for id in &out.evicted {
        assert!(out.dropped(id));
        assert!(!exists(&t, &frame_key(&t.cfg.key_prefix, id)).await);
    }
    // Larger than the whole cap: not stored, an old copy of it removed, nothing else evicted.
    let mut huge = item("f39", 1, 0);
    let noise: Vec<u8> = (0..cap * 2).map(|_| rand::random::<u8>()).collect();
    huge.bytes = codec::encode_raw("f39".into(), &noise, 0).expect("encode").bytes;
    let out = t.put_many(std::slice::from_ref(&huge)).await.expect("put huge");
    assert_eq!((out.evicted.len(), out.not_stored.clone()), (0, ids(&["f39"])));
    let st = t.stats().await.expect("stats");
    assert_eq!(st.frames, 4);
    t.flush_prefix().await.expect("flush");
}

/// LRU on put: the frame read most recently survives the writes that evict its peers.
#[tokio::test]
async fn put_evicts_least_recently_used() {
    let one = item("a", 1, 0).bytes.len() as u64;
    let t = tier(EvictionStrategy::Lru, one * 3, 600).await;
    t.put_many(&[item("a", 1, 0), item("b", 1, 0), item("c", 1, 0)]).await.expect("put");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(t.get("a").await.expect("get").is_some());
    let out = t.put_many(&[item("d", 1, 0)]).await.expect("put");
    assert_eq!(out.evicted, ids(&["b"]));
    t.flush_prefix().await.expect("flush");
}

/// Keys that expire by TTL leave the index at the next stats call or write.
#[tokio::test]
async fn expired_keys_leave_the_index() {
    let t = tier(EvictionStrategy::Lru, 1 << 30, 1).await;
    let items: Vec<WarmItem> = ["x1", "x2", "x3"].iter().map(|id| item(id, 1, 0)).collect();
    t.put_many(&items).await.expect("put");
    assert_eq!(t.stats().await.expect("stats").frames, 3);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let st = t.stats().await.expect("stats");
    assert_eq!((st.frames, st.bytes, st.expired_removed), (0, 0, 3));
    // A put trims too: only the new frame counts.
    t.put_many(&items).await.expect("put");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let fresh = item("y", 1, 0);
    let t2 = WarmTier { cfg: RedisConfig { ttl_secs: 600, ..t.cfg.clone() }, ..t.clone() };
    t2.put_many(std::slice::from_ref(&fresh)).await.expect("put");
    let mut c = t.conn.lock().expect("lock").clone();
    let total: Option<i64> = c.get(&t.layout.buckets()[0].bytes).await.expect("get");
    assert_eq!(total, Some(fresh.bytes.len() as i64));
    t.flush_prefix().await.expect("flush");
}

#[test]
fn cluster_layout_keeps_a_frame_and_its_index_in_one_slot() {
    let l = Layout::new("sm:", true);
    assert_eq!(l.buckets().len(), keys::CLUSTER_BUCKETS);
    let tag = |k: &str| k[k.find('{').expect("open") + 1..k.find('}').expect("close")].to_string();
    let mut used = std::collections::BTreeSet::new();
    for i in 0..200 {
        let id = format!("frame-{i}");
        let b = l.index_of(&id);
        let t = tag(&l.frame(&id));
        assert_eq!(t, tag(&l.meta(&id)));
        for k in [&b.lru, &b.lfu, &b.age, &b.size, &b.bytes, &b.exp] {
            assert_eq!(tag(k), t);
        }
        assert_eq!(format!("{}{id}{}", b.frame_parts.0, b.frame_parts.1), l.frame(&id));
        used.insert(t);
    }
    assert_eq!(used.len(), keys::CLUSTER_BUCKETS);
    assert_eq!(l.bucket_cap(1600), 100);
    let s = Layout::new("sm:", false);
    assert_eq!(s.frame("f1"), "sm:frame:{f1}");
    assert_eq!(s.buckets()[0].lru, "sm:idx:lru");
}

#[tokio::test]
async fn connect_to_closed_port_fails_fast() {
    let mut cfg = test_cfg(EvictionStrategy::Lru, 1 << 30, 600);
    cfg.connection_string = Some("redis://127.0.0.1:1".into());
    let start = Instant::now();
    let err = WarmTier::connect(&cfg).await.expect_err("must fail");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
}

#[tokio::test]
async fn connect_to_silent_server_times_out() {
    // Accepts TCP connections but never answers: connect must give up after its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut cfg = test_cfg(EvictionStrategy::Lru, 1 << 30, 600);
    cfg.connection_string = Some(format!("redis://127.0.0.1:{port}"));
    cfg.connect_timeout_ms = 500;
    let start = Instant::now();
    let err = WarmTier::connect(&cfg).await.expect_err("must fail");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    server.abort();
}

/// A TCP proxy in front of the test Redis that a test can cut (server died), restart on the
/// same port (server came back) or pause (server hangs: bytes are swallowed, sockets stay open).
struct Proxy {
    port: u16,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(port: u16) -> Proxy {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_reuseaddr(true).expect("reuseaddr");
        sock.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port))).expect("bind");
        let listener = sock.listen(64).expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let upstream = redis_url().trim_start_matches("redis://").trim_end_matches('/').to_string();
        let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (p, t) = (paused.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream.as_str()).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(Self::pump(cr, sw, p.clone()));
                let down = tokio::spawn(Self::pump(sr, cw, p.clone()));
                t.lock().expect("lock").extend([up, down]);
            }
        });
        tasks.lock().expect("lock").push(accept);
        Proxy { port, paused, tasks }
    }

    async fn pump(
        r: tokio::net::tcp::OwnedReadHalf,
        w: tokio::net::tcp::OwnedWriteHalf,
        paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if r.readable().await.is_err() {
                return;
            }
            let n = match r.try_read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            };
            if paused.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let mut off = 0;
            while off < n {
                if w.writable().await.is_err() {
                    return;
                }
                match w.try_write(&buf[off..n]) {
                    Ok(k) => off += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => return,
                }
            }
        }
    }

    /// Closes the listener and every proxied connection.
    async fn stop(&self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn server_death_fails_fast_and_reconnects() {
    let proxy = Proxy::start(0).await;
    let mut cfg = test_cfg(EvictionStrategy::Lru, 1 << 30, 600);
    cfg.connection_string = Some(format!("redis://127.0.0.1:{}", proxy.port));
    let t = WarmTier::connect(&cfg).await.expect("connect through proxy");
    let x = item("x", 1, 0);
    t.put_many(std::slice::from_ref(&x)).await.expect("put");

    // The server dies: calls fail with TierUnavailable, quickly.
    proxy.stop().await;
    let start = Instant::now();
    let err = t.get("x").await.expect_err("server is gone");
    assert!(err.is_unavailable(), "{err:?}");
    let err = t.stats().await.expect_err("server is gone");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());

    // It comes back on the same address: the manager reconnects by itself.
    let again = Proxy::start(proxy.port).await;
    assert_eq!(t.get("x").await.expect("reconnected"), Some(x.bytes.clone()));

    // It hangs (accepts bytes, never answers): calls time out with TierUnavailable.
    again.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    let start = Instant::now();
    let err = t.get_many(&ids(&["x"])).await.expect_err("server hangs");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(start.elapsed() < t.op_timeout + Duration::from_secs(1), "took {:?}", start.elapsed());
    again.paused.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut ok = false;
    for _ in 0..3 {
        if t.get("x").await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "no recovery after the server answered again");
    t.flush_prefix().await.expect("flush");
    again.stop().await;
}

#[test]
fn key_helpers() {
    assert_eq!(frame_key("sm:", "f1"), "sm:frame:{f1}");
    assert_eq!(meta_key("sm:", "f1"), "sm:meta:{f1}");
    assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    assert_eq!(info_field("# Server\r\nredis_version:7.0.15\r\n", "redis_version"), Some("7.0.15"));
    assert_eq!(info_field("maxmemory_policy:noeviction\r\nmaxmemory:0\r\n", "maxmemory"), Some("0"));
}

#[tokio::test]
async fn dictionaries_round_trip_outside_the_cap_and_index() {
    let t = tier(EvictionStrategy::Lru, 1 << 20, 600).await;
    assert_eq!(t.dict_get(7).await.expect("get"), None);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    t.dict_put(7, "proj", &bytes).await.expect("put");
    t.dict_put(7, "proj", &bytes).await.expect("put again (idempotent)");
    assert_eq!(t.dict_get(7).await.expect("get"), Some(("proj".to_string(), bytes)));
    // Not a frame: the index and its byte total do not count it, and the orphan sweep leaves it.
    assert_eq!(t.stats().await.expect("stats").bytes, 0);
    t.remove_orphans().await.expect("sweep");
    assert!(exists(&t, &format!("{}dict:7", t.layout.prefix())).await);
    t.flush_prefix().await.expect("flush");
}
