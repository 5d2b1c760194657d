//! Many connectors under one operator on the real API server (20 here,
//! `PGKAFKA_FLEET` to change it; the benchmark runs 100): all become
//! Ready; at rest the operator asks the API server for well under one
//! request per connector per minute (watches apart); a connector changed
//! while every other one reconciles is handled, not starved.

use std::time::Duration;

use pgkafka_tests::fleet;

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const OPERATOR: &str = env!("CARGO_BIN_EXE_operator");

#[tokio::test(flavor = "multi_thread")]
async fn many_connectors_are_ready_cost_nothing_at_rest_and_none_is_starved() {
    let n = std::env::var("PGKAFKA_FLEET")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    // The operator's default refresh (15 s), watched at rest for 30 s.
    let Some(f) = fleet::run(n, (ENGINE, OPERATOR), 15, Duration::from_secs(30)).await else {
        return;
    };
    eprintln!("{f:#?}");
    assert!(
        f.requests_until_rest >= (4 * n) as f64,
        "the operator's requests are counted: {} before the rest",
        f.requests_until_rest
    );
    assert!(
        f.requests_per_connector_minute < 1.0,
        "{:.2} requests per connector per minute at rest: {:?}",
        f.requests_per_connector_minute,
        f.at_rest_by_verb
    );
    assert!(
        f.reconciles_at_rest > 0,
        "the refresh ran at rest (else nothing was measured)"
    );
    assert!(
        f.changed_handled < Duration::from_secs(60),
        "a changed connector waited {:?} behind the others",
        f.changed_handled
    );
}
