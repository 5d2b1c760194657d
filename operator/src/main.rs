//! Placeholder: the controller arrives with the operator issue. Until then the
//! binary says so instead of pretending to reconcile anything.

fn main() -> std::process::ExitCode {
    eprintln!("pgkafka-operator: not implemented yet; run the engine with `pgkafka-connector run -f FILE`");
    std::process::ExitCode::from(2)
}
