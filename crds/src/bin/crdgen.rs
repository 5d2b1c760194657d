//! Prints the `PgKafkaConnector` CustomResourceDefinition as YAML, or with
//! `--reference` the field reference as Markdown (for the README).

fn main() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--reference") {
        print!("{}", pgkafka_crds::reference_markdown());
        return std::process::ExitCode::SUCCESS;
    }
    match pgkafka_crds::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
