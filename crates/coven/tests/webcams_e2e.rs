//! Webcams at the table (docs/spec.md §12) in headless Chromium with fake cameras,
//! against a real `coven demo` and Debian's coturn (e2e/webcams.test.mjs), run as part
//! of `cargo test`: a mesh per table, `FORBIDDEN` into another table, a move, TURN
//! only with the hub's minted credentials, and a wrong TURN secret refused.
//! `e2e/run.sh webcams.test.mjs` installs chromium and coturn (apt) when missing.

mod browser;

#[test]
fn webcams_work_between_the_players_of_a_table_in_headless_chromium() {
    browser::run("webcams.test.mjs");
}
