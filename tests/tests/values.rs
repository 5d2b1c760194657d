//! Every value as PostgreSQL holds it, end to end: a wide table of built-in
//! and user types with extreme values goes through the engine, and
//! PostgreSQL itself reads each captured value back and compares it with
//! the stored one. Then the Debezium handling modes, the schema form,
//! tombstones and `source.sequence`, and schema changes.

use std::time::Duration;

use pgkafka_tests::{
    manifest, read_to_end, unique, wait_for, Broker, Consumed, Engine, Postgres, TestDb,
};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

/// How PostgreSQL reads a captured value `v` (the record's `after` as jsonb)
/// back, to compare with the stored column `c`.
#[derive(Clone, Copy)]
enum Back {
    /// `(v->>'c')::<type>`: the JSON string or number cast to the type.
    Cast,
    /// `to_jsonb(c) = v->'c'`: arrays whose elements JSON holds as is.
    ToJsonb,
    /// `ARRAY(SELECT jsonb_array_elements_text(v->'c'))::<type>`.
    Elements,
    /// `c::text = v->>'c'`: types without an equality operator.
    Text,
    /// [`Back::Elements`] compared as text: arrays of such types.
    ElementsText,
    /// `decode(v->>'c', 'base64')`.
    Base64,
    /// `c::jsonb = v->'c'`.
    Json,
}

/// (column, type, value literal, how it is read back)
const COLUMNS: &[(&str, &str, &str, Back)] = &[
    ("b", "bool", "true", Back::Cast),
    ("i2", "int2", "-32768", Back::Cast),
    ("i4", "int4", "2147483647", Back::Cast),
    ("i8", "int8", "-9223372036854775808", Back::Cast),
    ("f4", "float4", "3.4028235e38", Back::Cast),
    ("f8", "float8", "2.2250738585072014e-308", Back::Cast),
    ("f8nan", "float8", "'NaN'", Back::Cast),
    ("f8inf", "float8", "'-Infinity'", Back::Cast),
    ("f8neg0", "float8", "'-0'", Back::Cast),
    ("n", "numeric", "'-0.000000000000000000001'", Back::Cast),
    ("n40", "numeric", "'1234567890123456789012345678901234567890.0123456789'", Back::Cast),
    ("nnan", "numeric", "'NaN'", Back::Cast),
    ("n2", "numeric(10,2)", "'12345678.90'", Back::Cast),
    ("t", "text", "E'tab\\t\"quote\" \\\\ ünï 🚚 \\n'", Back::Cast),
    ("vc", "varchar(10)", "'NULL'", Back::Cast),
    ("ch", "char(5)", "'ab'", Back::Cast),
    ("nm", "name", "'a name'", Back::Cast),
    ("u", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", Back::Cast),
    ("j", "json", "'{\"a\": [1, 2.50, null], \"b\": {\"c\": \"d\"}}'", Back::Json),
    ("jb", "jsonb", "'[{\"x\": 1e300}, \"s\", true]'", Back::Json),
    ("x", "xml", "'<a b=\"1\">t&amp;</a>'", Back::Text),
    ("by", "bytea", "(SELECT string_agg(set_byte('\\x00'::bytea, 0, g), ''::bytea) FROM generate_series(0, 255) g)", Back::Base64),
    ("d", "date", "'0044-03-15 BC'", Back::Cast),
    ("dinf", "date", "'infinity'", Back::Cast),
    ("tm", "time", "'23:59:59.999999'", Back::Cast),
    ("tm24", "time", "'24:00:00'", Back::Cast),
    ("ttz", "timetz", "'13:04:05.5+05:30'", Back::Cast),
    ("ts", "timestamp", "'2024-02-29 13:04:05.123456'", Back::Cast),
    ("tsinf", "timestamp", "'-infinity'", Back::Cast),
    ("tsz", "timestamptz", "'1999-12-31 23:59:59.999999-08'", Back::Cast),
    ("iv", "interval", "'1 year 2 mons -3 days 04:05:06.789'", Back::Cast),
    ("ip", "inet", "'2001:db8::1/64'", Back::Cast),
    ("net", "cidr", "'10.0.0.0/8'", Back::Cast),
    ("mac", "macaddr", "'08:00:2b:01:02:03'", Back::Cast),
    ("mny", "money", "'-1234.56'", Back::Cast),
    ("bits", "bit(4)", "B'1010'", Back::Cast),
    ("vbits", "varbit", "B'1'", Back::Cast),
    ("rng", "int4range", "'[1,10)'", Back::Cast),
    ("pt", "point", "'(1.5,-2)'", Back::Text),
    ("bx", "box", "'(1,1),(0,0)'", Back::Text),
    ("lsn", "pg_lsn", "'16/B374D848'", Back::Cast),
    ("tsv", "tsvector", "'a fat cat'", Back::Cast),
    ("e", "mood", "'ok'", Back::Cast),
    ("dom", "posint", "7", Back::Cast),
    ("dnum", "amount", "'12.30'", Back::Cast),
    ("comp", "pair", "ROW(1, 'x y')", Back::Cast),
    ("ai", "int[]", "'{1,NULL,-3}'", Back::ToJsonb),
    ("a2", "int[]", "'{{1,2},{3,4}}'", Back::ToJsonb),
    ("alb", "int[]", "'[0:1]={5,6}'", Back::ToJsonb),
    ("aempty", "int[]", "'{}'", Back::ToJsonb),
    ("at", "text[]", "'{plain,\"with space\",\"q\\\"uote\",NULL,\"NULL\"}'", Back::ToJsonb),
    ("ae", "mood[]", "'{sad,ok}'", Back::ToJsonb),
    ("adom", "posint[]", "'{1,2}'", Back::ToJsonb),
    ("anum", "numeric[]", "'{1.10,NaN,-0.5}'", Back::Elements),
    ("ats", "timestamptz[]", "'{\"2024-01-01 00:00:00+00\",infinity}'", Back::Elements),
    ("abool", "bool[]", "'{t,f}'", Back::ToJsonb),
    ("ajb", "jsonb[]", "ARRAY['{\"a\": 1}'::jsonb, '[2]']", Back::ToJsonb),
    ("abx", "box[]", "'{(1,1),(0,0);(3,3),(2,2)}'", Back::ElementsText),
    ("auuid", "uuid[]", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", Back::ToJsonb),
    ("adate", "date[]", "'{2024-02-29,infinity}'", Back::ToJsonb),
    ("arng", "int4range[]", "'{\"[1,2)\",empty}'", Back::Elements),
];

async fn create_wide(db: &TestDb) {
    db.exec(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
         CREATE DOMAIN amount AS numeric(12, 2);
         CREATE TYPE pair AS (a int, b text);",
    )
    .await;
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|(name, ty, _, _)| format!("{name} {ty}"))
        .collect();
    db.exec(&format!(
        "CREATE TABLE wide (id int PRIMARY KEY, {})",
        columns.join(", ")
    ))
    .await;
}

async fn insert_wide(db: &TestDb) {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let values: Vec<&str> = COLUMNS.iter().map(|c| c.2).collect();
    db.exec(&format!(
        "INSERT INTO wide (id, {}) VALUES (1, {})",
        names.join(", "),
        values.join(", ")
    ))
    .await;
}

/// The SQL that reads column `name` back from `v` and compares.
fn check(name: &str, ty: &str, back: Back) -> String {
    match back {
        Back::Cast => format!("c.{name} IS NOT DISTINCT FROM (v->>'{name}')::{ty}"),
        Back::ToJsonb => format!("to_jsonb(c.{name}) = v->'{name}'"),
        Back::Elements => {
            format!("c.{name} = ARRAY(SELECT jsonb_array_elements_text(v->'{name}'))::{ty}")
        }
        Back::Text => format!("c.{name}::text = v->>'{name}'"),
        Back::ElementsText => format!(
            "c.{name}::text = ARRAY(SELECT jsonb_array_elements_text(v->'{name}'))::{ty}::text"
        ),
        Back::Base64 => format!("c.{name} = decode(v->>'{name}', 'base64')"),
        Back::Json => format!("c.{name}::jsonb = v->'{name}'"),
    }
}

/// The columns whose captured value PostgreSQL does not read back as the
/// stored one, with what was captured.
async fn mismatches(db: &TestDb, record: &Consumed) -> Vec<String> {
    let raw = record.raw.as_deref().expect("a value");
    let mut wrong = Vec::new();
    for (name, ty, _, back) in COLUMNS {
        let sql = format!(
            "SELECT {} FROM wide c, (SELECT ($1::text::jsonb)->'after' AS v) x WHERE c.id = 1",
            check(name, ty, *back)
        );
        let row = db.client.query_one(&sql, &[&raw]).await;
        let same = row.as_ref().map(|r| r.get::<_, Option<bool>>(0));
        if !matches!(same, Ok(Some(true))) {
            wrong.push(format!(
                "{name} {ty}: captured {} ({same:?})",
                record.value["after"][name]
            ));
        }
    }
    wrong
}

async fn wait_confirmed(db: &TestDb, slot: &str) {
    let target = db.current_wal().await;
    wait_for(LONG, "the slot to confirm every write", || async {
        db.confirmed_flush(slot).await >= target
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_value_reads_back_as_postgres_holds_it() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    create_wide(&db).await;
    let (name, prefix) = (unique("wide"), unique("wide"));
    let m = manifest(&name, &db, &broker.bootstrap, &prefix, "    - table: wide");
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    insert_wide(&db).await;
    wait_confirmed(&db, &format!("{name}_slot")).await;
    let records = read_to_end(&broker.bootstrap, &format!("{prefix}.public.wide"));
    assert_eq!(records.len(), 1, "{}", engine.log_text());
    let after = &records[0].value["after"];
    let wrong = mismatches(&db, &records[0]).await;
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        COLUMNS.len(),
        wrong.join("\n")
    );
    // Domains are their base type and arrays of any type are arrays.
    assert_eq!(after["dom"], 7);
    assert_eq!(after["dnum"], "12.30");
    assert_eq!(after["ae"], serde_json::json!(["sad", "ok"]));
    assert_eq!(after["adom"], serde_json::json!([1, 2]));
    assert_eq!(after["a2"], serde_json::json!([[1, 2], [3, 4]]));
    assert_eq!(
        after["abx"],
        serde_json::json!(["(1,1),(0,0)", "(3,3),(2,2)"])
    );
    assert_eq!(after["arng"], serde_json::json!(["[1,2)", "empty"]));
    assert_eq!(engine.stop(), Some(0));
}
