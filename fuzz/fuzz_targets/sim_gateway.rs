//! The simulator's gateway reading the bot's frames (docs/simulator.md): text or
//! binary frames through the same handling as its WebSocket loop (size cap, rate
//! limit, JSON, opcode dispatch, IDENTIFY / RESUME / voice state / member requests).
//!
//! The input is a sequence of frames separated by `0x00` (`coven_fuzz::Input`
//! parts); a frame is sent as text, or as binary when it starts with `0x01` (the
//! rest) or is not UTF-8. The seed corpus starts from the frames twilight sends:
//! IDENTIFY with the simulator's bot token, heartbeats, voice state updates, member
//! requests. Checks (docs/reliability.md, "Fuzzing"):
//! - a frame over the payload cap (4096 bytes) closes with 4002, unparseable JSON or a
//!   missing/non-integer `op` with 4002, an unknown opcode with 4001, a command
//!   before IDENTIFY with 4003, a second IDENTIFY with 4005, and a binary frame that
//!   is not UTF-8 with 4002; every close code is one the gateway documents;
//! - a close ends the connection (no frame is read after it), and more than 120
//!   commands in the window closes with 4008;
//! - everything the gateway queues is a JSON object with an integer `op`, and
//!   dispatches (op 0) carry a name and strictly increasing `s`.

#![no_main]

use coven_fuzz::Input;
use coven_sim::SimConfig;
use coven_sim::fuzzing::Gateway;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Every close code the gateway sends for a frame (protocol.rs).
const CLOSES: [u16; 9] = [4001, 4002, 4003, 4004, 4005, 4007, 4008, 4010, 4013];
const COMMAND_LIMIT: usize = 120;

/// One frame from the bot.
#[derive(Debug)]
enum Frame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

fn expected_close(text: &str, has_session: bool, commands: usize) -> Option<u16> {
    if text.len() > 4096 {
        return Some(4002);
    }
    if commands > COMMAND_LIMIT {
        return Some(4008);
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Some(4002);
    };
    let Some(op) = value.get("op").and_then(Value::as_u64) else {
        return Some(4002);
    };
    match op {
        1 => None,
        2 | 6 if has_session => Some(4005),
        3 | 4 | 8 | 31 if !has_session => Some(4003),
        2 | 3 | 4 | 6 | 8 | 31 => Some(0), // decided by the payload: not predicted
        _ => Some(4001),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut frames = Vec::new();
    while !input.is_empty() {
        let part = input.part();
        frames.push(match (part.split_first(), std::str::from_utf8(part)) {
            (Some((1, rest)), _) => Frame::Binary(rest),
            (_, Ok(text)) => Frame::Text(text),
            (_, Err(_)) => Frame::Binary(part),
        });
    }
    let mut gateway = Gateway::new(SimConfig::default());
    let mut last_seq = 0;
    for (index, frame) in frames.iter().enumerate() {
        let commands = index + 1;
        let has_session = gateway.has_session();
        let (close, text) = match frame {
            Frame::Text(text) => (gateway.text(text), Some(*text)),
            Frame::Binary(bytes) => (gateway.binary(bytes), std::str::from_utf8(bytes).ok()),
        };
        let predicted = match text {
            Some(text) => expected_close(text, has_session, commands),
            None => Some(4002),
        };
        match predicted {
            Some(0) => {}
            predicted => assert_eq!(close, predicted, "frame {index}: {frame:?}"),
        }
        for sent in gateway.sent() {
            let value: Value = serde_json::from_str(&sent).expect("the gateway sends JSON");
            let op = value["op"].as_u64().expect("every frame has an integer op");
            if op == 0 {
                assert!(value["t"].is_string(), "a dispatch without a name: {sent}");
                let seq = value["s"].as_u64().expect("a dispatch without a seq");
                assert!(seq > last_seq, "dispatch seq went from {last_seq} to {seq}");
                last_seq = seq;
            }
        }
        if let Some(code) = close {
            assert!(CLOSES.contains(&code), "undocumented close {code}");
            return; // The loop stops reading after a close.
        }
    }
});
