//! The simulator's outbound transport compression (docs/simulator.md): one zlib or
//! zstd stream per connection, flushed after each payload, as a bot's gateway
//! client decodes it.
//!
//! The input (`coven_fuzz::Input`) is a compression choice byte and up to 16
//! payloads separated by `0x00`. Checks
//! (docs/reliability.md, "Fuzzing"): every `zlib-stream` frame ends with the
//! sync-flush suffix `00 00 ff ff`, and after each frame a streaming decoder of the
//! whole connection has produced exactly the payloads so far (nothing held back, no
//! frame boundary lost); the same for `zstd-stream` frames; without compression the
//! frames are the payloads themselves.

#![no_main]

use coven_fuzz::Input;
use coven_sim::fuzzing::encode;
use flate2::{Decompress, FlushDecompress, Status};
use libfuzzer_sys::fuzz_target;
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

/// Feeds one frame to a zlib stream decoder, returning what it produced.
fn inflate(decoder: &mut Decompress, mut frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let (before_in, before_out) = (decoder.total_in(), decoder.total_out());
        let status = decoder
            .decompress(frame, &mut buffer, FlushDecompress::Sync)
            .expect("the zlib stream decodes");
        let read = usize::try_from(decoder.total_in() - before_in).unwrap();
        let written = usize::try_from(decoder.total_out() - before_out).unwrap();
        out.extend_from_slice(&buffer[..written]);
        frame = &frame[read..];
        if status == Status::StreamEnd || (frame.is_empty() && written < buffer.len()) {
            return out;
        }
    }
}

/// Feeds one frame to a zstd stream decoder, returning what it produced.
fn unzstd(decoder: &mut Decoder<'static>, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut input = InBuffer::around(frame);
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let mut output = OutBuffer::around(&mut buffer[..]);
        decoder
            .run(&mut input, &mut output)
            .expect("the zstd stream decodes");
        let written = output.pos();
        out.extend_from_slice(&buffer[..written]);
        if input.pos() == frame.len() && written < buffer.len() {
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let compress = ["zlib-stream", "zstd-stream", "none"][usize::from(input.choice(3))];
    let mut texts = Vec::new();
    while !input.is_empty() && texts.len() < 16 {
        texts.push(input.text());
    }
    let payloads: Vec<&str> = texts.iter().map(String::as_str).collect();
    let frames = encode(Some(compress), &payloads).expect("the encoder works in memory");
    assert_eq!(frames.len(), payloads.len());
    let mut zlib = Decompress::new(true);
    let mut zstd = Decoder::new().unwrap();
    for (frame, payload) in frames.iter().zip(&payloads) {
        let decoded = match compress {
            "zlib-stream" => {
                assert!(
                    frame.ends_with(&[0, 0, 0xff, 0xff]),
                    "zlib frame without the sync flush"
                );
                inflate(&mut zlib, frame)
            }
            "zstd-stream" => unzstd(&mut zstd, frame),
            _ => frame.clone(),
        };
        assert_eq!(
            decoded,
            payload.as_bytes(),
            "a frame did not decode to its payload"
        );
    }
});
