//! `coven sim` as a process: Discord-like by default (DAVE required, Discord's channel-creation
//! bucket and resume window), the fast settings by option, and every printed endpoint usable
//! as printed (docs/simulator.md, "`coven sim`").

mod process;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;

use coven_testkit::{KillOnDrop, WAIT};
use process::BIN;

/// Starts `coven sim --port 0 <args>` and reads its printed summary into `label → value`
/// (the first word after the label).
fn start(args: &[&str]) -> (KillOnDrop, HashMap<String, String>) {
    let mut child = Command::new(BIN)
        .arg("sim")
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn coven sim");
    let stdout = child.stdout.take().expect("piped");
    let child = KillOnDrop::new(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = HashMap::new();
    loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("coven sim printed its summary in time");
        if let Some((label, rest)) = line.split_once(':')
            && let Some(value) = rest.split_whitespace().next()
        {
            lines.insert(label.trim().to_owned(), value.to_owned());
        }
        if line.starts_with("limits:") {
            return (child, lines);
        }
    }
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn coven_sim_is_discord_like_and_prints_what_clients_need() {
    let (sim, out) = start(&[]);
    let control = &out["control"];
    let state = get_json(&format!("{control}/state")).await;
    let config = &state["config"];
    assert_eq!(config["voice_dave"], true, "{config}");
    assert_eq!(config["voice_require_dave"], true, "{config}");
    assert_eq!(config["channel_create_bucket"]["limit"], 5);
    assert_eq!(config["channel_create_bucket"]["per_ms"], 5000);
    assert_eq!(config["session_resume_window_ms"], 180_000);
    assert_eq!(config["heartbeat_interval_ms"], 41_250);

    // discord.js's `rest.api` form: it appends `/v10` itself.
    let api_base = &out["api base"];
    assert!(api_base.ends_with("/api"), "{api_base}");
    let gateway = get_json(&format!("{api_base}/v10/gateway")).await;
    assert_eq!(gateway["url"].as_str(), Some(out["gateway url"].as_str()));
    // twilight-http's `proxy(host, true)` form: a bare host.
    let host = &out["api host"];
    let gateway = get_json(&format!("http://{host}/api/v10/gateway")).await;
    assert_eq!(gateway["url"].as_str(), Some(out["gateway url"].as_str()));

    // The voice endpoint listens, and the CA file is the test CA.
    let voice = &out["voice"];
    tokio::net::TcpStream::connect(voice.as_str())
        .await
        .unwrap_or_else(|e| panic!("voice endpoint {voice}: {e}"));
    let ca = std::fs::read_to_string(&out["voice ca"]).expect("the printed CA file exists");
    assert_eq!(ca, coven_sim::voice::test_ca_pem());

    stop(sim, &out);
}

/// Stops `coven sim` gracefully (SIGTERM) and checks it removed the CA file it wrote.
fn stop(sim: KillOnDrop, out: &HashMap<String, String>) {
    let child = sim.into_inner();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    assert!(!std::path::Path::new(&out["voice ca"]).exists());
}

#[tokio::test]
async fn coven_sim_fast_options_select_the_test_settings() {
    let (sim, out) = start(&["--fast"]);
    let config = get_json(&format!("{}/state", out["control"])).await["config"].clone();
    assert_eq!(config["voice_dave"], false, "{config}");
    assert_eq!(config["channel_create_bucket"]["per_ms"], 1000);
    assert_eq!(config["session_resume_window_ms"], 60_000);
    stop(sim, &out);

    let (sim, out) = start(&[
        "--allow-no-dave",
        "--fast-buckets",
        "--resume-window-secs",
        "30",
    ]);
    let config = get_json(&format!("{}/state", out["control"])).await["config"].clone();
    assert_eq!(config["voice_dave"], true, "{config}");
    assert_eq!(config["voice_require_dave"], false, "{config}");
    assert_eq!(config["channel_create_bucket"]["per_ms"], 1000);
    assert_eq!(config["session_resume_window_ms"], 30_000);
    assert_eq!(config["heartbeat_interval_ms"], 41_250);
    stop(sim, &out);

    let (sim, out) = start(&["--no-dave"]);
    let config = get_json(&format!("{}/state", out["control"])).await["config"].clone();
    assert_eq!(config["voice_dave"], false, "{config}");
    stop(sim, &out);
}
