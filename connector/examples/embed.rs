//! Embeds the engine in a program: streams `public.orders` into Kafka until
//! Ctrl-C, printing the engine's status every few seconds.
//!
//! ```text
//! PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres PGPASSWORD=postgres PGDATABASE=postgres \
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run -p pgkafka-connector --example embed
//! ```

use std::time::Duration;

use pgkafka_connector::credentials::Secret;
use pgkafka_connector::Engine;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = env("PGPORT", "5432").parse()?;
    let bootstrap = env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092");
    let engine = Engine::builder("embedded")
        .with_postgres(
            &env("PGHOST", "127.0.0.1"),
            port,
            &env("PGDATABASE", "postgres"),
        )
        .with_user(
            &env("PGUSER", "postgres"),
            Secret::new(env("PGPASSWORD", "")),
        )
        .with_publication("embedded_pub")
        .with_slot("embedded_slot")
        .with_kafka(&[bootstrap.as_str()], "embedded")
        .with_tables(["public.orders"])
        .build()?;
    let status = engine.status();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let s = status.status();
            println!(
                "streaming={} confirmed={} delivered={}",
                s.streaming, s.confirmed_flush_lsn, s.counters.records_delivered
            );
        }
    });
    engine
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
