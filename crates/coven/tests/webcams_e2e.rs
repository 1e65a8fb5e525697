//! Webcams at the table (docs/spec.md §12) in headless Chromium with fake cameras,
//! against a real `coven demo` and Debian's coturn (e2e/webcams.test.mjs), run as part
//! of `cargo test`: a mesh per table, `FORBIDDEN` into another table, a move, TURN
//! only with the hub's minted credentials, and a wrong TURN secret refused.
//! `e2e/run.sh webcams.test.mjs` installs chromium and coturn (apt) when missing.

use std::process::Command;

#[test]
fn webcams_work_between_the_players_of_a_table_in_headless_chromium() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../e2e/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg("webcams.test.mjs")
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
