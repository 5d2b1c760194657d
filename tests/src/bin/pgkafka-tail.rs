//! `pgkafka-tail`: prints the changes of a topic as they arrive, one line
//! each: op, table, key and the changed columns (`--json`: the whole record
//! as JSON). The quick start's consumer. It reads every partition from the
//! beginning without joining a consumer group, so the first change shows at
//! once, and waits quietly for a topic that does not exist yet.

use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

#[derive(Parser)]
struct Args {
    /// Bootstrap servers, host:port[,host:port].
    #[arg(long)]
    bootstrap: String,
    /// Topic to follow from its beginning.
    #[arg(long)]
    topic: String,
    /// Exit after this many records.
    #[arg(long)]
    max: Option<usize>,
    /// Print each record whole, as JSON (partition, offset, key, headers, value).
    #[arg(long)]
    json: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", format!("pgkafka-tail-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("log_level", "3")
        .create()?;
    let partitions = wait_for_topic(&consumer, &args.topic);
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(&args.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = 0;
    loop {
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                eprintln!("pgkafka-tail: {e}");
                continue;
            }
        };
        if args.json {
            println!("{}", as_json(&message));
        } else {
            println!("{}", readable(&message));
        }
        seen += 1;
        if args.max.is_some_and(|m| seen >= m) {
            return Ok(());
        }
    }
}

/// The topic's partition count, once it exists (the engine creates it when
/// it starts streaming).
fn wait_for_topic(consumer: &BaseConsumer, topic: &str) -> i32 {
    let started = Instant::now();
    let mut said = false;
    loop {
        let partitions = pgkafka_tests::partition_count(consumer, topic, Duration::from_secs(2));
        if let Some(n) = partitions {
            return i32::try_from(n).unwrap_or(i32::MAX);
        }
        if !said && started.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "pgkafka-tail: waiting for topic {topic} (the engine creates it when it starts)"
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn text(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn value_of(message: &BorrowedMessage<'_>) -> Value {
    message
        .payload()
        .and_then(|p| serde_json::from_slice::<Value>(p).ok())
        .unwrap_or(Value::Null)
}

/// The envelope, without the schema form's `{"schema", "payload"}` wrapper.
fn envelope_of(message: &BorrowedMessage<'_>) -> Value {
    match value_of(message) {
        Value::Object(mut o) if o.contains_key("schema") && o.contains_key("payload") => {
            o.remove("payload").unwrap_or(Value::Null)
        }
        other => other,
    }
}

fn as_json(message: &BorrowedMessage<'_>) -> Value {
    let headers: serde_json::Map<String, Value> = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), text(h.value).into()))
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "partition": message.partition(),
        "offset": message.offset(),
        "key": text(message.key()),
        "headers": headers,
        "value": value_of(message),
    })
}

/// `u public.orders {"id":1}  status: "new" -> "paid"`: op, table, key, and
/// the columns that changed (all of them for an insert or a snapshot row).
fn readable(message: &BorrowedMessage<'_>) -> String {
    let key = text(message.key()).unwrap_or_else(|| "-".into());
    if message.payload().is_none() {
        return format!("tombstone {key}");
    }
    let value = envelope_of(message);
    let op = value["op"].as_str().unwrap_or("?");
    let table = format!(
        "{}.{}",
        value["source"]["schema"].as_str().unwrap_or("?"),
        value["source"]["table"].as_str().unwrap_or("?")
    );
    let (before, after) = (&value["before"], &value["after"]);
    let columns: Vec<String> = match (op, after.as_object()) {
        ("d", _) | (_, None) => Vec::new(),
        (_, Some(after)) => after
            .iter()
            .filter_map(|(column, new)| match before.get(column) {
                Some(old) if old == new => None,
                Some(old) => Some(format!("{column}: {old} -> {new}")),
                None => Some(format!("{column}={new}")),
            })
            .collect(),
    };
    format!("{op} {table} {key}  {}", columns.join(" "))
}
