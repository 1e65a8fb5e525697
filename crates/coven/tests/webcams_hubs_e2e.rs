//! Webcams across two hubs sharing one Redis (docs/spec.md §12) and the package's frame
//! helper for card recognition (clients/js `frames`), in headless Chromium with fake
//! cameras (e2e/webcams-hubs.test.mjs), run as part of `cargo test`: `redis-server`,
//! `coven sim`, `coven worker` and two `coven hub` processes, three browsers each signed
//! in on a hub; video between the players of a table on different hubs, `FORBIDDEN`
//! into another table, a move tearing the old peers down, and frames at the chosen rate.

use std::process::Command;

#[test]
fn webcams_work_across_two_hubs_and_deliver_frames_in_headless_chromium() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../e2e/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg("webcams-hubs.test.mjs")
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
