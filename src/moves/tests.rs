//! The mover against the test Redis and PostgreSQL: interrupted warm ↔ cold shifts are realigned.
//! Recovery of interrupted warm ↔ cold shifts, against the test Redis and PostgreSQL
//! (`REDIS_TEST_URL`, `TEST_DATABASE_URL`).
use super::*;
use crate::model::EvictionStrategy;
use crate::model::{normalize_bundle, Bundle};
use crate::tiers::cold::PostgresConfig;
use crate::tiers::hot::NewMove;
use crate::tiers::warm::RedisConfig;
use crate::tiers::warm::WarmItem;
use serde_json::json;

async fn remotes() -> Remotes {
    let tag = format!("{:08x}", rand::random::<u32>());
    let rc = RedisConfig {
        enabled: true,
        connection_string: Some(std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())),
        ttl_secs: 3600,
        max_size: 1 << 30,
        key_prefix: format!("t:mover{tag}:"),
        connect_timeout_ms: 2000,
        eviction_strategy: EvictionStrategy::Lru,
        cluster: false,
        ca_file: None,
    };
    let pc = PostgresConfig {
        enabled: true,
        connection_string: Some(
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        ),
        compression_level: 3,
        retention_days: 365,
        pool_size: 2,
        connect_timeout_ms: 3000,
        query_timeout_ms: 30_000,
        schema: format!("t_mover_{tag}"),
        tls: Default::default(),
    };
    let warm = WarmTier::connect(&rc).await.expect("connect to the test Redis");
    let cold = ColdTier::connect(&pc).await.expect("connect to the test PostgreSQL");
    Remotes { warm: Some(warm), cold: Some(cold), warm_down: None, cold_down: None }
}

fn bundle(id: &str) -> Bundle {
    normalize_bundle(json!({"frame": {"frame_id": id, "run_id": "r", "project_id": "p", "type": "task",
        "name": format!("frame {id}"), "state": "closed", "created_at": 1_700_000_000, "closed_at": 1_700_000_100},
        "events": [{"event_id": format!("{id}-e"), "seq": 1, "event_type": "x", "payload": {"t": "hello"}}]}))
    .expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_warm_cold_shifts_are_realigned_with_sqlite() {
    let dir = tempfile::tempdir().expect("tmp");
    let hot = Arc::new(HotTier::open(&dir.path().join("c.db")).expect("open"));
    hot.store_many(&[bundle("a"), bundle("b")], 1 << 20).expect("store");
    let mover = Mover::new(hot.clone(), 3, 100);
    let rm = remotes().await;
    let (warm, cold) = (rm.warm.clone().expect("warm"), rm.cold.clone().expect("cold"));
    let req = |to: Tier, id: &str| MigrateRequest::frames(to, vec![id.to_string()]);
    assert_eq!(mover.migrate(&req(Tier::Warm, "a"), &rm).await.expect("warm").moved.len(), 1);
    assert_eq!(mover.migrate(&req(Tier::Cold, "b"), &rm).await.expect("cold").moved.len(), 1);

    // A warm → cold shift of "a" killed after the archive's tier column and the Redis delete,
    // before SQLite committed.
    let ids_a = ["a".to_string()];
    let ids_b = ["b".to_string()];
    hot.journal_begin(&[NewMove::shift("a", 2, 3)]).expect("journal");
    warm.delete_many(&ids_a).await.expect("del");
    cold.set_tier(&ids_a, 3).await.expect("tier");
    // Rolled back, "a" would stay warm without its Redis copy: recovery finishes the shift.
    let rep = mover.recover(&rm).await.expect("recover");
    assert_eq!((rep.finished, rep.rolled_back, rep.pending), (1, 0, 0));
    assert_eq!(hot.meta("a").expect("meta").expect("a").tier, 3);
    let st = cold.stats().await.expect("stats");
    assert_eq!((st.warm_frames, st.cold_frames), (0, 2), "the archive's tier column follows SQLite");
    assert!(warm.get("a").await.expect("get").is_none());

    // A cold → warm shift of "b" killed after the Redis put and the archive's update.
    hot.journal_begin(&[NewMove::shift("b", 3, 2)]).expect("journal");
    let bytes = cold.get("b").await.expect("get").expect("archived");
    warm.put_many(&[WarmItem { frame_id: "b".into(), bytes, created_s: 0, access_count: 0, version: 1 }])
        .await
        .expect("put");
    cold.set_tier(&ids_b, 2).await.expect("tier");
    let rep = mover.recover(&rm).await.expect("recover");
    assert_eq!((rep.rolled_back, rep.pending), (1, 0));
    assert_eq!(hot.meta("b").expect("meta").expect("b").tier, 3);
    let st = cold.stats().await.expect("stats");
    assert_eq!((st.warm_frames, st.cold_frames), (0, 2), "the archive's tier column follows SQLite");
    assert!(warm.get("b").await.expect("get").is_none(), "a cold frame keeps no Redis copy");
    // Both still read back whole.
    for id in ["a", "b"] {
        let tier = Tier::from_level(hot.meta(id).expect("m").expect("some").tier).expect("tier");
        let (b, _, _, _) = mover.fetch_remote(id, tier, &rm, None).await.expect("fetch");
        assert_eq!(b.to_value(), bundle(id).to_value());
    }

    // With the archive unreachable the entry stays open rather than being closed unaligned.
    hot.journal_begin(&[NewMove::shift("a", 3, 2)]).expect("journal");
    cold.set_tier(&ids_a, 2).await.expect("tier");
    let down = Remotes { warm: rm.warm.clone(), cold: None, warm_down: None, cold_down: Some("down".into()) };
    assert_eq!(mover.recover(&down).await.expect("recover").pending, 1);
    assert_eq!(mover.recover(&rm).await.expect("recover").rolled_back, 1);
    assert_eq!(cold.stats().await.expect("stats").warm_frames, 0);

    let _ = warm.flush_prefix().await;
    let _ = cold.drop_schema().await;
}
