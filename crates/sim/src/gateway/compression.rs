//! Transport compression: one continuous zlib or zstd stream per connection, flushed per message.

use std::io::Write;

use axum::extract::ws::Message;
use flate2::{Compression as Level, write::ZlibEncoder};

/// The `compress` query parameter of the gateway URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Text frames, no compression.
    None,
    /// `zlib-stream`: binary frames, each ending with the sync-flush suffix `00 00 ff ff`.
    Zlib,
    /// `zstd-stream`: binary frames of one zstd frame flushed per message.
    Zstd,
}

impl Compression {
    /// Parses the query parameter; unknown values mean no compression.
    pub fn from_query(v: Option<&str>) -> Self {
        match v {
            Some("zlib-stream") => Self::Zlib,
            Some("zstd-stream") => Self::Zstd,
            _ => Self::None,
        }
    }
}

/// The per-connection compressor.
pub(crate) enum Encoder {
    None,
    Zlib(ZlibEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub fn new(c: Compression) -> std::io::Result<Self> {
        Ok(match c {
            Compression::None => Self::None,
            Compression::Zlib => Self::Zlib(ZlibEncoder::new(Vec::new(), Level::default())),
            Compression::Zstd => Self::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
        })
    }

    /// Encodes one payload as the frame Discord would send.
    pub fn encode(&mut self, json: &str) -> std::io::Result<Message> {
        Ok(match self {
            Self::None => Message::Text(json.to_owned().into()),
            Self::Zlib(e) => {
                e.write_all(json.as_bytes())?;
                e.flush()?;
                Message::Binary(std::mem::take(e.get_mut()).into())
            }
            Self::Zstd(e) => {
                e.write_all(json.as_bytes())?;
                e.flush()?;
                Message::Binary(std::mem::take(e.get_mut()).into())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn zlib_frames_end_with_sync_flush_and_share_one_stream() {
        let mut e = Encoder::new(Compression::Zlib).unwrap();
        let mut all = Vec::new();
        for msg in [r#"{"op":10}"#, r#"{"op":11}"#] {
            let Message::Binary(b) = e.encode(msg).unwrap() else {
                panic!("binary")
            };
            assert!(b.ends_with(&[0, 0, 0xff, 0xff]));
            all.extend_from_slice(&b);
        }
        let mut d = flate2::read::ZlibDecoder::new(&all[..]);
        let mut out = Vec::new();
        let _ = d.read_to_end(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), r#"{"op":10}{"op":11}"#);
    }
}
