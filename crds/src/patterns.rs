//! Listeners that select many tables: Debezium's `schema.include.list`,
//! `table.include.list` and `table.exclude.list`, as regular expressions
//! matched against the whole name (anchored at both ends, as Debezium
//! matches them), and topic templates (`${schema}`, `${table}`).
//!
//! A spec with such listeners is used through [`PgKafkaConnectorSpec::expand`]:
//! given the database's tables, it returns the same spec with one concrete
//! listener per matched table (the pattern listener's actions, keys and
//! targets, its topic templates filled in). Everything after that sees only
//! concrete listeners. A table named by an exact listener is that
//! listener's, whatever a pattern says; a table two patterns match is the
//! first one's.

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ListenerSpec, PgKafkaConnectorSpec, QualifiedTable};

/// Tables chosen by pattern. A table matches when its schema matches one of
/// `schemas` (when given), its `schema.table` one of `include` (when
/// given), and none of `exclude`. Names are matched as the catalog stores
/// them, unquoted.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableSelector {
    /// Regular expressions for schema names (Debezium's
    /// `schema.include.list`): every table of a matching schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    /// Regular expressions for `schema.table` (Debezium's
    /// `table.include.list`), e.g. `public\.order_.*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Regular expressions for `schema.table` left out (Debezium's
    /// `table.exclude.list`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Where a listener of an expanded spec comes from, for messages that name
/// the field the user wrote.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ListenerOrigin {
    /// Its index in the spec as written.
    pub index: usize,
    /// Matched by that listener's `tables` (not named by it).
    pub matched: bool,
    /// Each target's `topic` as written, before `${schema}` and `${table}`
    /// were filled in (metrics may be labelled by it).
    pub topics: Vec<Option<String>>,
}

/// A selector whose expressions compiled.
struct Compiled {
    schemas: Vec<Regex>,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

impl TableSelector {
    /// What is wrong with it, as (field, message) under `field`.
    pub(crate) fn problems(&self, field: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.schemas.is_empty() && self.include.is_empty() {
            out.push((
                field.to_owned(),
                "give schemas or include (or both): a selector of nothing but exclusions would take every table".to_owned(),
            ));
        }
        let lists = [
            ("schemas", &self.schemas),
            ("include", &self.include),
            ("exclude", &self.exclude),
        ];
        for (name, list) in lists {
            for (i, pattern) in list.iter().enumerate() {
                if let Err(e) = anchored(pattern) {
                    let why = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_owned();
                    out.push((
                        format!("{field}.{name}[{i}]"),
                        format!("{pattern:?} is not a regular expression: {why}"),
                    ));
                }
            }
        }
        out
    }

    fn compile(&self) -> Option<Compiled> {
        let all = |list: &[String]| {
            list.iter()
                .map(|p| anchored(p))
                .collect::<Result<Vec<_>, _>>()
                .ok()
        };
        Some(Compiled {
            schemas: all(&self.schemas)?,
            include: all(&self.include)?,
            exclude: all(&self.exclude)?,
        })
    }

    /// A whole schema by name alone (`schemas: [name]`, a name with no
    /// pattern characters, nothing else): what PostgreSQL 15's
    /// `FOR TABLES IN SCHEMA` can publish.
    pub fn whole_schema(&self) -> Option<&str> {
        match (
            self.schemas.as_slice(),
            self.include.is_empty(),
            self.exclude.is_empty(),
        ) {
            ([schema], true, true)
                if schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Some(schema)
            }
            _ => None,
        }
    }
}

impl Compiled {
    fn matches(&self, t: &QualifiedTable) -> bool {
        let full = format!("{}.{}", t.schema, t.name);
        (self.schemas.is_empty() || self.schemas.iter().any(|r| r.is_match(&t.schema)))
            && (self.include.is_empty() || self.include.iter().any(|r| r.is_match(&full)))
            && !self.exclude.iter().any(|r| r.is_match(&full))
    }
}

/// `topic` with `${schema}` and `${table}` filled in for `table`.
pub fn fill_topic(topic: &str, table: &QualifiedTable) -> String {
    topic
        .replace("${schema}", &table.schema)
        .replace("${table}", &table.name)
}

impl PgKafkaConnectorSpec {
    /// Whether some listener selects tables by pattern.
    pub fn has_patterns(&self) -> bool {
        self.listeners.iter().any(|l| l.tables.is_some())
    }

    /// The spec with every pattern listener replaced by one listener per
    /// table of `catalog` it matches (sorted by name) and topic templates
    /// filled in, each listener knowing its origin. Call after `validate`:
    /// a selector that does not compile matches nothing here.
    pub fn expand(&self, catalog: &[QualifiedTable]) -> PgKafkaConnectorSpec {
        let exact: Vec<QualifiedTable> = self
            .listeners
            .iter()
            .filter(|l| l.tables.is_none())
            .filter_map(|l| QualifiedTable::parse(&l.table).ok())
            .collect();
        let mut sorted: Vec<&QualifiedTable> =
            catalog.iter().filter(|t| !exact.contains(t)).collect();
        sorted.sort();
        sorted.dedup();
        let mut taken = std::collections::HashSet::new();
        let mut listeners = Vec::new();
        for (index, listener) in self.listeners.iter().enumerate() {
            let Some(selector) = &listener.tables else {
                let mut l = listener.clone();
                if let Ok(table) = QualifiedTable::parse(&l.table) {
                    fill_targets(&mut l, &table);
                }
                l.origin = Some(ListenerOrigin {
                    index,
                    matched: false,
                    topics: listener.targets.iter().map(|t| t.topic.clone()).collect(),
                });
                listeners.push(l);
                continue;
            };
            let Some(compiled) = selector.compile() else {
                continue;
            };
            for table in sorted.iter().filter(|t| compiled.matches(t)) {
                if !taken.insert((*table).clone()) {
                    continue;
                }
                let mut l = listener.clone();
                l.table = quoted(table);
                l.tables = None;
                fill_targets(&mut l, table);
                l.origin = Some(ListenerOrigin {
                    index,
                    matched: true,
                    topics: listener.targets.iter().map(|t| t.topic.clone()).collect(),
                });
                listeners.push(l);
            }
        }
        PgKafkaConnectorSpec {
            listeners,
            ..self.clone()
        }
    }

    /// The field path of listener `i` as the user wrote it: a matched
    /// table's listener names the pattern listener and the table.
    pub fn listener_field(&self, i: usize) -> String {
        match self.listeners.get(i) {
            Some(l) => l.field(i),
            None => format!("spec.listeners[{i}]"),
        }
    }
}

impl ListenerSpec {
    /// Its field path as the user wrote it, `i` being its index in the
    /// spec it is part of (see [`PgKafkaConnectorSpec::listener_field`]).
    pub fn field(&self, i: usize) -> String {
        match &self.origin {
            Some(o) if o.matched => format!("spec.listeners[{}] (table {})", o.index, self.table),
            Some(o) => format!("spec.listeners[{}]", o.index),
            None => format!("spec.listeners[{i}]"),
        }
    }
}

fn fill_targets(l: &mut ListenerSpec, table: &QualifiedTable) {
    for target in &mut l.targets {
        if let Some(topic) = &target.topic {
            target.topic = Some(fill_topic(topic, table));
        }
    }
}

/// `"schema"."name"`, which [`QualifiedTable::parse`] reads back exactly.
fn quoted(t: &QualifiedTable) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!("{}.{}", q(&t.schema), q(&t.name))
}

#[cfg(test)]
#[path = "patterns_tests.rs"]
mod tests;
