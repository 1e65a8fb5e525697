//! The browser tests of `e2e/` run as part of `cargo test` (`mod browser;` in each):
//! `e2e/run.sh` installs what a test needs when missing (chromium, coturn, the
//! locked npm packages) and runs one test file with `node --test` against the
//! `coven` binary cargo built for these tests.

use std::process::Command;

/// Runs `e2e/<file>` and fails with its output unless every test in it passed.
pub fn run(file: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../e2e/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg(file)
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
