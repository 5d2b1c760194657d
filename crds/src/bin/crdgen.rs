//! Prints the `PgKafkaConnector` CustomResourceDefinition as YAML.

fn main() -> std::process::ExitCode {
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
