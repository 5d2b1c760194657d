//! Target filters, compiled against a table's columns (once at start-up, and
//! again when the stream describes the table anew) and evaluated per change
//! without allocating. Conditions follow SQL's three-valued logic: a
//! comparison with NULL is unknown, and unknown does not pass.

use std::cmp::Ordering;

use pgkafka_crds::{Action, ConditionSpec, Field, FilterSpec, Image, Logic, Operator};
use regex::Regex;

use super::typed::{compare, literal, same_value, Literal, TypeClass};
use crate::event::{Datum, OldTuple, TableShape};

/// A filter that cannot apply to the table: the spec path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FilterError {
    /// e.g. `spec.listeners[0].targets[1].filter.conditions[0].field`.
    pub path: String,
    /// What is wrong and, where there is one, the fix.
    pub message: String,
}

/// One change, as a filter sees it.
#[derive(Debug, Clone, Copy)]
pub struct RowView<'a> {
    /// What happened.
    pub action: Action,
    /// The old row or key, if sent.
    pub old: Option<&'a OldTuple>,
    /// The new row, if any.
    pub new: Option<&'a [Datum]>,
}

/// A compiled filter.
#[derive(Debug)]
pub struct CompiledFilter {
    actions: Option<Vec<Action>>,
    root: Node,
}

#[derive(Debug)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Leaf(Leaf),
}

#[derive(Debug)]
struct Leaf {
    image: Image,
    column: usize,
    is_key: bool,
    class: TypeClass,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Compare(Operator, Literal),
    In(Vec<Literal>),
    NotIn(Vec<Literal>),
    Exists,
    IsNull,
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Matches(Regex),
    Changed,
}

impl CompiledFilter {
    /// Compiles `spec` for `shape`; `path` is the filter's spec path.
    pub fn compile(spec: &FilterSpec, shape: &TableShape, path: &str) -> Result<Self, FilterError> {
        let nodes = spec
            .conditions
            .iter()
            .enumerate()
            .map(|(i, c)| compile_node(c, shape, &format!("{path}.conditions[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let root = match spec.logic {
            Logic::And => Node::All(nodes),
            Logic::Or if nodes.is_empty() => Node::All(nodes),
            Logic::Or => Node::Any(nodes),
        };
        Ok(CompiledFilter {
            actions: spec.actions.clone(),
            root,
        })
    }

    /// Whether the change passes.
    pub fn matches(&self, row: &RowView<'_>) -> bool {
        if self
            .actions
            .as_ref()
            .is_some_and(|a| !a.contains(&row.action))
        {
            return false;
        }
        eval(&self.root, row) == Some(true)
    }
}

fn compile_node(c: &ConditionSpec, shape: &TableShape, path: &str) -> Result<Node, FilterError> {
    if let Some(list) = c.all.as_ref().or(c.any.as_ref()) {
        let key = if c.all.is_some() { "all" } else { "any" };
        let nodes = list
            .iter()
            .enumerate()
            .map(|(i, n)| compile_node(n, shape, &format!("{path}.{key}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if c.all.is_some() {
            Node::All(nodes)
        } else {
            Node::Any(nodes)
        });
    }
    if let Some(nested) = &c.not {
        let node = compile_node(nested, shape, &format!("{path}.not"))?;
        return Ok(Node::Not(Box::new(node)));
    }
    compile_leaf(c, shape, path).map(Node::Leaf)
}

fn error_at(path: &str, suffix: &str, message: String) -> FilterError {
    FilterError {
        path: format!("{path}{suffix}"),
        message,
    }
}

/// One condition on one column: the column must exist, and its old value
/// must be sent when the condition reads it.
fn compile_leaf(c: &ConditionSpec, shape: &TableShape, path: &str) -> Result<Leaf, FilterError> {
    // `validate()` has checked the form; these only guard against misuse.
    let (Some(field_text), Some(op)) = (&c.field, c.operator) else {
        return Err(error_at(path, "", "needs field and operator".into()));
    };
    let field = Field::parse(field_text).ok_or_else(|| {
        let message = format!("{field_text:?} must be new.<column> or old.<column>");
        error_at(path, ".field", message)
    })?;
    let column = shape
        .columns
        .iter()
        .position(|col| col.name == field.column)
        .ok_or_else(|| {
            let names: Vec<&str> = shape.columns.iter().map(|c| c.name.as_str()).collect();
            let message = format!(
                "{} has no column {:?} (columns: {})",
                shape.table,
                field.column,
                names.join(", ")
            );
            error_at(path, ".field", message)
        })?;
    let col = &shape.columns[column];
    let needs_old = field.image == Image::Old || op == Operator::Changed;
    if needs_old && shape.replica_identity != b'f' && !col.is_key {
        let message = format!(
            "{field_text} needs the old value of {:?}, which PostgreSQL does not send for {} (replica identity {}); \
             run ALTER TABLE {} REPLICA IDENTITY FULL",
            col.name,
            shape.table,
            identity_name(shape.replica_identity),
            shape.table
        );
        return Err(error_at(path, ".field", message));
    }
    let class = TypeClass::of(col.value_oid);
    let operand = Operand {
        path,
        op,
        value: c.value.as_ref(),
        class,
        column: &col.name,
    };
    Ok(Leaf {
        image: field.image,
        column,
        is_key: col.is_key,
        class,
        test: operand.test()?,
    })
}

/// An operator and its value, checked against the column's type.
struct Operand<'a> {
    path: &'a str,
    op: Operator,
    value: Option<&'a serde_json::Value>,
    class: TypeClass,
    column: &'a str,
}

impl Operand<'_> {
    fn test(&self) -> Result<Test, FilterError> {
        let op = self.op;
        Ok(match op {
            Operator::Eq | Operator::Ne => Test::Compare(op, self.one()?),
            Operator::Gt | Operator::Lt | Operator::Ge | Operator::Le => {
                if !self.class.is_ordered() {
                    return Err(self.type_error(" (no order)"));
                }
                Test::Compare(op, self.one()?)
            }
            Operator::In => Test::In(self.list()?),
            Operator::NotIn => Test::NotIn(self.list()?),
            Operator::Exists => Test::Exists,
            Operator::IsNull => Test::IsNull,
            Operator::Changed => Test::Changed,
            Operator::Contains | Operator::StartsWith | Operator::EndsWith | Operator::Matches
                if !self.class.is_text() =>
            {
                return Err(self.type_error(" (text operators need a text column)"))
            }
            Operator::Contains => Test::Contains(self.text()?),
            Operator::StartsWith => Test::StartsWith(self.text()?),
            Operator::EndsWith => Test::EndsWith(self.text()?),
            Operator::Matches => {
                let pattern = self.text()?;
                let regex = Regex::new(&pattern).map_err(|e| {
                    self.value_error(format!("bad regular expression {pattern:?}: {e}"))
                })?;
                Test::Matches(regex)
            }
        })
    }

    fn type_error(&self, what: &str) -> FilterError {
        let message = format!(
            "operator {} does not fit {:?}, {} column{what}",
            self.op.as_str(),
            self.column,
            self.class.describe()
        );
        error_at(self.path, ".operator", message)
    }

    fn value_error(&self, message: String) -> FilterError {
        error_at(self.path, ".value", message)
    }

    fn one(&self) -> Result<Literal, FilterError> {
        let v = self.value.ok_or_else(|| {
            self.value_error(format!("operator {} needs a value", self.op.as_str()))
        })?;
        literal(self.class, v).map_err(|m| self.value_error(m))
    }

    fn text(&self) -> Result<String, FilterError> {
        match self.value {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Ok(other.to_string()),
            None => Err(self.value_error(format!("operator {} needs a value", self.op.as_str()))),
        }
    }

    fn list(&self) -> Result<Vec<Literal>, FilterError> {
        match self.value {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| literal(self.class, v).map_err(|m| self.value_error(m)))
                .collect(),
            _ => Err(self.value_error(format!("operator {} needs a list value", self.op.as_str()))),
        }
    }
}

fn identity_name(code: u8) -> &'static str {
    match code {
        b'f' => "FULL",
        b'n' => "NOTHING",
        b'i' => "USING INDEX",
        _ => "DEFAULT",
    }
}

/// Kleene logic: `None` is unknown.
fn eval(node: &Node, row: &RowView<'_>) -> Option<bool> {
    match node {
        Node::All(nodes) => nodes
            .iter()
            .try_fold(Some(true), |acc, n| match eval(n, row) {
                Some(false) => Err(()),
                Some(true) => Ok(acc),
                None => Ok(None),
            })
            .unwrap_or(Some(false)),
        Node::Any(nodes) => nodes
            .iter()
            .try_fold(Some(false), |acc, n| match eval(n, row) {
                Some(true) => Err(()),
                Some(false) => Ok(acc),
                None => Ok(None),
            })
            .unwrap_or(Some(true)),
        Node::Not(inner) => eval(inner, row).map(|b| !b),
        Node::Leaf(leaf) => eval_leaf(leaf, row),
    }
}

/// The datum a field reads; `None` when the image does not carry it.
fn lookup<'a>(leaf: &Leaf, image: Image, row: &RowView<'a>) -> Option<&'a Datum> {
    match image {
        Image::New => row.new?.get(leaf.column),
        Image::Old => match row.old? {
            OldTuple::Full(d) => d.get(leaf.column),
            // A key tuple carries NULLs in place of the other columns.
            OldTuple::Key(d) if leaf.is_key => d.get(leaf.column),
            OldTuple::Key(_) => None,
        },
    }
}

fn text_of(datum: Option<&Datum>) -> Option<&str> {
    match datum? {
        Datum::Text(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

fn eval_leaf(leaf: &Leaf, row: &RowView<'_>) -> Option<bool> {
    let datum = lookup(leaf, leaf.image, row);
    match &leaf.test {
        Test::Exists => {
            return Some(matches!(
                datum,
                Some(Datum::Null | Datum::Text(_) | Datum::Binary(_))
            ))
        }
        Test::IsNull => {
            return match datum? {
                Datum::Null => Some(true),
                _ => Some(false),
            }
        }
        Test::Changed => return Some(changed(leaf, row)),
        _ => {}
    }
    let value = text_of(datum)?;
    let cmp = |lit: &Literal| compare(leaf.class, value, lit);
    match &leaf.test {
        Test::Compare(op, lit) => {
            let ord = cmp(lit)?;
            Some(match op {
                Operator::Eq => ord == Ordering::Equal,
                Operator::Ne => ord != Ordering::Equal,
                Operator::Gt => ord == Ordering::Greater,
                Operator::Lt => ord == Ordering::Less,
                Operator::Ge => ord != Ordering::Less,
                _ => ord != Ordering::Greater,
            })
        }
        Test::In(list) => Some(list.iter().any(|l| cmp(l) == Some(Ordering::Equal))),
        Test::NotIn(list) => Some(!list.iter().any(|l| cmp(l) == Some(Ordering::Equal))),
        Test::Contains(s) => Some(value.contains(s.as_str())),
        Test::StartsWith(s) => Some(value.starts_with(s.as_str())),
        Test::EndsWith(s) => Some(value.ends_with(s.as_str())),
        Test::Matches(re) => Some(re.is_match(value)),
        Test::Exists | Test::IsNull | Test::Changed => None,
    }
}

/// `new.col IS DISTINCT FROM old.col`, for updates only.
fn changed(leaf: &Leaf, row: &RowView<'_>) -> bool {
    if row.action != Action::Update {
        return false;
    }
    let Some(new) = lookup(leaf, Image::New, row) else {
        return false;
    };
    let old = match lookup(leaf, Image::Old, row) {
        Some(old) => old,
        // No old value: for a key column PostgreSQL sends one only when the
        // key changed; other columns were refused at compile time.
        None => return false,
    };
    match (old, new) {
        (_, Datum::UnchangedToast) => false,
        (Datum::Null, Datum::Null) => false,
        (Datum::Null, _) | (_, Datum::Null) => true,
        (Datum::Text(a), Datum::Text(b)) => {
            match (std::str::from_utf8(a), std::str::from_utf8(b)) {
                (Ok(a), Ok(b)) => !same_value(leaf.class, a, b),
                _ => a != b,
            }
        }
        (a, b) => a != b,
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
