//! The lobby in headless Chromium against a real `coven demo` (e2e/lobby.test.mjs,
//! playwright-core + Debian's chromium), run as part of `cargo test` so that one
//! command runs every test. `e2e/run.sh` installs chromium (apt) when missing and
//! the locked npm packages; `.ci/run` does both before the tests.

mod browser;

#[test]
fn the_lobby_works_in_headless_chromium() {
    browser::run("lobby.test.mjs");
}
