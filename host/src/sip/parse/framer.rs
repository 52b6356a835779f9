//! Cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3) and
//! keep-alive pings (RFC 5626 §4.4.1).

use super::error::FramingError;
use super::head::{self, Field, Mode};

/// One unit read off a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A CRLFCRLF ping: answer it with a single CRLF (RFC 5626 §4.4.1).
    KeepAlive,
    /// One whole message, headers and exactly Content-Length bytes of body,
    /// ready for [`super::parse_frame`].
    Message(Vec<u8>),
}

/// Splits a byte stream into [`Frame`]s.
///
/// Feed it with [`push`](Self::push) as bytes arrive and drain it with
/// [`next`](Iterator::next) until `None` (which means "need more bytes": the
/// iterator resumes after the next push).
///
/// Every [`FramingError`] is **fatal for the connection**: with a message
/// too big or a Content-Length missing or unreadable, the start of the next
/// message cannot be known. After an error the framer drops its buffer,
/// ignores further input and yields nothing more; close the connection.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    max_size: usize,
    /// How far `buf` has been searched for the end of the header section.
    scanned: usize,
    /// Total length of the message at the front of `buf`, once its header
    /// section is complete.
    pending: Option<usize>,
    failed: bool,
}

impl StreamFramer {
    /// A framer refusing any message (headers plus body) over `max_size`
    /// bytes.
    pub fn new(max_size: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_size,
            scanned: 0,
            pending: None,
            failed: false,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes held that are not yet part of a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether a framing error has ended this stream.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    fn fail(&mut self, e: FramingError) -> Option<Result<Frame, FramingError>> {
        self.failed = true;
        self.buf = Vec::new();
        self.pending = None;
        Some(Err(e))
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        self.scanned = 0;
        self.pending = None;
        let rest = self.buf.split_off(n.min(self.buf.len()));
        std::mem::replace(&mut self.buf, rest)
    }

    /// Content-Length of the header section `head` (start line included),
    /// which streams must carry exactly once.
    fn content_length(head: &[u8]) -> Result<usize, FramingError> {
        let fields = head
            .iter()
            .position(|&c| c == b'\n')
            .and_then(|p| head.get(p + 1..))
            .unwrap_or_default();
        let mut found: Option<Option<usize>> = None;
        let mut repeated = false;
        // Lenient mode never fails and the closure always returns Ok.
        let _ = head::for_each_field(fields, Mode::Lenient, |Field { name, value }| {
            if head::name_is(name, "Content-Length") {
                repeated |= found.is_some();
                found = Some(head::parse_content_length(&value));
            }
            Ok(())
        });
        match found {
            _ if repeated => Err(FramingError::BadContentLength),
            None => Err(FramingError::MissingContentLength),
            Some(None) => Err(FramingError::BadContentLength),
            Some(Some(n)) => Ok(n),
        }
    }
}

impl Iterator for StreamFramer {
    type Item = Result<Frame, FramingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.pending.is_none() {
            // CRLFs between messages: a CRLFCRLF is a ping, a lone CRLF is a
            // pong or padding that RFC 3261 §7.5 says to ignore.
            while self.buf.starts_with(b"\r\n") {
                if self.buf.starts_with(b"\r\n\r\n") {
                    self.take(4);
                    return Some(Ok(Frame::KeepAlive));
                }
                if b"\r\n\r\n".starts_with(&self.buf) {
                    // Could still become a ping.
                    return None;
                }
                self.take(2);
            }
            let Some(end) = head::head_end(&self.buf, self.scanned.saturating_sub(3)) else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_size {
                    return self.fail(FramingError::TooLarge { max: self.max_size });
                }
                return None;
            };
            // A header section over the limit is TooLarge whatever its
            // Content-Length says, as it is when it arrives in small reads
            // (the check above): the error must not depend on how the
            // stream was cut (found by fuzzing).
            if end > self.max_size {
                return self.fail(FramingError::TooLarge { max: self.max_size });
            }
            let length = match Self::content_length(self.buf.get(..end).unwrap_or_default()) {
                Ok(n) => n,
                Err(e) => return self.fail(e),
            };
            match end.checked_add(length) {
                Some(total) if total <= self.max_size => self.pending = Some(total),
                _ => {
                    return self.fail(FramingError::TooLarge { max: self.max_size });
                }
            }
        }
        match self.pending {
            Some(total) if self.buf.len() >= total => Some(Ok(Frame::Message(self.take(total)))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
        l: 5\r\n\r\nhello";

    fn drain(f: &mut StreamFramer) -> Vec<Result<Frame, FramingError>> {
        f.by_ref().collect()
    }

    #[test]
    fn frames_byte_by_byte() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(MSG);
        let mut f = StreamFramer::new(1024);
        let mut frames = Vec::new();
        for b in &stream {
            f.push(std::slice::from_ref(b));
            frames.extend(drain(&mut f));
        }
        assert_eq!(
            frames,
            vec![
                Ok(Frame::KeepAlive),
                Ok(Frame::Message(MSG.to_vec())),
                Ok(Frame::Message(MSG.to_vec())),
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn frames_several_at_once_and_keeps_the_rest() {
        let mut f = StreamFramer::new(1024);
        let mut stream = MSG.to_vec();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(&MSG[..10]);
        f.push(&stream);
        assert_eq!(
            drain(&mut f),
            vec![
                Ok(Frame::Message(MSG.to_vec())),
                Ok(Frame::KeepAlive),
                Ok(Frame::Message(MSG.to_vec())),
            ]
        );
        assert_eq!(f.buffered(), 10);
        f.push(&MSG[10..]);
        assert_eq!(drain(&mut f), vec![Ok(Frame::Message(MSG.to_vec()))]);
    }

    #[test]
    fn folded_and_spaced_content_length() {
        let msg = b"MESSAGE sip:a SIP/2.0\r\nContent-Length  :\r\n   3\r\n\r\nabc".to_vec();
        let mut f = StreamFramer::new(1024);
        f.push(&msg);
        assert_eq!(drain(&mut f), vec![Ok(Frame::Message(msg))]);
    }

    #[test]
    fn fatal_errors() {
        let cases: [(&[u8], FramingError); 6] = [
            (
                b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n",
                FramingError::MissingContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: -1\r\n\r\n",
                FramingError::BadContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\nl: 1\r\n\r\n",
                FramingError::BadContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 4000000000\r\n\r\n",
                FramingError::TooLarge { max: 64 },
            ),
            (&[b'x'; 65], FramingError::TooLarge { max: 64 }),
            // A head over the limit is too large before its Content-Length
            // is read, as it is when it arrives a byte at a time (fuzz
            // target sip_stream).
            (
                b"OPTIONS sip:a SIP/2.0\r\nX: 0123456789012345678901234567890123456789\r\n\r\n",
                FramingError::TooLarge { max: 64 },
            ),
        ];
        for (input, want) in cases {
            let mut f = StreamFramer::new(64);
            f.push(input);
            assert_eq!(
                f.next(),
                Some(Err(want)),
                "{}",
                String::from_utf8_lossy(input)
            );
            assert!(f.is_failed());
            f.push(MSG);
            assert_eq!(f.next(), None);
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn waits_for_a_possible_ping() {
        let mut f = StreamFramer::new(64);
        f.push(b"\r\n");
        assert_eq!(f.next(), None);
        f.push(b"\r");
        assert_eq!(f.next(), None);
        f.push(b"\n");
        assert_eq!(f.next(), Some(Ok(Frame::KeepAlive)));
        // A lone CRLF (a pong) before a message is skipped.
        let mut f2 = StreamFramer::new(1024);
        f2.push(b"\r\n");
        f2.push(MSG);
        assert_eq!(drain(&mut f2), vec![Ok(Frame::Message(MSG.to_vec()))]);
    }
}
