//! What the fuzz targets share: [`Input`], a reader of the fuzzer's bytes as a few
//! fixed choice bytes followed by parts separated by `0x00`.
//!
//! The layout is explicit rather than derived (`arbitrary`) so that the seed
//! corpora in `fuzz/corpus/` can be written from the project's real payloads with
//! `fuzz/seeds` (a choice byte, then a JSON body as it is on the wire) and read by a
//! person. Each target documents its own layout. docs/reliability.md, "Fuzzing".

/// The fuzzer's bytes, read front to back; reading past the end gives zeros and
/// empty parts, so every input is a valid one.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&first, rest)) => {
                self.bytes = rest;
                first
            }
            None => 0,
        }
    }

    /// The next byte as a choice among `n` (`n` > 0).
    pub fn choice(&mut self, n: u8) -> u8 {
        self.byte() % n
    }

    /// The next two bytes as a little-endian `i16`.
    pub fn i16(&mut self) -> i16 {
        i16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next two bytes as a little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The bytes up to the next `0x00` (which is consumed), or all that is left.
    pub fn part(&mut self) -> &'a [u8] {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.bytes.len());
        let (part, rest) = self.bytes.split_at(end);
        self.bytes = rest.get(1..).unwrap_or_default();
        part
    }

    /// [`Input::part`] as text (invalid UTF-8 replaced).
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.part()).into_owned()
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
