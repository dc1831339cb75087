//! Warm ↔ cold for stubbed frames: the archive copy stays, only the Redis copy and the tier change.

use super::report::{MigrateReport, Moved};
use super::{Mover, Remotes};
use crate::model::units::now_seconds;
use crate::model::{Result, Tier};
use crate::tiers::hot::journal;
use crate::tiers::warm::WarmItem;

impl Mover {
    /// Warm ↔ cold for stubbed frames: the archive copy stays; only the Redis copy changes.
    pub(super) async fn shift_remote(
        &self,
        ids: &[String],
        from: Tier,
        to: Tier,
        rm: &Remotes,
        rep: &mut MigrateReport,
    ) -> Result<()> {
        let Some(cold) = &rm.cold else {
            for id in ids {
                rep.skip(
                    id,
                    format!(
                        "deferred: cold tier unreachable ({})",
                        rm.cold_down.clone().unwrap_or_else(|| "not enabled".into())
                    ),
                );
            }
            return Ok(());
        };
        let entries: Vec<(String, i64, i64, Option<String>, i64)> =
            ids.iter().map(|i| (i.clone(), from.level(), to.level(), None, 0)).collect();
        let move_ids = self.hot.call(move |hot| hot.journal_begin(&entries)).await?;
        if to == Tier::Cold {
            if let Some(w) = &rm.warm {
                // Best effort: a Redis copy left behind expires by its TTL and is not served.
                let _ = w.delete_many(ids).await;
            }
            cold.set_tier(ids, 3).await?;
        } else {
            let Some(w) = &rm.warm else {
                let steps: Vec<(i64, &'static str, Option<String>)> =
                    move_ids.iter().map(|m| (*m, journal::ROLLED_BACK, Some("warm tier unreachable".into()))).collect();
                self.hot.call(move |hot| hot.journal_set(&steps)).await?;
                for id in ids {
                    rep.skip(
                        id,
                        format!(
                            "deferred: warm tier unreachable ({})",
                            rm.warm_down.clone().unwrap_or_else(|| "not enabled".into())
                        ),
                    );
                }
                return Ok(());
            };
            let got = cold.get_many(ids).await?;
            let mut items = vec![];
            for id in ids {
                if let Some(bytes) = got.get(id) {
                    items.push(WarmItem {
                        frame_id: id.clone(),
                        bytes: bytes.clone(),
                        created_s: now_seconds(),
                        access_count: 0,
                    });
                }
            }
            w.put_many(&items).await?;
            cold.set_tier(ids, 2).await?;
        }
        let moves: Vec<(i64, String)> = move_ids.into_iter().zip(ids.iter().cloned()).collect();
        self.hot.call(move |hot| hot.set_tier(&moves, to, None)).await?;
        for id in ids {
            rep.moved.push(Moved { frame_id: id.clone(), from: from.as_str(), to: to.as_str() });
        }
        Ok(())
    }
}
