//! The engine's command line, built inside this package so the end-to-end
//! tests can start (and kill -9) it as a process: `CARGO_BIN_EXE_engine`.

fn main() -> std::process::ExitCode {
    pgkafka_connector::cli::main()
}
