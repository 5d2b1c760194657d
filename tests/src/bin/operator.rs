//! The operator binary, built with the tests so they can run it.

fn main() -> std::process::ExitCode {
    pgkafka_operator::cli::main()
}
