//! Tests of filter compilation and evaluation.
use super::*;
use crate::event::Column;
use bytes::Bytes;
use pgkafka_crds::QualifiedTable;

fn col(name: &str, type_oid: u32, is_key: bool) -> Column {
    Column {
        is_key,
        name: name.into(),
        type_oid,
        value_oid: type_oid,
        type_modifier: -1,
    }
}

fn columns() -> Vec<Column> {
    vec![
        col("id", 23, true),
        col("status", 25, false),
        col("amount", 1700, false),
        col("at", 1184, false),
        col("tags", 1009, false),
    ]
}

fn shape(columns: &[Column], identity: u8) -> TableShape {
    TableShape {
        table: QualifiedTable::parse("public.orders").expect("valid"),
        columns: columns.to_vec(),
        replica_identity: identity,
    }
}

fn compile(yaml: &str, identity: u8) -> Result<CompiledFilter, FilterError> {
    let spec: FilterSpec = serde_yaml::from_str(yaml).expect("filter parses");
    CompiledFilter::compile(&spec, &shape(&columns(), identity), "f")
}

fn t(s: &str) -> Datum {
    Datum::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn row(id: &str, status: Option<&str>, amount: &str, at: &str) -> Vec<Datum> {
    vec![
        t(id),
        status.map_or(Datum::Null, t),
        t(amount),
        t(at),
        t("{a}"),
    ]
}

fn insert(new: &[Datum]) -> RowView<'_> {
    RowView {
        action: Action::Insert,
        old: None,
        new: Some(new),
    }
}

#[test]
fn typed_comparisons() {
    let f = compile(
        "{conditions: [{field: new.amount, operator: '>', value: 9.75}]}",
        b'd',
    )
    .expect("compiles");
    assert!(f.matches(&insert(&row(
        "1",
        Some("x"),
        "10.5",
        "2024-01-01 00:00:00+00"
    ))));
    assert!(!f.matches(&insert(&row(
        "1",
        Some("x"),
        "9.750",
        "2024-01-01 00:00:00+00"
    ))));
    let f = compile(
        "{conditions: [{field: new.at, operator: '>=', value: '2024-01-01T02:00:00+02:00'}]}",
        b'd',
    )
    .expect("compiles");
    assert!(f.matches(&insert(&row("1", None, "0", "2024-01-01 00:00:00+00"))));
    assert!(!f.matches(&insert(&row("1", None, "0", "2023-12-31 23:59:59.999+00"))));
    let f = compile(
        "{conditions: [{field: new.id, operator: in, value: [2, 10]}]}",
        b'd',
    )
    .expect("compiles");
    assert!(
        f.matches(&insert(&row("10", None, "0", "")))
            && !f.matches(&insert(&row("1", None, "0", "")))
    );
}

#[test]
fn null_is_unknown_and_unknown_does_not_pass() {
    let nul = row("1", None, "0", "");
    for (cond, expected) in [
        ("{field: new.status, operator: '==', value: x}", false),
        ("{field: new.status, operator: '!=', value: x}", false),
        ("{not: {field: new.status, operator: '==', value: x}}", false),
        ("{field: new.status, operator: not_in, value: [x]}", false),
        ("{field: new.status, operator: is_null}", true),
        ("{field: new.status, operator: exists}", true),
        ("{field: new.status, operator: contains, value: x}", false),
        ("{any: [{field: new.status, operator: '==', value: x}, {field: new.id, operator: '==', value: 1}]}", true),
        ("{all: [{field: new.status, operator: '==', value: x}, {field: new.id, operator: '==', value: 2}]}", false),
    ] {
        let f = compile(&format!("{{conditions: [{cond}]}}"), b'd').expect("compiles");
        assert_eq!(f.matches(&insert(&nul)), expected, "{cond}");
    }
}

#[test]
fn logic_actions_and_text_operators() {
    let f = compile(
        "{actions: [insert], logic: OR, conditions: [{field: new.status, operator: starts_with, value: pa}, {field: new.status, operator: matches, value: '^x+$'}]}",
        b'd',
    )
    .expect("compiles");
    assert!(f.matches(&insert(&row("1", Some("paid"), "0", ""))));
    assert!(f.matches(&insert(&row("1", Some("xxx"), "0", ""))));
    assert!(!f.matches(&insert(&row("1", Some("new"), "0", ""))));
    let new = row("1", Some("paid"), "0", "");
    assert!(
        !f.matches(&RowView {
            action: Action::Update,
            old: None,
            new: Some(&new)
        }),
        "actions limit"
    );
}

#[test]
fn changed_needs_an_update_and_the_old_value() {
    let f = compile(
        "{conditions: [{field: new.status, operator: changed}]}",
        b'f',
    )
    .expect("compiles");
    let old = OldTuple::Full(row("1", Some("new"), "0", ""));
    let same = OldTuple::Full(row("1", Some("paid"), "0", ""));
    let new = row("1", Some("paid"), "0", "");
    let update = |old| RowView {
        action: Action::Update,
        old: Some(old),
        new: Some(&new),
    };
    assert!(f.matches(&update(&old)));
    assert!(!f.matches(&update(&same)));
    let was_null = OldTuple::Full(row("1", None, "0", ""));
    assert!(f.matches(&update(&was_null)), "NULL to a value is a change");
    assert!(!f.matches(&insert(&new)), "an insert is not a change");
    let toast = vec![t("1"), Datum::UnchangedToast, t("0"), t(""), t("{a}")];
    assert!(!f.matches(&RowView {
        action: Action::Update,
        old: Some(&old),
        new: Some(&toast)
    }));
    // Numeric compares as a number: 1.50 -> 1.5 is no change.
    let f = compile(
        "{conditions: [{field: new.amount, operator: changed}]}",
        b'f',
    )
    .expect("compiles");
    let old = OldTuple::Full(row("1", None, "1.50", ""));
    let new = row("1", None, "1.5", "");
    assert!(!f.matches(&RowView {
        action: Action::Update,
        old: Some(&old),
        new: Some(&new)
    }));
}

#[test]
fn compile_errors_name_the_field_and_the_fix() {
    let e = compile("{conditions: [{field: new.nope, operator: exists}]}", b'd')
        .expect_err("must fail");
    assert_eq!(e.path, "f.conditions[0].field");
    assert!(
        e.message
            .contains("has no column \"nope\" (columns: id, status, amount, at, tags)"),
        "{e}"
    );
    let e = compile(
        "{conditions: [{field: old.status, operator: '==', value: x}]}",
        b'd',
    )
    .expect_err("must fail");
    assert!(e.message.contains("REPLICA IDENTITY FULL"), "{e}");
    assert!(
        compile(
            "{conditions: [{field: old.id, operator: '==', value: 1}]}",
            b'd'
        )
        .is_ok(),
        "key columns are sent"
    );
    let e = compile(
        "{conditions: [{any: [{field: new.status, operator: changed}]}]}",
        b'd',
    )
    .expect_err("must fail");
    assert_eq!(e.path, "f.conditions[0].any[0].field");
    let e = compile(
        "{conditions: [{field: new.amount, operator: '>', value: abc}]}",
        b'd',
    )
    .expect_err("must fail");
    assert_eq!(
        (e.path.as_str(), e.message.as_str()),
        ("f.conditions[0].value", "\"abc\" is not a numeric value")
    );
    let e = compile(
        "{conditions: [{field: new.amount, operator: contains, value: '1'}]}",
        b'd',
    )
    .expect_err("must fail");
    assert_eq!(e.path, "f.conditions[0].operator");
    let e = compile(
        "{conditions: [{field: new.tags, operator: '<', value: x}]}",
        b'd',
    )
    .expect_err("must fail");
    assert_eq!(e.path, "f.conditions[0].operator");
    let e = compile(
        "{conditions: [{field: new.status, operator: matches, value: '(unclosed'}]}",
        b'd',
    )
    .expect_err("must fail");
    assert!(e.message.starts_with("bad regular expression"), "{e}");
}
