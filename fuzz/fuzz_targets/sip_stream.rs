//! A TCP/TLS byte stream through the `StreamFramer`, fed in arbitrary
//! chunks, each message it cuts through `parse_frame`.
//!
//! Properties: nothing panics; the frames (and the error that ends the
//! stream, if any) do not depend on how the stream was chunked: whole,
//! byte by byte, or in chunks whose sizes the input's first byte picks;
//! no frame is over the size limit; a failed framer yields nothing more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softswitch::sip::parse::{Frame, FramingError, StreamFramer, parse_frame};

/// Small enough for the fuzzer to reach `TooLarge` with short inputs.
const MAX: usize = 2048;

type Cut = Result<Frame, FramingError>;

fn run(data: &[u8], chunks: impl Iterator<Item = usize>) -> Vec<Cut> {
    let mut framer = StreamFramer::new(MAX);
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = chunks;
    while at < data.len() {
        let n = sizes.next().unwrap_or(data.len()).clamp(1, data.len() - at);
        framer.push(&data[at..at + n]);
        at += n;
        while let Some(cut) = framer.next() {
            let failed = cut.is_err();
            out.push(cut);
            if failed {
                assert!(framer.is_failed());
                framer.push(b"INVITE sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n");
                assert!(framer.next().is_none(), "a failed framer yielded again");
                return out;
            }
        }
        assert!(framer.buffered() <= data.len());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let whole = run(data, std::iter::once(data.len()));
    for cut in &whole {
        if let Ok(Frame::Message(m)) = cut {
            assert!(
                m.len() <= MAX,
                "frame of {} bytes over the {MAX} limit",
                m.len()
            );
            let _ = parse_frame(m, MAX);
        }
    }
    let bytewise = run(data, std::iter::repeat(1));
    assert_eq!(whole, bytewise, "byte-by-byte framing differs");
    let k = usize::from(data[0]);
    let pattern = (0..).map(move |i: usize| 1 + (i * 7 + k) % 97);
    let chunked = run(data, pattern);
    assert_eq!(whole, chunked, "chunked framing differs");
});
