//! The lobby in headless Chromium against a real `coven demo` (e2e/lobby.test.mjs,
//! playwright-core + Debian's chromium), run as part of `cargo test` so that one
//! command runs every test. `e2e/run.sh` installs chromium (apt) when missing and
//! the locked npm packages; `.ci/run` does both before the tests.

use std::process::Command;

#[test]
fn the_lobby_works_in_headless_chromium() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../e2e/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .env("COVEN_BIN", env!("CARGO_BIN_EXE_coven"))
        .env("E2E_SKIP_BUILD", "1")
        .output()
        .expect("bash runs e2e/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("fail 0"), "{stdout}");
}
