//! Warm ↔ cold for stubbed frames: the archive copy stays, only the Redis copy and the tier change.

use super::report::{MigrateReport, Moved};
use super::{Hop, Mover, Remotes};
use crate::model::units::now_seconds;
use crate::model::{Result, Tier};
use crate::tiers::warm::WarmItem;

impl Mover {
    /// Warm ↔ cold for stubbed frames: the archive copy stays; only the Redis copy changes.
    pub(super) async fn shift_remote(&self, hop: &Hop<'_>, rm: &Remotes, rep: &mut MigrateReport) -> Result<()> {
        let Hop { ids, from, to } = *hop;
        let Some(cold) = &rm.cold else {
            rep.defer(ids, Tier::Cold, &rm.down(Tier::Cold));
            return Ok(());
        };
        if to == Tier::Warm && rm.warm.is_none() {
            rep.defer(ids, Tier::Warm, &rm.down(Tier::Warm));
            return Ok(());
        }
        let entries: Vec<(String, i64, i64, Option<String>, i64)> =
            ids.iter().map(|i| (i.clone(), from.level(), to.level(), None, 0)).collect();
        let move_ids = self.hot.call(move |hot| hot.journal_begin(&entries)).await?;
        if to == Tier::Cold {
            if let Some(w) = &rm.warm {
                // Best effort: a Redis copy left behind expires by its TTL and is not served.
                let _ = w.delete_many(ids).await;
            }
            cold.set_tier(ids, 3).await?;
        } else if let Some(w) = &rm.warm {
            let got = cold.get_many(ids).await?;
            let items: Vec<WarmItem> = ids
                .iter()
                .filter_map(|id| {
                    got.get(id).map(|bytes| WarmItem {
                        frame_id: id.clone(),
                        bytes: bytes.clone(),
                        created_s: now_seconds(),
                        access_count: 0,
                    })
                })
                .collect();
            w.put_many(&items).await?;
            cold.set_tier(ids, 2).await?;
        }
        let moves: Vec<(i64, String)> = move_ids.into_iter().zip(ids.iter().cloned()).collect();
        self.hot.call(move |hot| hot.set_tier(&moves, to, None)).await?;
        for id in ids {
            rep.moved.push(Moved::new(id, from, to));
        }
        Ok(())
    }
}
