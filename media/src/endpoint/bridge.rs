//! What connects two bridged endpoints: per direction, a bounded pipe of
//! 20 ms frames of 8 kHz PCM and a short queue of key presses. The core
//! of the endpoint that hears writes one frame into its pipe every tick;
//! the core of the other endpoint takes one out every tick of its own.
//! The two tasks tick independently, and the pipe absorbs the difference:
//!
//! - it holds [`PIPE_FRAMES`] frames at most; a writer finding it full
//!   drops the oldest frame, so a stalled reader costs audio, not delay;
//! - a standing delay is trimmed: when, over [`TRIM_WINDOW`] reads (1 s),
//!   the pipe never held fewer than two frames when read, the excess
//!   beyond one frame is dropped (two tasks whose ticks fall close
//!   together swap order now and then, and each swap would otherwise
//!   leave a frame of delay behind for good);
//! - a reader finding it empty sends its codec's silence (an underrun).
//!
//! Nothing here allocates after the bridge is built: fixed arrays under a
//! mutex held for a copy of 160 samples.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::codec::FRAME_SAMPLES;
use crate::relay::{Side, lock};

/// The most audio waiting in one direction: 160 ms.
pub(crate) const PIPE_FRAMES: usize = 8;
/// Reads over which the pipe's lowest fill is watched before trimming.
pub(crate) const TRIM_WINDOW: u32 = 50;
/// Key presses waiting to be sent; older ones go first.
const KEYS_KEPT: usize = 16;

type Frame = [i16; FRAME_SAMPLES];

/// One direction.
struct Pipe {
    state: Mutex<PipeState>,
}

struct PipeState {
    frames: [Frame; PIPE_FRAMES],
    /// Index of the oldest frame.
    first: usize,
    len: usize,
    keys: VecDeque<char>,
    /// Frames the writer dropped that the reader has not counted yet.
    dropped: u64,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            state: Mutex::new(PipeState {
                frames: [[0; FRAME_SAMPLES]; PIPE_FRAMES],
                first: 0,
                len: 0,
                keys: VecDeque::with_capacity(KEYS_KEPT),
                dropped: 0,
            }),
        }
    }
}

impl PipeState {
    fn drop_oldest(&mut self, frames: usize) {
        let n = frames.min(self.len);
        self.first = (self.first + n) % PIPE_FRAMES;
        self.len -= n;
        self.dropped += n as u64;
    }
}

/// What both sides share.
struct Shared {
    /// `pipes[i]` carries what side `i` hears to the other side.
    pipes: [Pipe; 2],
    /// Either side left (unbridged, rebridged, closed or dropped).
    ended: AtomicBool,
    /// Where copies of the frames go (a transcoded call being recorded).
    tap: Option<mpsc::Sender<BridgeFrame>>,
}

/// A copy of a frame one side of a bridge heard, for a call recorder.
#[derive(Debug, Clone)]
pub struct BridgeFrame {
    /// `A` the endpoint [`Endpoint::bridge_tapped`](super::Endpoint::bridge_tapped)
    /// was called on, `B` the other.
    pub from: Side,
    pub at: Instant,
    /// 20 ms at 8 kHz.
    pub samples: Box<[i16; FRAME_SAMPLES]>,
}

/// One side's end of a bridge, owned by its endpoint's core. Dropping it
/// ends the bridge for the other side too.
pub(crate) struct BridgeLink {
    shared: Arc<Shared>,
    side: usize,
    window_reads: u32,
    window_min: usize,
}

/// What a tick took from the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// A frame was there (else: an underrun).
    pub(crate) frame: bool,
    /// Frames dropped (bound or trimming) since the last take.
    pub(crate) dropped: u64,
}

impl BridgeLink {
    /// Both ends of a new bridge.
    pub(crate) fn pair() -> (BridgeLink, BridgeLink) {
        Self::pair_with(None)
    }

    /// Both ends of a new bridge whose frames are also copied to `tap`.
    pub(crate) fn pair_with(tap: Option<mpsc::Sender<BridgeFrame>>) -> (BridgeLink, BridgeLink) {
        let shared = Arc::new(Shared {
            pipes: [Pipe::new(), Pipe::new()],
            ended: AtomicBool::new(false),
            tap,
        });
        let end = |side| BridgeLink {
            shared: shared.clone(),
            side,
            window_reads: 0,
            window_min: usize::MAX,
        };
        (end(0), end(1))
    }

    /// The other side has left.
    pub(crate) fn ended(&self) -> bool {
        self.shared.ended.load(Ordering::Relaxed)
    }

    fn outgoing(&self) -> &Pipe {
        &self.shared.pipes[self.side]
    }

    fn incoming(&self) -> &Pipe {
        &self.shared.pipes[1 - self.side]
    }

    /// A frame this side heard, for the other to send (short frames are
    /// padded with silence, long ones cut).
    pub(crate) fn hear(&self, frame: &[i16]) {
        let mut s = lock(&self.outgoing().state);
        if s.len == PIPE_FRAMES {
            s.drop_oldest(1);
        }
        let at = (s.first + s.len) % PIPE_FRAMES;
        let take = frame.len().min(FRAME_SAMPLES);
        let slot = &mut s.frames[at];
        slot[..take].copy_from_slice(&frame[..take]);
        slot[take..].fill(0);
        let copy = self.shared.tap.as_ref().map(|_| Box::new(*slot));
        s.len += 1;
        drop(s);
        if let (Some(tap), Some(samples)) = (&self.shared.tap, copy) {
            // A recorder that cannot keep up loses copies, never the call's
            // audio.
            let _ = tap.try_send(BridgeFrame {
                from: if self.side == 0 { Side::A } else { Side::B },
                at: Instant::now(),
                samples,
            });
        }
    }

    /// A key this side heard, for the other to send.
    pub(crate) fn key(&self, digit: char) {
        let mut s = lock(&self.outgoing().state);
        if s.keys.len() == KEYS_KEPT {
            s.keys.pop_front();
        }
        s.keys.push_back(digit);
    }

    /// The next frame the other side heard, into `out`; `out` is left as
    /// it was when there is none.
    pub(crate) fn take(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> Taken {
        let pipe = &self.shared.pipes[1 - self.side];
        let mut s = lock(&pipe.state);
        self.window_min = self.window_min.min(s.len);
        self.window_reads += 1;
        if self.window_reads >= TRIM_WINDOW {
            if self.window_min >= 2 {
                s.drop_oldest(self.window_min - 1);
            }
            self.window_reads = 0;
            self.window_min = usize::MAX;
        }
        let frame = s.len > 0;
        if frame {
            *out = s.frames[s.first];
            s.first = (s.first + 1) % PIPE_FRAMES;
            s.len -= 1;
        }
        let dropped = std::mem::take(&mut s.dropped);
        Taken { frame, dropped }
    }

    /// The next key the other side heard.
    pub(crate) fn take_key(&self) -> Option<char> {
        lock(&self.incoming().state).keys.pop_front()
    }
}

impl Drop for BridgeLink {
    fn drop(&mut self) {
        self.shared.ended.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: i16) -> Frame {
        [v; FRAME_SAMPLES]
    }

    #[test]
    fn a_tapped_bridge_copies_each_frame_with_the_side_that_heard_it() {
        let (tx, mut rx) = mpsc::channel(4);
        let (a, mut b) = BridgeLink::pair_with(Some(tx));
        a.hear(&frame(3));
        b.hear(&[7; 100]);
        let mut out = frame(0);
        b.take(&mut out);
        let first = rx.try_recv().unwrap();
        let second = rx.try_recv().unwrap();
        assert_eq!((first.from, first.samples[0]), (Side::A, 3));
        assert_eq!(
            (second.from, second.samples[99], second.samples[100]),
            (Side::B, 7, 0)
        );
        assert!(rx.try_recv().is_err(), "taking copies nothing");
    }

    #[test]
    fn frames_and_keys_cross_in_order_each_way() {
        let (mut a, mut b) = BridgeLink::pair();
        let mut out = frame(-1);
        assert_eq!(
            b.take(&mut out),
            Taken {
                frame: false,
                dropped: 0
            }
        );
        assert_eq!(out, frame(-1), "untouched on an underrun");
        a.hear(&frame(1));
        a.hear(&frame(2));
        b.hear(&[9; 40]);
        a.key('5');
        a.key('#');
        assert!(b.take(&mut out).frame);
        assert_eq!(out, frame(1));
        assert!(b.take(&mut out).frame);
        assert_eq!(out, frame(2));
        assert!(!b.take(&mut out).frame);
        assert!(a.take(&mut out).frame);
        assert_eq!(&out[..40], &[9; 40]);
        assert!(out[40..].iter().all(|&s| s == 0));
        assert_eq!(
            (b.take_key(), b.take_key(), b.take_key()),
            (Some('5'), Some('#'), None)
        );
        assert_eq!(a.take_key(), None);
        assert!(!a.ended() && !b.ended());
        drop(b);
        assert!(a.ended());
    }

    #[test]
    fn a_full_pipe_drops_its_oldest_frames() {
        let (a, mut b) = BridgeLink::pair();
        for i in 0..20 {
            a.hear(&frame(i));
        }
        for k in 0..40 {
            a.key(if k % 2 == 0 { '1' } else { '2' });
        }
        let mut out = frame(0);
        let taken = b.take(&mut out);
        assert_eq!(
            taken,
            Taken {
                frame: true,
                dropped: 20 - PIPE_FRAMES as u64
            }
        );
        assert_eq!(out, frame(20 - PIPE_FRAMES as i16));
        let mut keys = 0;
        while b.take_key().is_some() {
            keys += 1;
        }
        assert_eq!(keys, KEYS_KEPT);
    }

    #[test]
    fn a_standing_delay_is_trimmed_to_one_frame() {
        let (a, mut b) = BridgeLink::pair();
        let mut out = frame(0);
        // Three frames ahead, then one written per read: a steady 60 ms
        // of delay until the window ends.
        let mut written = 0i16;
        for _ in 0..3 {
            a.hear(&frame(written));
            written += 1;
        }
        let mut dropped = 0;
        for _ in 0..TRIM_WINDOW * 2 {
            a.hear(&frame(written));
            written += 1;
            let t = b.take(&mut out);
            assert!(t.frame);
            dropped += t.dropped;
        }
        assert_eq!(dropped, 3);
        // One frame waits (the newest): the one just heard is what is read.
        assert_eq!(out[0], written - 1);
    }
}
