//! A line editor for a person on a serial terminal: bounded buffer, echo, backspace,
//! CR / LF / CRLF, and indifference to line noise.

use heapless::String;

/// What a finished (or abandoned) line turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<const N: usize> {
    Line(String<N>),
    /// The line outgrew the buffer; the rest of it, up to the next line end, is ignored.
    /// Holds the first `N` bytes, so a reply can still name the request they began.
    Overlong(String<N>),
    /// The line held bytes that are not UTF-8 text.
    Garbled,
    /// Ctrl-C: the line was thrown away.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [ ...`, until a final byte.
    Csi,
}

/// Collects bytes into lines of at most `N` bytes of UTF-8.
pub struct LineEditor<const N: usize> {
    line: String<N>,
    /// Bytes of a UTF-8 character still being received.
    pending: heapless::Vec<u8, 4>,
    discarding: bool,
    garbled: bool,
    after_cr: bool,
    escape: Escape,
    /// Whether typed characters are echoed back.
    pub echo: bool,
}

impl<const N: usize> Default for LineEditor<N> {
    fn default() -> Self {
        LineEditor {
            line: String::new(),
            pending: heapless::Vec::new(),
            discarding: false,
            garbled: false,
            after_cr: false,
            escape: Escape::None,
            echo: true,
        }
    }
}

/// Expected length of a UTF-8 sequence from its first byte; `None` if it cannot start one.
fn utf8_len(first: u8) -> Option<usize> {
    match first {
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

impl<const N: usize> LineEditor<N> {
    fn reset(&mut self) {
        self.line.clear();
        self.pending.clear();
        self.discarding = false;
        self.garbled = false;
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Option<Input<N>> {
        if self.echo {
            out.extend_from_slice(b"\r\n");
        }
        let result = if self.discarding {
            // already reported when it overflowed
            None
        } else if self.garbled || !self.pending.is_empty() {
            Some(Input::Garbled)
        } else {
            Some(Input::Line(self.line.clone()))
        };
        self.reset();
        result
    }

    fn overflow(&mut self) -> Option<Input<N>> {
        let head = std::mem::replace(&mut self.line, String::new());
        self.reset();
        self.discarding = true;
        Some(Input::Overlong(head))
    }

    /// Feeds one byte; bytes to send back (echo) are appended to `out`.
    pub fn feed(&mut self, byte: u8, out: &mut Vec<u8>) -> Option<Input<N>> {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::Start => {
                self.escape = if byte == b'[' {
                    Escape::Csi
                } else {
                    Escape::None
                };
                return None;
            }
            Escape::Csi => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = Escape::None;
                }
                return None;
            }
            Escape::None => {}
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                self.finish(out)
            }
            b'\n' if after_cr => None,
            b'\n' => self.finish(out),
            0x08 | 0x7f => {
                if self.discarding {
                    return None;
                }
                if !self.pending.is_empty() {
                    self.pending.clear();
                } else if self.line.pop().is_some() && self.echo {
                    out.extend_from_slice(b"\x08 \x08");
                }
                None
            }
            0x03 => {
                if self.echo {
                    out.extend_from_slice(b"^C\r\n");
                }
                self.reset();
                Some(Input::Cancelled)
            }
            0x15 => {
                // Ctrl-U: erase the line
                if self.echo {
                    for _ in self.line.chars() {
                        out.extend_from_slice(b"\x08 \x08");
                    }
                }
                let discarding = self.discarding;
                self.reset();
                self.discarding = discarding;
                None
            }
            0x1b => {
                self.escape = Escape::Start;
                None
            }
            // other control bytes (NUL from a break, bell, ...) are line noise
            0x00..=0x1f => None,
            _ if self.discarding => None,
            0x20..=0x7e => {
                if !self.pending.is_empty() {
                    self.pending.clear();
                    self.garbled = true;
                }
                if self.line.push(byte as char).is_err() {
                    return self.overflow();
                }
                if self.echo {
                    out.push(byte);
                }
                None
            }
            _ => self.feed_utf8(byte, out),
        }
    }

    fn feed_utf8(&mut self, byte: u8, out: &mut Vec<u8>) -> Option<Input<N>> {
        if self.pending.is_empty() {
            if utf8_len(byte).is_none() {
                self.garbled = true;
                return None;
            }
        } else if byte & 0xc0 != 0x80 {
            // a new leader before the last character finished
            self.pending.clear();
            self.garbled = true;
            utf8_len(byte)?;
        }
        let _ = self.pending.push(byte);
        let want = utf8_len(self.pending[0]).unwrap_or(1);
        if self.pending.len() < want {
            return None;
        }
        let done = std::mem::take(&mut self.pending);
        match std::str::from_utf8(&done) {
            Ok(s) => {
                if self.line.push_str(s).is_err() {
                    return self.overflow();
                }
                if self.echo {
                    out.extend_from_slice(s.as_bytes());
                }
            }
            Err(_) => self.garbled = true,
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all<const N: usize>(ed: &mut LineEditor<N>, bytes: &[u8]) -> (Vec<Input<N>>, Vec<u8>) {
        let mut out = Vec::new();
        let got = bytes.iter().filter_map(|&b| ed.feed(b, &mut out)).collect();
        (got, out)
    }

    fn line<const N: usize>(s: &str) -> Input<N> {
        Input::Line(String::try_from(s).unwrap())
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        let mut ed = LineEditor::<32>::default();
        let (got, _) = feed_all(&mut ed, b"a\rb\nc\r\nd\n\re\r");
        assert_eq!(
            got,
            [
                line("a"),
                line("b"),
                line("c"),
                line("d"),
                line(""),
                line("e")
            ]
        );
    }

    #[test]
    fn backspace_edits_and_echoes() {
        let mut ed = LineEditor::<32>::default();
        let (got, echo) = feed_all(&mut ed, b"cax\x08t\x7f\x7fat\r");
        assert_eq!(got, [line("cat")]);
        assert_eq!(echo, b"cax\x08 \x08t\x08 \x08\x08 \x08at\r\n");
        // backspace on an empty line echoes nothing
        let (_, echo) = feed_all(&mut ed, b"\x08\x08");
        assert!(echo.is_empty());
    }

    #[test]
    fn utf8_is_kept_whole_and_erased_whole() {
        let mut ed = LineEditor::<32>::default();
        let (got, _) = feed_all(&mut ed, "où\x08u?\r".as_bytes());
        assert_eq!(got, [line("ou?")]);
        let (got, _) = feed_all(&mut ed, "héllo\n".as_bytes());
        assert_eq!(got, [line("héllo")]);
    }

    #[test]
    fn invalid_utf8_garbles_only_its_line() {
        let mut ed = LineEditor::<32>::default();
        let (got, _) = feed_all(&mut ed, b"ab\xff\xfecd\rok\r\xc3(\rx\xe2\x82\r");
        assert_eq!(
            got,
            [Input::Garbled, line("ok"), Input::Garbled, Input::Garbled]
        );
    }

    #[test]
    fn control_bytes_and_escape_sequences_are_ignored() {
        let mut ed = LineEditor::<32>::default();
        // NUL (a break), bell, arrow keys, a function key
        let (got, echo) = feed_all(&mut ed, b"\x00h\x07i\x1b[A\x1b[15~\x1bO!\r");
        assert_eq!(got, [line("hi!")]);
        assert_eq!(echo, b"hi!\r\n");
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_line_works() {
        let mut ed = LineEditor::<8>::default();
        let mut flood = vec![b'x'; 100_000];
        flood.extend_from_slice(b"\rhello\r");
        let (got, echo) = feed_all(&mut ed, &flood);
        assert_eq!(
            got,
            [
                Input::Overlong(String::try_from("xxxxxxxx").unwrap()),
                line("hello")
            ]
        );
        // echo stops when the buffer is full
        assert_eq!(echo.len(), 8 + 2 + 5 + 2);
        let (got, _) = feed_all(&mut ed, b"12345678");
        assert!(got.is_empty());
        let (got, _) = feed_all(&mut ed, b"9");
        assert_eq!(
            got,
            [Input::Overlong(String::try_from("12345678").unwrap())]
        );
    }

    #[test]
    fn ctrl_c_cancels_and_ctrl_u_erases() {
        let mut ed = LineEditor::<16>::default();
        let (got, _) = feed_all(&mut ed, b"junk\x03how\x15what\r");
        assert_eq!(got, [Input::Cancelled, line("what")]);
    }

    #[test]
    fn random_bytes_never_panic_and_never_exceed_the_buffer() {
        let mut ed = LineEditor::<16>::default();
        let mut rng = crate::scene::Rng::new(42);
        let mut out = Vec::new();
        for _ in 0..200_000 {
            let b = (rng.next_u64() & 0xff) as u8;
            if let Some(Input::Line(l)) = ed.feed(b, &mut out) {
                assert!(l.len() <= 16);
                assert!(!l.chars().any(|c| c.is_control()));
            }
            out.clear();
        }
    }
}
