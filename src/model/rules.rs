//! What may move: the rules every move obeys, whoever decided it (the mover's selection for
//! `migrate`, the policy engine's cycles and forced moves). They are StackMemory's: an active frame
//! is on someone's stack and never leaves hot; a pinned frame is not demoted unless named.

use super::tier::Tier;

/// Why a move is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The frame is `active` (open): never demoted, not even by force.
    Active,
    /// The frame is pinned and the move was not asked for by name.
    Pinned,
}

impl Refusal {
    /// As `migrate` reports it (`skipped[].reason`).
    pub fn report_reason(self) -> &'static str {
        match self {
            Refusal::Active => "active frames are never demoted",
            Refusal::Pinned => "pinned",
        }
    }

    /// As the policy engine words its decision (`skipped: ...`).
    pub fn decision_reason(self) -> &'static str {
        match self {
            Refusal::Active => "skipped: active frame",
            Refusal::Pinned => "skipped: pinned",
        }
    }
}

/// The facts about a frame that the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    pub active: bool,
    pub pinned: bool,
}

/// May a frame go from `from` to `to`? `demotion` is true for any move that takes the body out of
/// hot (including finishing a warm frame whose body was held back locally); `pin_overridden` when
/// the caller named the frame in a `migrate` call (a pin only keeps the *automatic* moves away).
pub fn check(s: Subject, demotion: bool, pin_overridden: bool) -> Result<(), Refusal> {
    if !demotion {
        return Ok(());
    }
    if s.active {
        return Err(Refusal::Active);
    }
    if s.pinned && !pin_overridden {
        return Err(Refusal::Pinned);
    }
    Ok(())
}

/// Whether moving from `from` to `to` takes a frame's body further from hot.
pub fn is_demotion(from: Tier, to: Tier) -> bool {
    to > from
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_frames_never_leave_and_pins_hold_unless_named() {
        let active = Subject { active: true, pinned: false };
        let pinned = Subject { active: false, pinned: true };
        assert_eq!(check(active, true, true), Err(Refusal::Active));
        assert_eq!(check(pinned, true, false), Err(Refusal::Pinned));
        assert_eq!(check(pinned, true, true), Ok(()));
        assert_eq!(check(active, false, false), Ok(()), "promotions are always allowed");
        assert!(is_demotion(Tier::Hot, Tier::Warm) && !is_demotion(Tier::Cold, Tier::Hot));
    }
}
