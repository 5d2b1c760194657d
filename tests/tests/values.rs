//! Every value as PostgreSQL holds it, end to end: a wide table of built-in
//! and user types with extreme values goes through the engine, and
//! PostgreSQL itself reads each captured value back and compares it with
//! the stored one. Then the Debezium handling modes, the schema form,
//! tombstones and `source.sequence`, and schema changes.

use std::time::Duration;

use pgkafka_crds::{BinaryHandlingMode, DecimalHandlingMode, KafkaSpec, TimePrecisionMode};
use pgkafka_tests::{
    manifest, read_to_end, unique, wait_for, Broker, Consumed, Engine, Manifest, Postgres, TestDb,
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
    /// `c::jsonb = (v->>'c')::jsonb`: a string holding the JSON text.
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
    // JSON's own null and a JSON string: Debezium's form keeps them apart
    // from SQL NULL and from text.
    ("jnull", "jsonb", "'null'", Back::Json),
    ("jstr", "jsonb", "'\"just a string\"'", Back::Json),
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
    ("ajb", "jsonb[]", "ARRAY['{\"a\": 1}'::jsonb, '[2]']", Back::Elements),
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
        Back::Json => format!("c.{name}::jsonb = (v->>'{name}')::jsonb"),
    }
}

/// The columns whose captured value PostgreSQL does not read back as the
/// stored one by their `(column, check)`, with what was captured.
async fn mismatches(db: &TestDb, record: &Consumed, checks: &[(String, String)]) -> Vec<String> {
    let raw = record.raw.as_deref().expect("a value");
    let mut wrong = Vec::new();
    for (name, check) in checks {
        let sql = format!(
            "SELECT {check} FROM wide c, (SELECT ($1::text::jsonb)->'after' AS v) x WHERE c.id = 1"
        );
        let row = db.client.query_one(&sql, &[&raw]).await;
        let same = row.as_ref().map(|r| r.get::<_, Option<bool>>(0));
        if !matches!(same, Ok(Some(true))) {
            wrong.push(format!(
                "{name}: captured {} ({same:?})",
                record.value["after"][name]
            ));
        }
    }
    wrong
}

/// Starts an engine on the wide table with `kafka` options, inserts the
/// row and returns its one record.
async fn capture_wide(db: &TestDb, modes: impl FnOnce(&mut KafkaSpec)) -> Consumed {
    let broker = Broker::start();
    let (name, prefix) = (unique("wide"), unique("wide"));
    let m = Manifest::new(&name, db, &broker.bootstrap, &prefix, "    - table: wide")
        .spec(|s| modes(&mut s.kafka))
        .yaml();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    insert_wide(db).await;
    wait_confirmed(db, &format!("{name}_slot")).await;
    let mut records = read_to_end(&broker.bootstrap, &format!("{prefix}.public.wide"));
    assert_eq!(records.len(), 1, "{}", engine.log_text());
    assert_eq!(engine.stop(), Some(0));
    records.remove(0)
}

async fn wait_confirmed(db: &TestDb, slot: &str) {
    db.wait_confirmed_all(slot, LONG).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_value_reads_back_as_postgres_holds_it() {
    let db = Postgres::shared().fresh_database().await;
    create_wide(&db).await;
    let record = capture_wide(&db, |_| {}).await;
    let after = &record.value["after"];
    let checks: Vec<(String, String)> = COLUMNS
        .iter()
        .map(|(name, ty, _, back)| (format!("{name} {ty}"), check(name, ty, *back)))
        .collect();
    let wrong = mismatches(&db, &record, &checks).await;
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
}

#[tokio::test(flavor = "multi_thread")]
async fn debezium_modes_schema_form_tombstones_and_sequence() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        "CREATE TABLE m (id int PRIMARY KEY, price numeric(10,2), free numeric, d date,
                         t time(3), ts timestamp, bin bytea, doc jsonb)",
    )
    .await;
    let (name, prefix) = (unique("modes"), unique("modes"));
    let changes = format!("{prefix}-schemas");
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: m")
        .spec(|s| {
            s.kafka.schemas = true;
            s.kafka.decimal_handling_mode = DecimalHandlingMode::Precise;
            s.kafka.time_precision_mode = TimePrecisionMode::Adaptive;
            s.kafka.binary_handling_mode = BinaryHandlingMode::Hex;
            s.kafka.schema_change_topic = Some(changes.clone());
        })
        .yaml();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    db.exec(
        "INSERT INTO m VALUES (1, 1234.50, -0.5, '1970-01-02', '00:00:01.5',
                               '1970-01-01 00:00:01.000001', '\\x00ff', '{\"a\": 1}');
         DELETE FROM m WHERE id = 1;
         ALTER TABLE m ADD COLUMN note text;
         INSERT INTO m (id, note) VALUES (2, 'after the change');",
    )
    .await;
    wait_confirmed(&db, &format!("{name}_slot")).await;
    let all = read_to_end(&broker.bootstrap, &format!("{prefix}.public.m"));
    // Keys choose partitions: order by key, then offset.
    let of_id = |id: i64| -> Vec<Consumed> {
        all.iter()
            .filter(|r| {
                r.key
                    .as_deref()
                    .and_then(|k| serde_json::from_str::<serde_json::Value>(k).ok())
                    .is_some_and(|k| k["payload"]["id"] == id)
            })
            .cloned()
            .collect()
    };
    let records: Vec<Consumed> = of_id(1).into_iter().chain(of_id(2)).collect();
    let ops: Vec<String> = records
        .iter()
        .map(|r| match r.raw {
            None => "tombstone".to_owned(),
            Some(_) => r.value["payload"]["op"].as_str().unwrap_or("?").to_owned(),
        })
        .collect();
    assert_eq!(ops, ["c", "d", "tombstone", "c"], "{}", engine.log_text());
    let insert = &records[0].value;
    // Every mapping, exactly as Debezium documents it.
    assert_eq!(
        insert["payload"]["after"],
        serde_json::json!({"id": 1, "price": "AeI6", "free": {"scale": 1, "value": "+w=="},
                           "d": 1, "t": 1500, "ts": 1_000_001, "bin": "00ff", "doc": "{\"a\": 1}"})
    );
    let key: serde_json::Value =
        serde_json::from_str(records[0].key.as_deref().expect("key")).expect("key JSON");
    assert_eq!(key["payload"], serde_json::json!({"id": 1}));
    assert_eq!(key["schema"]["name"], format!("{prefix}.public.m.Key"));
    let fields = &insert["schema"]["fields"][1]["fields"];
    let named: Vec<(&str, &str)> = fields
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap_or("?"),
                f["name"]
                    .as_str()
                    .unwrap_or(f["type"].as_str().unwrap_or("?")),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("id", "int32"),
            ("price", "org.apache.kafka.connect.data.Decimal"),
            ("free", "io.debezium.data.VariableScaleDecimal"),
            ("d", "io.debezium.time.Date"),
            ("t", "io.debezium.time.Time"),
            ("ts", "io.debezium.time.MicroTimestamp"),
            ("bin", "string"),
            ("doc", "io.debezium.data.Json"),
        ]
    );
    // The tombstone carries the delete's key; the sequence orders records.
    assert_eq!(records[2].key, records[1].key);
    let sequence = |r: &Consumed| -> Vec<u64> {
        let text = r.value["payload"]["source"]["sequence"]
            .as_str()
            .expect("sequence");
        let pair: Vec<Option<String>> =
            serde_json::from_str(text).expect("a JSON array in a string");
        pair.into_iter()
            .map(|s| s.and_then(|s| s.parse().ok()).unwrap_or(0))
            .collect()
    };
    assert!(sequence(&records[0]) < sequence(&records[1]));
    assert!(sequence(&records[1]) < sequence(&records[3]));
    assert_eq!(
        records[0].value["payload"]["source"]["xmin"],
        serde_json::Value::Null
    );
    // The new column is in the schema from the next change on, and the
    // schema-change topic says what changed.
    let after_change = &records[3].value;
    assert_eq!(after_change["payload"]["after"]["note"], "after the change");
    let last = after_change["schema"]["fields"][1]["fields"]
        .as_array()
        .expect("fields");
    assert_eq!(last.last().expect("a field")["field"], "note");
    let announced = read_to_end(&broker.bootstrap, &changes);
    let kinds: Vec<&str> = announced
        .iter()
        .filter_map(|r| r.value["type"].as_str())
        .collect();
    assert_eq!(kinds, ["CURRENT", "ALTER"]);
    let columns = announced[1].value["columns"].as_array().expect("columns");
    assert_eq!(columns.last().expect("a column")["name"], "note");
    assert_eq!(engine.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_on_a_dropped_column_halts_naming_it_and_loses_nothing() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE TABLE f (id int PRIMARY KEY, status text)")
        .await;
    let (name, prefix) = (unique("drop"), unique("drop"));
    let listeners = "    - table: f\n      targets:\n        - {filter: {conditions: [{field: new.status, operator: '==', value: x}]}}";
    let m = manifest(&name, &db, &broker.bootstrap, &prefix, listeners);
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    let slot = format!("{name}_slot");
    db.exec("INSERT INTO f VALUES (1, 'x')").await;
    wait_confirmed(&db, &slot).await;
    let before = db.confirmed_flush(&slot).await;
    db.exec("ALTER TABLE f DROP COLUMN status; INSERT INTO f VALUES (2)")
        .await;
    wait_for(LONG, "the engine to halt", || async {
        engine.halted().is_some()
    })
    .await;
    let halted = engine.halted().unwrap_or_default();
    assert!(
        halted.contains("spec.listeners[0].targets[0].filter") && halted.contains("status"),
        "{halted}"
    );
    // It stays up (no crash loop), not ready, and the slot did not move
    // past the change it could not handle.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        engine.http_get("/healthz").is_some(),
        "the process stays up"
    );
    assert_eq!(engine.http_get("/readyz").map(|r| r.0), Some(503));
    let end = db.confirmed_flush(&slot).await;
    assert!(end <= db.current_wal().await && end >= before);
    let records = read_to_end(&broker.bootstrap, &format!("{prefix}.public.f"));
    assert_eq!(records.len(), 1, "only the change before the drop");
    assert_eq!(engine.stop(), Some(1));
}

/// The columns the handling modes change, read back by PostgreSQL from
/// their `precise` / `adaptive` / `hex` forms: (column, check).
const MODE_CHECKS: &[(&str, &str)] = &[
    ("n", "c.n = precise(v->'n', NULL)"),
    ("n40", "c.n40 = precise(v->'n40', NULL)"),
    ("nnan", "v->'nnan' = 'null'::jsonb"),
    ("n2", "c.n2 = precise(v->'n2', 2)"),
    ("dnum", "c.dnum = precise(v->'dnum', 2)"),
    ("anum", "ARRAY(SELECT precise(el, NULL) FROM jsonb_array_elements(v->'anum') el) IS NOT DISTINCT FROM ARRAY(SELECT NULLIF(x, 'NaN') FROM unnest(c.anum) x)"),
    ("by", "c.by = decode(v->>'by', 'hex')"),
    ("d", "c.d = '1970-01-01'::date + (v->>'d')::int"),
    ("dinf", "(v->>'dinf')::bigint = 2147483647"),
    ("adate", "c.adate = ARRAY(SELECT CASE WHEN el::bigint = 2147483647 THEN 'infinity'::date ELSE '1970-01-01'::date + el::int END FROM jsonb_array_elements_text(v->'adate') el)"),
    ("tm", "(v->>'tm')::numeric = extract(epoch FROM c.tm) * 1000000"),
    ("tm24", "(v->>'tm24')::numeric = extract(epoch FROM c.tm24) * 1000000"),
    ("ttz", "(v->>'ttz')::timetz = c.ttz AT TIME ZONE 'UTC' AND v->>'ttz' LIKE '%Z'"),
    ("ts", "(v->>'ts')::numeric = extract(epoch FROM c.ts) * 1000000"),
    ("tsinf", "(v->>'tsinf')::numeric = -9223372036832400000"),
    ("tsz", "(v->>'tsz')::timestamptz = c.tsz"),
];

/// `precise` back to numeric: the two's-complement bytes at `scale` (the
/// column's), or `{"scale", "value"}` when `scale` is null.
const PRECISE_SQL: &str = "
CREATE FUNCTION twos(b bytea) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN get_byte(b, 0) >= 128 THEN x - 256::numeric ^ length(b) ELSE x END
    FROM (SELECT sum(get_byte(b, i)::numeric * 256::numeric ^ (length(b) - 1 - i)) AS x
            FROM generate_series(0, length(b) - 1) i) s $$;
CREATE FUNCTION precise(j jsonb, scale int) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN j IS NULL OR j = 'null' THEN NULL
              WHEN scale IS NULL THEN twos(decode(j->>'value', 'base64')) / 10::numeric ^ (j->>'scale')::int
              ELSE twos(decode(j #>> '{}', 'base64')) / 10::numeric ^ scale END $$;";

#[tokio::test(flavor = "multi_thread")]
async fn every_value_reads_back_in_the_precise_adaptive_and_hex_modes() {
    let db = Postgres::shared().fresh_database().await;
    create_wide(&db).await;
    db.exec(PRECISE_SQL).await;
    let record = capture_wide(&db, |k| {
        k.decimal_handling_mode = DecimalHandlingMode::Precise;
        k.time_precision_mode = TimePrecisionMode::Adaptive;
        k.binary_handling_mode = BinaryHandlingMode::Hex;
    })
    .await;
    let checks: Vec<(String, String)> = MODE_CHECKS
        .iter()
        .map(|(c, sql)| (c.to_string(), sql.to_string()))
        .collect();
    let wrong = mismatches(&db, &record, &checks).await;
    assert!(
        wrong.is_empty(),
        "{} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
