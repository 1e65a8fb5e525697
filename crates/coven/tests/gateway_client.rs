//! The web team's package, `@spell-coven/gateway-client` (clients/js, docs/clients.md),
//! tested with `node --test` against a real `coven demo`: typed events and live rooms
//! through player moves, a slow network, dropped connections and the hub killed and
//! restarted; the rooms API; the served `OpenAPI` document through a real validator.
//! Run as part of `cargo test` so that the README's one test command runs it;
//! `clients/js/run.sh` installs the locked npm dev dependencies first.

use std::process::Command;

#[test]
fn the_gateway_client_package_works_against_coven_demo() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/js/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .env("COVEN_BIN", env!("CARGO_BIN_EXE_coven"))
        .output()
        .expect("bash runs clients/js/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the package's tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("fail 0"), "{stdout}");
}
