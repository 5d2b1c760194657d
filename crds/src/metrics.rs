//! `spec.metrics`: what the engine's Prometheus series are labelled by.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the engine's Prometheus metrics are labelled by.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSpec {
    /// `true`: the per-table series (changes per table; records, filtered
    /// changes and bytes per table and topic; records in flight and
    /// delivery errors per topic; snapshot rows per table) have one series
    /// per table and topic. `false`: the tables a pattern listener matches
    /// share its series, labelled `table="listeners[i]"` and
    /// `topic="<the target's topic as written>"` (`${schema}` and
    /// `${table}` left in), so a thousand matched tables are one series
    /// each, not a thousand; exact listeners keep their own.
    #[serde(default = "per_table_default")]
    pub per_table: bool,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec { per_table: true }
    }
}

pub(crate) fn is_default(m: &MetricsSpec) -> bool {
    *m == MetricsSpec::default()
}

fn per_table_default() -> bool {
    true
}
