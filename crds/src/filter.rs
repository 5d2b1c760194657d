//! Row filters of a target: actions plus conditions on `new.<col>` and
//! `old.<col>`, combined with AND/OR and nestable with `all`, `any`, `not`.
//! This module holds their shape and the checks that need no catalog; the
//! engine compiles them against each table's columns.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Action;

/// Which changes a target receives.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterSpec {
    /// Only these actions (within the listener's); all of the listener's when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<Action>>,
    /// How `conditions` combine: AND (every one holds) or OR (one holds).
    #[serde(default)]
    pub logic: Logic,
    /// Conditions on the row; a change passes when they hold as a SQL WHERE
    /// clause would (a comparison with NULL is unknown, which does not pass).
    #[serde(default)]
    pub conditions: Vec<ConditionSpec>,
}

/// How conditions combine.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Logic {
    /// Every condition holds.
    #[default]
    #[serde(rename = "AND", alias = "and")]
    And,
    /// At least one condition holds.
    #[serde(rename = "OR", alias = "or")]
    Or,
}

/// One condition: either a comparison (`field`, `operator`, `value`) or a
/// nested group (`all`, `any` or `not`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// `new.<column>` (the row after the change) or `old.<column>` (before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    /// The literal compared with, converted to the column's type (a list for
    /// `in` and `not_in`, a regular expression for `matches`, none for
    /// `exists`, `is_null` and `changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::any_value")]
    pub value: Option<serde_json::Value>,
    /// Holds when every nested condition holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::nested_list")]
    pub all: Option<Vec<ConditionSpec>>,
    /// Holds when at least one nested condition holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::nested_list")]
    pub any: Option<Vec<ConditionSpec>>,
    /// Holds when the nested condition does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::nested_condition")]
    pub not: Option<Box<ConditionSpec>>,
}

/// A comparison operator.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Operator {
    /// Equal, compared as the column's type.
    #[serde(rename = "==")]
    Eq,
    /// Not equal.
    #[serde(rename = "!=")]
    Ne,
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// Greater than or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Less than or equal.
    #[serde(rename = "<=")]
    Le,
    /// Equal to one of a list.
    #[serde(rename = "in")]
    In,
    /// Equal to none of a list.
    #[serde(rename = "not_in")]
    NotIn,
    /// The row image carries the column (NULL counts; an unchanged TOASTed
    /// value and a missing image do not).
    #[serde(rename = "exists")]
    Exists,
    /// The value is SQL NULL.
    #[serde(rename = "is_null")]
    IsNull,
    /// Text contains the value.
    #[serde(rename = "contains")]
    Contains,
    /// Text starts with the value.
    #[serde(rename = "starts_with")]
    StartsWith,
    /// Text ends with the value.
    #[serde(rename = "ends_with")]
    EndsWith,
    /// Text matches the regular expression.
    #[serde(rename = "matches")]
    Matches,
    /// An UPDATE changed the column (`IS DISTINCT FROM`); false for other actions.
    #[serde(rename = "changed")]
    Changed,
}

impl Operator {
    /// How many literal values the operator takes.
    pub fn arity(self) -> Arity {
        match self {
            Operator::Exists | Operator::IsNull | Operator::Changed => Arity::None,
            Operator::In | Operator::NotIn => Arity::List,
            _ => Arity::One,
        }
    }

    /// The spelling users write.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "==",
            Operator::Ne => "!=",
            Operator::Gt => ">",
            Operator::Lt => "<",
            Operator::Ge => ">=",
            Operator::Le => "<=",
            Operator::In => "in",
            Operator::NotIn => "not_in",
            Operator::Exists => "exists",
            Operator::IsNull => "is_null",
            Operator::Contains => "contains",
            Operator::StartsWith => "starts_with",
            Operator::EndsWith => "ends_with",
            Operator::Matches => "matches",
            Operator::Changed => "changed",
        }
    }
}

/// The literal an operator takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// No `value`.
    None,
    /// One scalar `value`.
    One,
    /// A list `value`.
    List,
}

/// The row image a field reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Image {
    /// The row after the change (insert, update).
    New,
    /// The row before it (update, delete), as the replica identity provides.
    Old,
}

/// A parsed `new.<col>` / `old.<col>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// Which image.
    pub image: Image,
    /// Column name, exactly as in the catalog.
    pub column: String,
}

impl Field {
    /// Parses `new.<col>` or `old.<col>`; the column part is taken verbatim.
    pub fn parse(text: &str) -> Option<Field> {
        let (image, column) = text.split_once('.')?;
        let image = match image {
            "new" => Image::New,
            "old" => Image::Old,
            _ => return None,
        };
        (!column.is_empty()).then(|| Field {
            image,
            column: column.to_owned(),
        })
    }
}

/// Structural problems of a condition tree, as (path suffix, message).
pub(crate) fn condition_problems(c: &ConditionSpec, path: &str, out: &mut Vec<(String, String)>) {
    let forms = [
        c.field.is_some() || c.operator.is_some(),
        c.all.is_some(),
        c.any.is_some(),
        c.not.is_some(),
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        out.push((
            path.to_owned(),
            "a condition is exactly one of {field, operator, value}, {all: [...]}, {any: [...]} or {not: ...}".into(),
        ));
        return;
    }
    if let Some(list) = c.all.as_ref().or(c.any.as_ref()) {
        let key = if c.all.is_some() { "all" } else { "any" };
        if list.is_empty() {
            out.push((
                format!("{path}.{key}"),
                "must hold at least one condition".into(),
            ));
        }
        for (i, nested) in list.iter().enumerate() {
            condition_problems(nested, &format!("{path}.{key}[{i}]"), out);
        }
        return;
    }
    if let Some(nested) = &c.not {
        condition_problems(nested, &format!("{path}.not"), out);
        return;
    }
    match &c.field {
        None => out.push((format!("{path}.field"), "is required with operator".into())),
        Some(f) if Field::parse(f).is_none() => out.push((
            format!("{path}.field"),
            format!("{f:?} must be new.<column> or old.<column>"),
        )),
        Some(_) => {}
    }
    let Some(op) = c.operator else {
        out.push((format!("{path}.operator"), "is required with field".into()));
        return;
    };
    let value_problem = match (op.arity(), &c.value) {
        (Arity::None, Some(_)) => Some(format!("operator {} takes no value", op.as_str())),
        (Arity::One, None) => Some(format!("operator {} needs a value", op.as_str())),
        (Arity::One, Some(v)) if v.is_array() || v.is_object() || v.is_null() => Some(format!(
            "operator {} needs one scalar value, not {v}",
            op.as_str()
        )),
        (Arity::List, Some(serde_json::Value::Array(items))) if items.is_empty() => {
            Some(format!("operator {} needs a non-empty list", op.as_str()))
        }
        (Arity::List, Some(serde_json::Value::Array(_))) => None,
        (Arity::List, _) => Some(format!("operator {} needs a list value", op.as_str())),
        _ => None,
    };
    if let Some(message) = value_problem {
        out.push((format!("{path}.value"), message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let c: ConditionSpec = serde_yaml::from_str(yaml).expect("condition parses");
        let mut out = Vec::new();
        condition_problems(&c, "c", &mut out);
        out.into_iter().map(|(p, m)| format!("{p}: {m}")).collect()
    }

    #[test]
    fn parses_fields() {
        assert_eq!(
            Field::parse("new.status"),
            Some(Field {
                image: Image::New,
                column: "status".into()
            })
        );
        assert_eq!(
            Field::parse("old.a.b"),
            Some(Field {
                image: Image::Old,
                column: "a.b".into()
            })
        );
        assert_eq!(Field::parse("status"), None);
        assert_eq!(Field::parse("mid.x"), None);
        assert_eq!(Field::parse("new."), None);
    }

    #[test]
    fn well_formed_conditions_pass() {
        assert!(problems("{field: new.a, operator: '==', value: 1}").is_empty());
        assert!(problems("{field: new.a, operator: in, value: [1, 2]}").is_empty());
        assert!(problems("{field: old.a, operator: changed}").is_empty());
        assert!(problems("{any: [{field: new.a, operator: is_null}, {not: {field: new.b, operator: '>', value: 2}}]}").is_empty());
    }

    #[test]
    fn malformed_conditions_name_the_path() {
        assert_eq!(
            problems("{field: a, operator: '==', value: 1}"),
            ["c.field: \"a\" must be new.<column> or old.<column>"]
        );
        assert_eq!(
            problems("{field: new.a, operator: '=='}"),
            ["c.value: operator == needs a value"]
        );
        assert_eq!(
            problems("{field: new.a, operator: exists, value: 1}"),
            ["c.value: operator exists takes no value"]
        );
        assert_eq!(
            problems("{field: new.a, operator: in, value: 1}"),
            ["c.value: operator in needs a list value"]
        );
        assert_eq!(
            problems("{field: new.a, operator: '==', value: [1]}"),
            ["c.value: operator == needs one scalar value, not [1]"]
        );
        assert_eq!(
            problems("{all: []}"),
            ["c.all: must hold at least one condition"]
        );
        assert_eq!(
            problems("{any: [{field: new.a}]}"),
            ["c.any[0].operator: is required with field"]
        );
        assert_eq!(
            problems("{field: new.a, operator: is_null, all: []}").len(),
            1
        );
        let unknown_operator =
            serde_yaml::from_str::<ConditionSpec>("{field: new.a, operator: '=~'}");
        assert!(unknown_operator.is_err());
    }
}
