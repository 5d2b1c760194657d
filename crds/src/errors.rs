//! What the engine does with a record it cannot send as it is (Kafka
//! Connect's `errors.*`): halt (`tolerance: none`, the default) or send it
//! to a dead-letter topic instead and go on (`tolerance: all`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The error policy for records that cannot be sent as they are.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorsSpec {
    /// `none` (the default): such a record halts the engine before it is
    /// sent, the slot before its change. `all`: it goes to the dead-letter
    /// topic instead and the stream goes on (Connect's `errors.tolerance`).
    #[serde(default)]
    pub tolerance: Tolerance,
    /// Where such records go under `tolerance: all` (required then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<DeadLetterQueueSpec>,
}

/// Connect's `errors.tolerance`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Tolerance {
    /// Halt.
    #[default]
    None,
    /// Dead-letter and go on.
    All,
}

/// The dead-letter topic (Connect's `errors.deadletterqueue.*`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterQueueSpec {
    /// Topic (`errors.deadletterqueue.topic.name`).
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub topic: String,
    /// Headers `__connect.errors.*` saying what was refused and why
    /// (`errors.deadletterqueue.context.headers.enable`); the value says the
    /// same either way.
    #[serde(default = "yes")]
    pub context_headers: bool,
}

fn yes() -> bool {
    true
}

impl crate::PgKafkaConnectorSpec {
    /// Every dead-letter topic: the connector's and the targets' own.
    pub fn dead_letter_topics(&self) -> Vec<String> {
        let targets = self.listeners.iter().flat_map(|l| &l.targets);
        std::iter::once(&self.errors)
            .chain(targets.filter_map(|t| t.errors.as_ref()))
            .filter_map(|e| e.dead_letters().map(|d| d.topic.clone()))
            .collect()
    }
}

impl ErrorsSpec {
    /// The dead-letter topic, when records go there.
    pub fn dead_letters(&self) -> Option<&DeadLetterQueueSpec> {
        match self.tolerance {
            Tolerance::All => self.dead_letter_queue.as_ref(),
            Tolerance::None => None,
        }
    }

    /// What is wrong with it at `field`, each as (path, message).
    pub(crate) fn problems(&self, field: &str) -> Vec<(String, String)> {
        match (self.tolerance, &self.dead_letter_queue) {
            (Tolerance::All, None) => vec![(
                format!("{field}.deadLetterQueue"),
                "required with tolerance: all (no record is dropped without a trace)".into(),
            )],
            (Tolerance::None, Some(_)) => vec![(
                format!("{field}.tolerance"),
                "set tolerance: all for records to go to the dead-letter queue".into(),
            )],
            _ => Vec::new(),
        }
    }
}
