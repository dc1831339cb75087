//! The cold tier against the test PostgreSQL (`TEST_DATABASE_URL`): upserts, versions, search, retention, outages.
use super::schema::SCHEMA_UPGRADES;
use super::*;
use crate::model::codec::Encoded;
use crate::model::codec::{decode, encode};
use crate::model::normalize_bundle;
use crate::model::Bundle;
use serde_json::json;
use std::collections::HashMap;

fn url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

pub(super) fn cfg_for(schema: &str) -> PostgresConfig {
    PostgresConfig {
        enabled: true,
        connection_string: Some(url()),
        compression_level: 3,
        retention_days: 365,
        pool_size: 4,
        connect_timeout_ms: 3000,
        query_timeout_ms: 30_000,
        schema: schema.to_string(),
        tls: Default::default(),
    }
}

pub(super) fn fresh_schema() -> String {
    format!("t_cold_{:08x}", rand::random::<u32>())
}

async fn open() -> ColdTier {
    ColdTier::connect(&cfg_for(&fresh_schema())).await.expect("connect to the test PostgreSQL")
}

fn bundle(id: &str, project: &str, name: &str, event_text: &str) -> Bundle {
    normalize_bundle(json!({
        "frame": {"frame_id": id, "run_id": "run-1", "project_id": project, "type": "task",
                  "name": name, "state": "closed", "digest_text": "a digest",
                  "created_at": 1_700_000_000, "closed_at": 1_700_000_100_000i64,
                  "retention_policy": "default"},
        "events": [{"event_id": format!("{id}-e1"), "seq": 1, "event_type": "note",
                    "payload": {"text": event_text}}],
        "anchors": [{"anchor_id": format!("{id}-a1"), "type": "fact", "text": "an anchor"}]
    }))
    .expect("valid bundle")
}

fn row(b: &Bundle, version: i64) -> (ArchiveRow, Encoded) {
    let enc = encode(b, 3).expect("encode");
    (archive_row(b, &enc, version, 3, 0, None), enc)
}

/// Compile-time check: the futures the napi glue spawns must be Send.
#[allow(dead_code)]
fn futures_are_send(t: &ColdTier, cfg: &PostgresConfig) {
    fn is_send<T: Send>(_: T) {}
    is_send(ColdTier::connect(cfg));
    is_send(t.upsert_many(&[]));
    is_send(t.search("x", None, 1));
    is_send(t.get_many(&[]));
    is_send(t.expired_ids(1, 0, "", 10));
    is_send(t.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_concurrent_safe() {
    let schema = fresh_schema();
    let cfg = cfg_for(&schema);
    let (a, b) = tokio::join!(ColdTier::connect(&cfg), ColdTier::connect(&cfg));
    let a = a.expect("first connect");
    b.expect("concurrent connect");
    let again = ColdTier::connect(&cfg).await.expect("reconnect");
    let client = again.client().await.expect("client");
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".tiers_schema_migrations"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, SCHEMA_UPGRADES.len() as i64);
    let storage: i8 = client
        .query_one(
            "SELECT a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'frames_archive' AND a.attname = 'payload'",
            &[&schema],
        )
        .await
        .expect("attstorage")
        .get(0);
    assert_eq!(storage as u8, b'e', "payload must be STORAGE EXTERNAL");
    let st = again.stats().await.expect("stats");
    assert_eq!(st.frames, 0);
    assert!(!st.version.is_empty());
    drop(client);
    a.drop_schema().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_round_trip() {
    let t = open().await;
    assert_eq!(t.upsert_many(&[]).await.expect("empty"), 0);
    let bundles: Vec<Bundle> =
        (0..3).map(|i| bundle(&format!("frame:{i}/not-a-uuid"), "p1", &format!("name {i}"), "hello")).collect();
    let pairs: Vec<(ArchiveRow, Encoded)> = bundles.iter().map(|b| row(b, 1)).collect();
    let rows: Vec<ArchiveRow> = pairs.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(rows[0].created_at_s, Some(1_700_000_000));
    assert_eq!(rows[0].closed_at_s, Some(1_700_000_100));
    assert_eq!(t.upsert_many(&rows).await.expect("upsert"), 3);

    let ids: Vec<String> = rows.iter().map(|r| r.frame_id.clone()).collect();
    for (r, enc) in &pairs {
        let got = t.get(&r.frame_id).await.expect("get").expect("present");
        assert_eq!(got, enc.bytes, "payload bytes are stored exactly");
        let (raw, sum) = decode(&got).expect("decodes");
        assert_eq!(sum, enc.checksum);
        assert_eq!(raw.len(), enc.raw_size);
    }
    assert_eq!(t.get("missing").await.expect("get"), None);
    let mut want = ids.clone();
    want.push("missing".into());
    let many = t.get_many(&want).await.expect("get_many");
    assert_eq!(many.len(), 3);
    let sums = t.checksums(&want).await.expect("checksums");
    assert_eq!(sums.len(), 3);
    for (r, enc) in &pairs {
        assert_eq!(sums.get(&r.frame_id), Some(&enc.checksum));
    }
    assert_eq!(t.list_ids(None).await.expect("list"), {
        let mut s = ids.clone();
        s.sort();
        s
    });
    assert!(t.list_ids(Some("other")).await.expect("list").is_empty());

    assert_eq!(t.set_tier(&ids[..2], 2).await.expect("set_tier"), 2);
    assert!(t.set_tier(&ids, 7).await.is_err());
    t.touch(&ids[0], 1_800_000_000).await.expect("touch");
    t.touch(&ids[0], 1_800_000_001).await.expect("touch");
    t.touch("missing", 1).await.expect("touch of a missing frame is ignored");
    let st = t.stats().await.expect("stats");
    assert_eq!((st.frames, st.warm_frames, st.cold_frames), (3, 2, 1));
    let raw_total: u64 = pairs.iter().map(|(_, e)| e.raw_size as u64).sum();
    assert_eq!(st.raw_bytes, raw_total);
    {
        let c = t.client().await.expect("client");
        let r = c
            .query_one(
                &format!("SELECT access_count, last_accessed FROM {}.frames_archive WHERE frame_id = $1", t.sql.schema),
                &[&ids[0]],
            )
            .await
            .expect("row");
        assert_eq!(r.get::<_, i64>(0), 2);
        assert_eq!(r.get::<_, Option<i64>>(1), Some(1_800_000_001));
    }
    assert_eq!(t.delete_many(&ids[..1]).await.expect("delete"), 1);
    assert_eq!(t.delete_many(&[]).await.expect("delete none"), 0);
    assert_eq!(t.list_ids(Some("p1")).await.expect("list").len(), 2);
    t.drop_schema().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_version_never_replaces_newer() {
    let t = open().await;
    let new = bundle("f1", "p", "newer name", "x");
    let old = bundle("f1", "p", "older name", "x");
    let (r_new, e_new) = row(&new, 5);
    let (r_old, _) = row(&old, 4);
    assert_eq!(t.upsert_many(std::slice::from_ref(&r_new)).await.expect("upsert"), 1);
    assert_eq!(t.upsert_many(std::slice::from_ref(&r_old)).await.expect("upsert"), 0, "older version is skipped");
    assert_eq!(t.get("f1").await.expect("get"), Some(e_new.bytes.clone()));
    // The same version is re-written (an idempotent retry of a copy).
    assert_eq!(t.upsert_many(std::slice::from_ref(&r_new)).await.expect("upsert"), 1);
    // A duplicate id inside one batch keeps the highest version, whatever the order.
    let (r_v7, e_v7) = row(&old, 7);
    let (r_v6, _) = row(&new, 6);
    assert_eq!(t.upsert_many(&[r_v7, r_v6]).await.expect("upsert"), 1);
    assert_eq!(t.get("f1").await.expect("get"), Some(e_v7.bytes));
    let hits = t.search("older", None, 10).await.expect("search");
    assert_eq!(hits.len(), 1);
    assert!(t.search("newer", None, 10).await.expect("search").is_empty(), "tsvector follows the row");
    t.drop_schema().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_ranks_filters_and_survives_hostile_queries() {
    let t = open().await;
    let by_name = bundle("by-name", "p1", "kubernetes rollout", "nothing relevant here");
    let by_payload = bundle("by-payload", "p1", "unrelated title", "we discussed kubernetes at length");
    let other_project = bundle("other", "p2", "kubernetes elsewhere", "x");
    let mut weird = bundle("weird", "p1", "name with \u{0} nul", "payload");
    weird.frame.insert("digest_text".into(), json!("digest\u{0}with nul"));
    let rows: Vec<ArchiveRow> = [&by_payload, &by_name, &other_project, &weird].iter().map(|b| row(b, 1).0).collect();
    assert_eq!(t.upsert_many(&rows).await.expect("upsert"), 4);

    let hits = t.search("kubernetes", Some("p1"), 10).await.expect("search");
    let ids: Vec<&str> = hits.iter().map(|h| h.frame_id.as_str()).collect();
    assert_eq!(ids, vec!["by-name", "by-payload"], "name match first, project filter applied");
    assert!(hits[0].rank > hits[1].rank);
    assert_eq!(hits[0].project_id, "p1");
    assert_eq!(hits[0].name, "kubernetes rollout");
    assert_eq!(hits[0].tier, 3);
    let all = t.search("kubernetes", None, 10).await.expect("search");
    assert_eq!(all.len(), 3);
    assert_eq!(t.search("kubernetes", None, 1).await.expect("search").len(), 1);
    assert!(t.search("kubernetes", None, 0).await.expect("search").is_empty());
    assert_eq!(t.search("\"kubernetes rollout\"", None, 10).await.expect("phrase").len(), 1);
    assert_eq!(t.search("kubernetes -rollout", Some("p1"), 10).await.expect("negation").len(), 1);

    let long = "a".repeat(10_000);
    let long_words = "word ".repeat(2_000);
    let hostile = [
        "'; DROP TABLE frames_archive; --",
        "\"unbalanced",
        "a & | ! :* ( )",
        "((((",
        ")))",
        "!!!",
        ":*",
        "kubernetes:*",
        "\\",
        "$1",
        "or or or",
        "the",
        "\u{0}",
        "' OR 1=1 --",
        "😀 漢字",
        long.as_str(),
        long_words.as_str(),
    ];
    for q in hostile {
        match t.search(q, None, 10).await {
            Ok(_) | Err(TierError::InvalidArgument { .. }) => {}
            Err(e) => panic!("query {q:?} gave {e:?}"),
        }
        match t.search(q, Some("'; DROP TABLE x; --"), 10).await {
            Ok(_) | Err(TierError::InvalidArgument { .. }) => {}
            Err(e) => panic!("query {q:?} gave {e:?}"),
        }
    }
    for q in ["", "   ", "\n\t"] {
        assert!(matches!(t.search(q, None, 10).await, Err(TierError::InvalidArgument { .. })), "{q:?}");
    }
    assert!(matches!(t.search(&"b".repeat(10_001), None, 10).await, Err(TierError::InvalidArgument { .. })));
    assert_eq!(t.list_ids(None).await.expect("table still there").len(), 4);
    assert_eq!(t.search("nul", None, 10).await.expect("search").len(), 1);
    t.drop_schema().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_policy() {
    let t = open().await;
    let now = 1_800_000_000i64;
    let day = 86_400i64;
    let mk = |id: &str, policy: &str, closed: Option<i64>, created: Option<i64>| {
        let mut r = row(&bundle(id, "p", id, "x"), 1).0;
        r.retention_policy = policy.to_string();
        r.closed_at_s = closed;
        r.created_at_s = created;
        r
    };
    let rows = vec![
        mk("forever", "keep_forever", Some(now - 10_000 * day), None),
        mk("old-default", "default", Some(now - 400 * day), Some(now - 500 * day)),
        mk("young-default", "default", Some(now - 10 * day), None),
        mk("old-archive-by-created", "archive", None, Some(now - 366 * day)),
        mk("ttl7-old", "ttl_7d", Some(now - 8 * day), None),
        mk("ttl7-young", "ttl_7d", Some(now - 6 * day), None),
        mk("ttl30-old", "ttl_30d", Some(now - 31 * day), None),
        mk("ttl30-young", "ttl_30d", Some(now - 29 * day), None),
        mk("closed-young-created-old", "default", Some(now - day), Some(now - 1000 * day)),
        mk("no-times", "default", None, None),
    ];
    assert_eq!(t.upsert_many(&rows).await.expect("upsert"), rows.len() as u64);
    assert!(t.expired_ids(0, now, "", 10).await.is_err());
    let want = vec!["old-archive-by-created", "old-default", "ttl30-old", "ttl7-old"];
    assert_eq!(t.expired_ids(365, now, "", 10).await.expect("expired"), want);
    // Pages after a cursor, in id order.
    assert_eq!(t.expired_ids(365, now, "old-default", 2).await.expect("page"), vec!["ttl30-old", "ttl7-old"]);
    // Deleting re-checks the rule: a young row listed by mistake stays.
    let mut ask: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    ask.push("young-default".into());
    let mut gone = t.delete_expired(&ask, 365, now).await.expect("delete");
    gone.sort();
    assert_eq!(gone, want);
    let left = t.list_ids(None).await.expect("list");
    assert!(left.contains(&"forever".to_string()));
    assert!(left.contains(&"no-times".to_string()), "archived just now");
    assert_eq!(left.len(), 6);
    assert!(t.expired_ids(365, now, "", 10).await.expect("again").is_empty());
    t.drop_schema().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_fails_fast_with_unavailable() {
    let mut cfg = cfg_for(&fresh_schema());
    cfg.connection_string = Some("postgres://postgres@127.0.0.1:1/test".into());
    let started = Instant::now();
    let r = ColdTier::connect(&cfg).await;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    match r {
        Err(e) => assert!(e.is_unavailable(), "{e:?}"),
        Ok(_) => panic!("connected to a closed port"),
    }
    cfg.connection_string = Some("not a url at all".into());
    assert!(matches!(ColdTier::connect(&cfg).await, Err(TierError::InvalidConfig { .. })));
    cfg.connection_string = Some(url());
    cfg.schema = "Bad; schema".into();
    assert!(matches!(ColdTier::connect(&cfg).await, Err(TierError::InvalidConfig { .. })));
    cfg.schema = "public".into();
    cfg.connection_string = Some("postgres://postgres@127.0.0.1:1/test".into());
    assert!(ColdTier::connect(&cfg).await.is_err());
}

/// A TCP proxy in front of the real server that the test can take down and bring back.
struct Proxy {
    port: u16,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let inner = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                inner.lock().expect("lock").push(h);
            }
        });
        tasks.lock().expect("lock").push(accept);
        Proxy { port, tasks }
    }

    async fn stop(&self) {
        for h in self.tasks.lock().expect("lock").drain(..) {
            h.abort();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_server_is_unavailable_and_the_pool_recovers() {
    let proxy = Proxy::start(0).await;
    let schema = fresh_schema();
    let mut cfg = cfg_for(&schema);
    cfg.connection_string = Some(format!("postgres://postgres@127.0.0.1:{}/test", proxy.port));
    cfg.connect_timeout_ms = 1000;
    let t = ColdTier::connect(&cfg).await.expect("connect through the proxy");
    t.ping().await.expect("ping");
    proxy.stop().await;
    for _ in 0..3 {
        let started = Instant::now();
        match t.ping().await {
            Err(e) => assert!(e.is_unavailable(), "{e:?}"),
            Ok(_) => panic!("ping through a dead proxy"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        match t.get("x").await {
            Err(e) => assert!(e.is_unavailable(), "{e:?}"),
            Ok(_) => panic!("get through a dead proxy"),
        }
    }
    let _back = Proxy::start(proxy.port).await;
    t.ping().await.expect("ping after the server is back");
    assert!(t.list_ids(None).await.expect("list").is_empty());
    t.drop_schema().await.expect("drop");
    _back.stop().await;
}

/// Frames of 4-8 KB of JSON with text that compresses like prose.
fn bulk_bundle(i: usize) -> Bundle {
    const WORDS: &[&str] = &[
        "deploy",
        "cluster",
        "memory",
        "frame",
        "anchor",
        "digest",
        "session",
        "context",
        "token",
        "stack",
        "archive",
        "retention",
        "query",
        "index",
        "vector",
        "payload",
        "sqlite",
        "redis",
        "postgres",
        "tier",
        "mover",
        "policy",
        "checksum",
        "compress",
        "latency",
        "throughput",
        "error",
        "retry",
        "timeout",
        "network",
        "disk",
        "cache",
        "batch",
        "stream",
        "commit",
        "rollback",
        "schema",
        "migration",
        "lock",
        "shard",
        "replica",
        "primary",
        "backup",
    ];
    let mut x = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let target = 4000 + next() % 4000;
    let mut events = Vec::new();
    let mut size = 0;
    let mut seq = 0;
    while size < target {
        let n = 20 + next() % 40;
        let text: Vec<&str> = (0..n).map(|_| WORDS[next() % WORDS.len()]).collect();
        let text = format!("{} #{}", text.join(" "), next());
        size += text.len() + 120;
        events.push(json!({"event_id": format!("e{i}-{seq}"), "seq": seq, "event_type": "tool_call",
                           "payload": {"text": text, "n": seq}, "ts": 1_700_000_000_000i64 + seq}));
        seq += 1;
    }
    normalize_bundle(json!({
        "frame": {"frame_id": format!("bulk-{i:06}"), "run_id": format!("run-{}", i % 17),
                  "project_id": format!("proj-{}", i % 5), "type": "task",
                  "name": format!("bulk frame {i} {}", WORDS[i % WORDS.len()]), "state": "closed",
                  "digest_text": format!("digest of frame {i}"), "created_at": 1_700_000_000 + i as i64},
        "events": events,
        "anchors": [{"anchor_id": format!("a{i}"), "type": "decision", "text": "chose the cold tier"}]
    }))
    .expect("valid bulk bundle")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_upsert_5000() {
    let t = open().await;
    let n = 5_000;
    let rows: Vec<ArchiveRow> = (0..n).map(|i| row(&bulk_bundle(i), 1).0).collect();
    let raw: usize = rows.iter().map(|r| r.size_bytes as usize).sum();
    let comp: usize = rows.iter().map(|r| r.payload.len()).sum();
    let started = Instant::now();
    let written = t.upsert_many(&rows).await.expect("bulk upsert");
    let took = started.elapsed();
    assert_eq!(written, n as u64);
    eprintln!(
        "cold upsert_many: {n} frames ({:.1} KB raw avg, {:.1} KB stored avg) in {:?} = {:.0} frames/s",
        raw as f64 / n as f64 / 1024.0,
        comp as f64 / n as f64 / 1024.0,
        took,
        n as f64 / took.as_secs_f64()
    );
    // Re-writing the same versions (a retried copy) goes through the update path.
    let started = Instant::now();
    assert_eq!(t.upsert_many(&rows).await.expect("re-upsert"), n as u64);
    eprintln!("cold upsert_many (update path): {:.0} frames/s", n as f64 / started.elapsed().as_secs_f64());
    let st = t.stats().await.expect("stats");
    assert_eq!(st.frames, n as u64);
    assert_eq!(st.raw_bytes, raw as u64);
    assert_eq!(st.compressed_bytes, comp as u64);
    let ids: Vec<String> = rows.iter().take(100).map(|r| r.frame_id.clone()).collect();
    let sums = t.checksums(&ids).await.expect("checksums");
    for r in rows.iter().take(100) {
        assert_eq!(sums.get(&r.frame_id), Some(&r.checksum));
    }
    assert_eq!(t.search("cluster", Some("proj-1"), 5).await.expect("search").len(), 5);
    t.drop_schema().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_come_with_whether_another_machine_holds_them() {
    let schema = fresh_schema();
    let a = ColdTier::connect(&cfg_for(&schema)).await.expect("connect").with_holder("machine-a");
    let b = ColdTier::connect(&cfg_for(&schema)).await.expect("connect").with_holder("machine-b");
    let rows: Vec<ArchiveRow> = (0..2).map(|i| row(&bundle(&format!("h{i}"), "p", "n", "x"), 1).0).collect();
    a.upsert_many(&rows).await.expect("a archives both");
    b.upsert_many(&rows[..1]).await.expect("b archives the first");
    let ids = vec!["h0".to_string(), "h1".to_string(), "missing".to_string()];
    let held = |m: &HashMap<String, (Vec<u8>, bool)>, id: &str| m.get(id).map(|(_, h)| *h);
    let on_a = a.get_many_held(&ids).await.expect("a reads");
    assert_eq!((held(&on_a, "h0"), held(&on_a, "h1"), held(&on_a, "missing")), (Some(true), Some(false), None));
    assert_eq!(on_a.get("h0").map(|(p, _)| p.clone()), Some(rows[0].payload.clone()));
    let on_b = b.get_many_held(&ids).await.expect("b reads");
    assert_eq!((held(&on_b, "h0"), held(&on_b, "h1")), (Some(true), Some(true)));
    // a gives h0 up: the row stays for b, and is b's alone now.
    a.delete_many(&ids[..1]).await.expect("a deletes");
    let on_b = b.get_many_held(&ids).await.expect("b reads");
    assert_eq!((held(&on_b, "h0"), held(&on_b, "h1")), (Some(false), Some(true)));
    a.drop_schema().await.expect("drop");
}

/// A proxy to the real server that can freeze: its connections stay open and everything sent is
/// accepted (TCP acknowledges it), but nothing is passed on, like a stopped server process.
struct FreezingProxy {
    port: u16,
    frozen: Arc<std::sync::atomic::AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    async fn start() -> FreezingProxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let frozen: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let f = frozen.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(out) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else { continue };
                let ((ir, iw), (or, ow)) = (inbound.into_split(), out.into_split());
                tokio::spawn(pump(ir, ow, f.clone()));
                tokio::spawn(pump(or, iw, f.clone()));
            }
        });
        FreezingProxy { port, frozen, accept }
    }

    /// Frozen, reads are held by the pumps and passed on once thawed.
    fn freeze(&self, on: bool) {
        self.frozen.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, holding what it read while `frozen`.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        while frozen.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_unavailable_within_the_query_timeout() {
    let proxy = FreezingProxy::start().await;
    let schema = fresh_schema();
    let mut cfg = cfg_for(&schema);
    cfg.connection_string = Some(format!("postgres://postgres@127.0.0.1:{}/test", proxy.port));
    cfg.query_timeout_ms = 500;
    let t = ColdTier::connect(&cfg).await.expect("connect through the proxy");
    let outages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = outages.clone();
    t.set_outage_hook(Arc::new(move |_| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    t.ping().await.expect("ping");
    proxy.freeze(true);
    for call in ["get", "upsert"] {
        let started = Instant::now();
        let r = match call {
            "get" => t.get("x").await.map(|_| ()),
            _ => t.upsert_many(&[row(&bundle("f1", "p", "n", "x"), 1).0]).await.map(|_| ()),
        };
        let took = started.elapsed();
        match r {
            Err(e) => assert!(e.is_unavailable() && e.to_string().contains("no answer within 500 ms"), "{call}: {e}"),
            Ok(()) => panic!("{call} answered through a frozen proxy"),
        }
        assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "{call} took {took:?}");
    }
    assert!(outages.load(std::sync::atomic::Ordering::SeqCst) >= 2, "each deadline is reported as an outage");
    proxy.freeze(false);
    proxy.accept.abort();
    ColdTier::connect(&cfg_for(&schema)).await.expect("direct").drop_schema().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_envelopes_are_found_and_replaced_only_while_the_row_holds_the_same_frame() {
    use crate::model::codec::{encode_raw_with, Dictionary};
    let t = open().await;
    let bundles: Vec<Bundle> = (0..6).map(|i| bundle(&format!("s{i}"), "p1", &format!("n {i}"), "hello")).collect();
    let mut rows: Vec<ArchiveRow> = bundles.iter().map(|b| row(b, 1).0).collect();
    rows.push(row(&bundle("other", "p2", "x", "y"), 1).0);
    t.upsert_many(&rows).await.expect("upsert");
    let samples: Vec<Vec<u8>> =
        (0..200).map(|i| bundle(&format!("d{i}"), "p1", "n", "hello").canonical_bytes()).collect();
    let d = Dictionary::train(&samples, 4096).expect("train");

    // All of p1 is plain: stale for any dictionary, a page at a time, by frame id.
    let page = t.stale_envelopes("p1", d.id, "", 4).await.expect("page");
    assert_eq!(page.iter().map(|e| e.frame_id.as_str()).collect::<Vec<_>>(), ["s0", "s1", "s2", "s3"]);
    let rest = t.stale_envelopes("p1", d.id, "s3", 4).await.expect("page");
    assert_eq!(rest.len(), 2);

    // s0 re-encoded; s1 asked with the wrong checksum (as if rewritten meanwhile): kept.
    let new0 = encode_raw_with("s0".into(), &bundles[0].canonical_bytes(), 3, &d).expect("encode");
    let new1 = encode_raw_with("s1".into(), &bundles[1].canonical_bytes(), 3, &d).expect("encode");
    let done = t
        .replace_payloads(&[
            ("s0".into(), page[0].checksum.clone(), new0.bytes.clone()),
            ("s1".into(), "0000000000000000".into(), new1.bytes.clone()),
            ("gone".into(), page[0].checksum.clone(), new0.bytes.clone()),
        ])
        .await
        .expect("replace");
    assert_eq!(done, ["s0".to_string()]);
    assert_eq!(t.get("s0").await.expect("get"), Some(new0.bytes.clone()));
    assert_eq!(t.get("s1").await.expect("get"), Some(page[1].payload.clone()));
    // s0 is now made with d: no longer stale for it, but stale for another dictionary id.
    let stale: Vec<String> =
        t.stale_envelopes("p1", d.id, "", 10).await.expect("page").into_iter().map(|e| e.frame_id).collect();
    assert_eq!(stale, ["s1", "s2", "s3", "s4", "s5"]);
    assert_eq!(t.stale_envelopes("p1", d.id ^ 1, "", 10).await.expect("page").len(), 6);
    t.drop_schema().await.expect("drop");
}
