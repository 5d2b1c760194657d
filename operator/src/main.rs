//! `pgkafka-operator`: wiring only; the logic lives in the library.

fn main() -> std::process::ExitCode {
    pgkafka_operator::cli::main()
}
