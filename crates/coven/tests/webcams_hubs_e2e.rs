//! Webcams across two hubs sharing one Redis (docs/spec.md §12) and the package's frame
//! helper for card recognition (clients/js `frames`), in headless Chromium with fake
//! cameras (e2e/webcams-hubs.test.mjs), run as part of `cargo test`: `redis-server`,
//! `coven sim`, `coven worker` and two `coven hub` processes, three browsers each signed
//! in on a hub; video between the players of a table on different hubs, `FORBIDDEN`
//! into another table, a move tearing the old peers down, and frames at the chosen rate.

mod browser;

#[test]
fn webcams_work_across_two_hubs_and_deliver_frames_in_headless_chromium() {
    browser::run("webcams-hubs.test.mjs");
}
