//! `pgkafka-tail`: prints the records of a topic as they arrive, one JSON line
//! each (key, headers, value). The quick start's consumer.

use std::time::Duration;

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

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
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", format!("pgkafka-tail-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()?;
    consumer.subscribe(&[&args.topic])?;
    let mut seen = 0;
    loop {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                eprintln!("pgkafka-tail: {e}");
                continue;
            }
        };
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        let headers: serde_json::Map<String, serde_json::Value> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), text(h.value).into()))
                    .collect()
            })
            .unwrap_or_default();
        let value = message
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            .unwrap_or(serde_json::Value::Null);
        let line = serde_json::json!({
            "partition": message.partition(),
            "offset": message.offset(),
            "key": text(message.key()),
            "headers": headers,
            "value": value,
        });
        println!("{line}");
        seen += 1;
        if args.max.is_some_and(|m| seen >= m) {
            return Ok(());
        }
    }
}
