//! Raw PTY bytes to text: avt takes `&str`, programs print any bytes.

/// Streaming UTF-8 decoding: a character split between two reads is kept until its end arrives; invalid bytes
/// become U+FFFD (as asciinema does). Decoding each chunk on its own would break split characters.
#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Appends the text of `input` to `out`.
    pub fn decode_into(&mut self, input: &[u8], out: &mut String) {
        if self.pending.is_empty() {
            Self::decode_slice(input, out, &mut self.pending);
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(input);
            Self::decode_slice(&joined, out, &mut self.pending);
        }
    }

    fn decode_slice(mut bytes: &[u8], out: &mut String, pending: &mut Vec<u8>) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => {
                    out.push_str(s);
                    return;
                }
                Err(e) => {
                    let (valid, rest) = bytes.split_at(e.valid_up_to());
                    // `valid` is exactly what from_utf8 just checked.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(len) => {
                            out.push('\u{FFFD}');
                            bytes = &rest[len..];
                        }
                        None => {
                            // An incomplete character at the end: wait for the rest.
                            pending.extend_from_slice(rest);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Forgets a partial character (at a gap, or at the end): it becomes U+FFFD.
    pub fn flush_into(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            self.pending.clear();
            out.push('\u{FFFD}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> String {
        let mut d = Utf8Decoder::default();
        let mut out = String::new();
        for c in chunks {
            d.decode_into(c, &mut out);
        }
        d.flush_into(&mut out);
        out
    }

    #[test]
    fn split_characters_survive_chunking() {
        let text = "héllo → 世界 🎉";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&[&bytes[..cut], &bytes[cut..]]), text, "cut at {cut}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode(&singles), text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        assert_eq!(decode(&[b"a\xffb\xc3"]), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(decode(&[b"\xe4\xb8", b"x"]), "\u{FFFD}x");
    }
}
