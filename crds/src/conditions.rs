//! The conditions of `status.conditions`, typed: the operator writes them
//! from these enums and the tests assert with them, so a reason cannot be
//! misspelt on one side only. On the wire they stay Kubernetes' strings.

use crate::status::Condition;

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The word on the wire, CamelCase.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                }
            }

            /// The value for a word on the wire, if it is one.
            pub fn parse(word: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == word)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// The condition types the operator writes.
    ConditionType {
        /// The engine is streaming.
        Ready,
        /// The slot exists and holds its WAL.
        SlotHealthy,
        /// Something needs attention.
        Degraded,
        /// A table is pending or being snapshotted.
        Snapshotting,
    }
}

words! {
    /// Every reason a condition can carry.
    Reason {
        /// Ready: the engine reports it is streaming.
        Streaming,
        /// Ready: `spec.state: paused`.
        Paused,
        /// Ready: `spec.state: stopped`.
        Stopped,
        /// The engine's `/status` did not answer.
        EngineUnreachable,
        /// The engine answers but does not stream yet.
        EngineNotStreaming,
        /// The engine stopped for good on a fault retrying cannot fix.
        EngineHalted,
        /// The spec does not validate.
        InvalidSpec,
        /// A referenced Secret or key is missing.
        SecretMissing,
        /// PostgreSQL cannot be reached.
        DatabaseUnreachable,
        /// A statement failed in PostgreSQL.
        DatabaseError,
        /// The publication or slot could not be set up.
        ProvisioningFailed,
        /// The API server refused or failed a request.
        KubernetesApiError,
        /// The finalizer helper failed.
        FinalizerError,
        /// An object could not be serialized (a bug).
        InternalError,
        /// Cleanup waits for the engine to release the slot.
        WaitingForEngine,
        /// SlotHealthy: the slot holds its WAL.
        SlotReserved,
        /// SlotHealthy: the slot does not exist.
        SlotMissing,
        /// SlotHealthy: past `max_slot_wal_keep_size`.
        SlotUnreserved,
        /// SlotHealthy: invalidated, WAL it needed is gone.
        SlotLost,
        /// SlotHealthy: PostgreSQL could not be asked.
        SlotUnknown,
        /// Degraded: records went to the dead-letter topic and were not
        /// acknowledged yet.
        RecordsDeadLettered,
        /// Degraded: no problem observed.
        AsExpected,
        /// Snapshotting: a table is pending or running.
        Snapshotting,
        /// Snapshotting: no snapshot runs.
        Idle,
        /// Snapshotting: a table's snapshot failed.
        SnapshotFailed,
        /// Snapshotting: a table's snapshot is paused on request.
        SnapshotPaused,
    }
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    /// "True".
    True,
    /// "False".
    False,
    /// "Unknown".
    Unknown,
}

impl ConditionStatus {
    /// True or False.
    pub fn from_bool(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl Condition {
    /// A condition of `type_` with `status`, `reason` and `message`; its
    /// transition time is set when it is written.
    pub fn new(
        type_: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.as_str().into(),
            status: status.as_str().into(),
            reason: reason.as_str().into(),
            message: message.into(),
            last_transition_time: String::new(),
        }
    }

    /// Whether this is a condition of `type_`.
    pub fn is(&self, type_: ConditionType) -> bool {
        self.type_ == type_.as_str()
    }

    /// Its reason, when it is one of ours.
    pub fn reason(&self) -> Option<Reason> {
        Reason::parse(&self.reason)
    }

    /// Its status, when it is a known word.
    pub fn status(&self) -> Option<ConditionStatus> {
        [
            ConditionStatus::True,
            ConditionStatus::False,
            ConditionStatus::Unknown,
        ]
        .into_iter()
        .find(|s| s.as_str() == self.status)
    }
}

/// The condition of `type_` among `conditions`.
pub fn find(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.is(type_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Reason::parse("Nonsense"), None);
        let c = Condition::new(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::EngineHalted,
            "x",
        );
        assert_eq!((c.type_.as_str(), c.status.as_str()), ("Ready", "False"));
        assert_eq!(c.reason(), Some(Reason::EngineHalted));
        assert_eq!(c.status(), Some(ConditionStatus::False));
    }
}
