//! Whether the slot may be used, created or recreated, given what this
//! connector already delivered through it: never start later than what was
//! delivered unless `spec.slot.onLoss` says to. A pure decision, so every
//! case is a unit test; [`crate::provision`] carries it out.

use pgkafka_crds::{SlotLossPolicy, SlotSpec};

use crate::error::PgError;
use crate::lsn::Lsn;

/// The slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSlot {
    /// `wal_status` is `lost`: the WAL it needed was removed.
    pub lost: bool,
    /// `confirmed_flush_lsn`.
    pub confirmed: Lsn,
}

/// What the caller knows this connector delivered through the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Nothing: a first start.
    Nothing,
    /// Exactly up to here (the engine's own record): a slot ahead of it
    /// was moved by something else.
    Exactly(Lsn),
    /// At least up to here (the operator's last status, which the running
    /// engine has since passed): only a gone or invalidated slot is a loss.
    AtLeast(Lsn),
}

impl Delivered {
    /// The position, when something was delivered.
    pub fn lsn(self) -> Option<Lsn> {
        match self {
            Delivered::Nothing => None,
            Delivered::Exactly(l) | Delivered::AtLeast(l) => Some(l),
        }
    }
}

/// What to do with the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotAction {
    /// Stream from the slot as it is, from `confirmed`.
    Use,
    /// Create it (none exists).
    Create,
    /// Drop the invalidated slot and create it again.
    Recreate,
}

/// The decision, and whether changes were lost on the way (the caller
/// snapshots again under `onLoss: resnapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotDecision {
    /// What to do.
    pub action: SlotAction,
    /// Changes after what was delivered cannot be streamed any more.
    pub gap: bool,
}

/// Decides for `spec` given the slot `found` (`None`: it does not exist) and
/// the position this connector last `delivered` (`None`: it never delivered
/// anything, a first start).
pub fn decide(
    spec: &SlotSpec,
    found: Option<&FoundSlot>,
    known: Delivered,
) -> Result<SlotDecision, PgError> {
    let delivered = known.lsn();
    let slot = &spec.name;
    let policy = spec.loss_policy();
    let refuse = |what: String| PgError::SlotLost {
        slot: slot.clone(),
        message: format!(
            "{what}. Nothing was streamed past it: set spec.slot.onLoss to `recreate` to accept \
             the gap (changes committed meanwhile never reach Kafka) or to `resnapshot` to \
             recreate the slot and send every listened table again as op `r` (rows deleted \
             meanwhile cannot come back that way); with failover slots (PostgreSQL 17, \
             spec.slot.failover) a standby keeps the slot"
        ),
    };
    let delivered_text = |d: Lsn| format!("this connector delivered changes through it up to {d}");
    let lost = |action| match policy {
        SlotLossPolicy::Fail => None,
        SlotLossPolicy::Recreate | SlotLossPolicy::Resnapshot => {
            Some(SlotDecision { action, gap: true })
        }
    };
    match (found, delivered) {
        (None, None) if spec.create => Ok(SlotDecision {
            action: SlotAction::Create,
            gap: false,
        }),
        (None, None) => Err(PgError::Setup {
            field: "spec.slot.name".into(),
            message: format!(
                "replication slot {slot:?} does not exist and spec.slot.create is false"
            ),
        }),
        (None, Some(d)) => lost(SlotAction::Create).ok_or_else(|| {
            refuse(format!(
                "replication slot {slot:?} does not exist, but {}: it was dropped, or PostgreSQL \
                 failed over to a server without it",
                delivered_text(d)
            ))
        }),
        (Some(s), delivered) if s.lost => lost(SlotAction::Recreate).ok_or_else(|| {
            let since = delivered
                .map(|d| format!("; {}", delivered_text(d)))
                .unwrap_or_default();
            refuse(format!(
                "slot {slot:?} is invalidated (wal_status = lost): the WAL it needed was removed \
                 and changes were lost{since}"
            ))
        }),
        (Some(s), Some(d)) if s.confirmed > d && matches!(known, Delivered::Exactly(_)) => {
            match policy {
                SlotLossPolicy::Fail => Err(refuse(format!(
                    "slot {slot:?} confirmed {} but {}: something else moved it past what reached \
                 Kafka (another consumer, pg_replication_slot_advance, or a different cluster)",
                    s.confirmed,
                    delivered_text(d)
                ))),
                SlotLossPolicy::Recreate | SlotLossPolicy::Resnapshot => Ok(SlotDecision {
                    action: SlotAction::Use,
                    gap: true,
                }),
            }
        }
        (Some(_), _) => Ok(SlotDecision {
            action: SlotAction::Use,
            gap: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(on_loss: SlotLossPolicy) -> SlotSpec {
        SlotSpec {
            name: "s".into(),
            create: true,
            recreate_if_lost: false,
            on_loss,
            failover: false,
        }
    }

    fn found(lost: bool, confirmed: u64) -> FoundSlot {
        FoundSlot {
            lost,
            confirmed: Lsn(confirmed),
        }
    }

    fn ok(action: SlotAction, gap: bool) -> SlotDecision {
        SlotDecision { action, gap }
    }

    #[test]
    fn a_first_start_creates_and_a_present_slot_is_used() {
        let fail = spec(SlotLossPolicy::Fail);
        assert_eq!(
            decide(&fail, None, Delivered::Nothing).ok(),
            Some(ok(SlotAction::Create, false))
        );
        let present = found(false, 100);
        assert_eq!(
            decide(&fail, Some(&present), Delivered::Nothing).ok(),
            Some(ok(SlotAction::Use, false))
        );
        assert_eq!(
            decide(&fail, Some(&present), Delivered::Exactly(Lsn(100))).ok(),
            Some(ok(SlotAction::Use, false)),
            "delivered exactly what the slot confirmed"
        );
        assert_eq!(
            decide(&fail, Some(&present), Delivered::Exactly(Lsn(150))).ok(),
            Some(ok(SlotAction::Use, false)),
            "delivered past the slot: the slot replays, nothing is lost"
        );
        let no_create = SlotSpec {
            create: false,
            ..fail
        };
        assert!(matches!(
            decide(&no_create, None, Delivered::Nothing),
            Err(PgError::Setup { .. })
        ));
    }

    #[test]
    fn a_vanished_slot_is_refused_unless_told() {
        let err = decide(
            &spec(SlotLossPolicy::Fail),
            None,
            Delivered::Exactly(Lsn(0x10)),
        )
        .expect_err("refused");
        let text = err.to_string();
        assert!(matches!(err, PgError::SlotLost { .. }));
        assert!(
            text.contains("\"s\" does not exist") && text.contains("0/10"),
            "{text}"
        );
        assert!(text.contains("spec.slot.onLoss"), "{text}");
        assert_eq!(
            decide(
                &spec(SlotLossPolicy::Recreate),
                None,
                Delivered::Exactly(Lsn(0x10))
            )
            .ok(),
            Some(ok(SlotAction::Create, true))
        );
        assert_eq!(
            decide(
                &spec(SlotLossPolicy::Resnapshot),
                None,
                Delivered::Exactly(Lsn(0x10))
            )
            .ok(),
            Some(ok(SlotAction::Create, true))
        );
        let alias = SlotSpec {
            recreate_if_lost: true,
            ..spec(SlotLossPolicy::Fail)
        };
        assert_eq!(
            decide(&alias, None, Delivered::Exactly(Lsn(0x10))).ok(),
            Some(ok(SlotAction::Create, true)),
            "recreateIfLost is onLoss: recreate"
        );
    }

    #[test]
    fn an_invalidated_slot_and_a_slot_ahead_are_refused_unless_told() {
        let lost = found(true, 100);
        for delivered in [Delivered::Nothing, Delivered::Exactly(Lsn(50))] {
            let err =
                decide(&spec(SlotLossPolicy::Fail), Some(&lost), delivered).expect_err("lost");
            assert!(err.to_string().contains("wal_status = lost"), "{err}");
        }
        assert_eq!(
            decide(
                &spec(SlotLossPolicy::Resnapshot),
                Some(&lost),
                Delivered::Exactly(Lsn(50))
            )
            .ok(),
            Some(ok(SlotAction::Recreate, true))
        );
        let ahead = found(false, 200);
        let err = decide(
            &spec(SlotLossPolicy::Fail),
            Some(&ahead),
            Delivered::Exactly(Lsn(100)),
        )
        .expect_err("ahead");
        assert!(err.to_string().contains("confirmed 0/C8"), "{err}");
        assert_eq!(
            decide(
                &spec(SlotLossPolicy::Recreate),
                Some(&ahead),
                Delivered::Exactly(Lsn(100))
            )
            .ok(),
            Some(ok(SlotAction::Use, true))
        );
    }
}
