//! Terminal-like output to record: printable lines (base64 alphabet, 80 bytes with the newline) from a fixed
//! pseudo-random sequence, so that the bytes are neither zeros nor compressible, and are valid UTF-8 (asciinema
//! streams text).

use std::io::Write;
use std::path::Path;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub const LINE: u64 = 80;

/// An endless stream of printable lines.
pub struct Printable {
    state: u64,
    offset: u64,
}

impl Printable {
    pub fn new(seed: u64) -> Printable {
        Printable { state: seed | 1, offset: 0 }
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            *b = if self.offset % LINE == LINE - 1 {
                b'\n'
            } else {
                // xorshift64
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                ALPHABET[(self.state >> 58) as usize]
            };
            self.offset += 1;
        }
    }

    pub fn next_chunk(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }
}

/// Writes `size` bytes of the stream to `path` (reused if it already has that size).
pub fn write_file(path: &Path, size: u64) -> anyhow::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut stream = Printable::new(0x5eed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.fill(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_printable_text() {
        let bytes = Printable::new(1).next_chunk(400);
        for (i, b) in bytes.iter().enumerate() {
            if i as u64 % LINE == LINE - 1 {
                assert_eq!(*b, b'\n');
            } else {
                assert!(ALPHABET.contains(b));
            }
        }
        assert_ne!(bytes[..79], bytes[80..159], "lines differ");
    }
}
