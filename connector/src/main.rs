//! `pgkafka-connector`: runs the engine on a `PgKafkaConnector` manifest.

fn main() -> std::process::ExitCode {
    pgkafka_connector::cli::main()
}
