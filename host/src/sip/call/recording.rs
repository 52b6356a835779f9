//! Recording a relayed call: which calls are recorded (the caller's or
//! callee's account flag, or the gateway's), and the task that mixes the
//! relay's copies of the call's RTP and stores the audio in chunks while
//! the call goes on.

use std::time::{Duration, Instant};

use media::codec::Codec;
use media::recording::{CallRecorder, Layout};
use media::srtp::{CryptoAttribute, SrtpContext};
use media::{BridgeFrame, Side, Tapped};
use tokio::sync::{mpsc, oneshot};

use super::unix_ms;
use crate::store::Store;
use crate::store::recordings::NewRecording;

/// Audio stored per chunk: what a crash of the node can lose at most.
const CHUNK: Duration = Duration::from_secs(5);

/// Who asked for a call to be recorded, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RecordingPlan {
    pub layout: Layout,
    /// Accounts that may list and download the recording.
    pub owners: Vec<String>,
}

impl RecordingPlan {
    /// The plan for a call from the parties' and the gateway's settings
    /// (each `Some(layout)` when that one records, and the account it
    /// records for); `None` when nobody records. Stereo wins over mixed:
    /// it holds everything mixed does.
    pub fn from_flags<'a>(
        flags: impl IntoIterator<Item = (Option<&'a str>, &'a str)>,
    ) -> Option<Self> {
        let mut plan: Option<RecordingPlan> = None;
        for (layout, owner) in flags {
            let Some(layout) = layout.and_then(|l| l.parse::<Layout>().ok()) else {
                continue;
            };
            let p = plan.get_or_insert(RecordingPlan {
                layout,
                owners: Vec::new(),
            });
            if layout == Layout::Stereo {
                p.layout = Layout::Stereo;
            }
            if !owner.is_empty() && !p.owners.iter().any(|o| o == owner) {
                p.owners.push(owner.to_owned());
            }
        }
        plan
    }
}

/// The call's facts the recording row keeps.
#[derive(Debug, Clone)]
pub(super) struct RecordedCall {
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub gateway: Option<String>,
}

/// Where a recorder's audio comes from.
pub(super) enum Tap {
    /// The relay's copies of a relayed call's RTP.
    Relay(mpsc::Receiver<Tapped>),
    /// The frames a transcoded call's bridge carries, already decoded.
    Bridge(mpsc::Receiver<BridgeFrame>),
}

enum Heard {
    Rtp(Tapped),
    Pcm(BridgeFrame),
}

impl Tap {
    async fn recv(&mut self) -> Option<Heard> {
        match self {
            Tap::Relay(rx) => rx.recv().await.map(Heard::Rtp),
            Tap::Bridge(rx) => rx.recv().await.map(Heard::Pcm),
        }
    }

    fn try_recv(&mut self) -> Option<Heard> {
        match self {
            Tap::Relay(rx) => rx.try_recv().ok().map(Heard::Rtp),
            Tap::Bridge(rx) => rx.try_recv().ok().map(Heard::Pcm),
        }
    }
}

/// How a recorder reads what its tap gives it.
struct Input {
    /// Payload type → codec, from both sides' SDP.
    codecs: Vec<(u8, Codec)>,
    /// Each side's SDES key (A's, B's), when the call is SRTP.
    keys: Option<[CryptoAttribute; 2]>,
}

/// Frames a recorder may fall behind by before the bridge drops copies (two
/// seconds of both directions).
pub(super) const BRIDGE_TAP_QUEUE: usize = 200;

/// A recording in progress; dropping it (or [`Recorder::stop`]) ends it.
pub(super) struct Recorder {
    stop: Option<oneshot::Sender<()>>,
}

impl Recorder {
    /// Starts recording what `tap` copies; the row is written at once.
    pub fn start(
        store: Store,
        tap: Tap,
        codecs: Vec<(u8, Codec)>,
        keys: Option<[CryptoAttribute; 2]>,
        plan: RecordingPlan,
        call: RecordedCall,
    ) -> Recorder {
        let (stop, stopped) = oneshot::channel();
        let span = tracing::info_span!("recording", call_id = %call.call_id);
        let input = Input { codecs, keys };
        tokio::spawn(tracing::Instrument::instrument(
            run(store, tap, input, plan, call, stopped),
            span,
        ));
        Recorder { stop: Some(stop) }
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    store: Store,
    mut tap: Tap,
    input: Input,
    plan: RecordingPlan,
    call: RecordedCall,
    mut stopped: oneshot::Receiver<()>,
) {
    let layout = plan.layout;
    let id = match store
        .start_recording(&NewRecording {
            call_id: &call.call_id,
            caller: &call.caller,
            callee: &call.callee,
            gateway: call.gateway.as_deref(),
            layout: layout.as_str(),
            started_at: unix_ms(),
            owners: &plan.owners,
        })
        .await
    {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "call recording not started: the call goes on unrecorded");
            return;
        }
    };
    tracing::info!(
        recording = id,
        layout = layout.as_str(),
        "call recording started"
    );
    let began = Instant::now();
    let ms = |at: Instant| at.saturating_duration_since(began).as_millis() as u64;
    let mut recorder = CallRecorder::new(layout, input.codecs);
    // SDES-keyed SRTP: each side's packets are authenticated and decrypted
    // with the key its SDP announced.
    let mut contexts = input
        .keys
        .map(|keys| keys.map(|c| SrtpContext::new(c.suite, &c.key)));
    let mut undecrypted = 0u64;
    let mut push = |recorder: &mut CallRecorder, heard: Heard| match heard {
        Heard::Rtp(mut p) => {
            let n = match &mut contexts {
                Some(contexts) => {
                    let side = usize::from(p.from == Side::B);
                    match contexts[side].unprotect_rtp(&mut p.packet) {
                        Ok(n) => n,
                        Err(_) => {
                            undecrypted += 1;
                            return;
                        }
                    }
                }
                None => p.packet.len(),
            };
            recorder.push(p.from, ms(p.at), &p.packet[..n]);
        }
        Heard::Pcm(f) => recorder.push_pcm(f.from, ms(f.at), &f.samples[..]),
    };
    let mut pending: Vec<i16> = Vec::new();
    let mut seq = 0i64;
    let chunk = CHUNK.as_millis() as usize * 8 * usize::from(layout.channels());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            heard = tap.recv() => match heard {
                Some(heard) => push(&mut recorder, heard),
                None => break,
            },
            _ = &mut stopped => break,
            _ = tick.tick() => {
                recorder.take_ready(ms(Instant::now()), &mut pending);
                if pending.len() >= chunk
                    && !store_chunk(&store, id, &mut seq, &mut pending, layout).await
                {
                    break;
                }
            }
        }
    }
    while let Some(heard) = tap.try_recv() {
        push(&mut recorder, heard);
    }
    recorder.finish(&mut pending);
    if !pending.is_empty() {
        store_chunk(&store, id, &mut seq, &mut pending, layout).await;
    }
    if let Err(e) = store.end_recording(id, unix_ms()).await {
        tracing::warn!(recording = id, error = %e, "recording end not stored");
    }
    let stats = recorder.stats();
    tracing::info!(
        recording = id,
        seconds = recorder.written() / 8000,
        packets = stats.packets,
        unknown = stats.unknown,
        late = stats.late,
        undecrypted,
        "call recording ended"
    );
}

/// Stores `pending` as the next chunk. A failed write is retried with the
/// next chunk (the audio stays pending); false once the database has
/// refused for a minute of audio, when the recording gives up.
async fn store_chunk(
    store: &Store,
    id: i64,
    seq: &mut i64,
    pending: &mut Vec<i16>,
    layout: Layout,
) -> bool {
    let bytes: Vec<u8> = pending.iter().flat_map(|s| s.to_le_bytes()).collect();
    let samples = (pending.len() / usize::from(layout.channels())) as i64;
    match store.append_recording(id, *seq, &bytes, samples).await {
        Ok(()) => {
            *seq += 1;
            pending.clear();
            true
        }
        Err(e) => {
            tracing::warn!(recording = id, error = %e, "recording chunk not stored: kept for the next try");
            samples < 60 * 8000
        }
    }
}

/// What the recorder needs of one side's SDP: its first audio m-line's
/// payload types (with their codecs where the media engine decodes them),
/// whether it is SRTP, and its SDES keys (`a=crypto`), if any.
#[derive(Debug, Default)]
pub(super) struct AudioMedia {
    pub codecs: Vec<(u8, Codec)>,
    pub secure: bool,
    pub cryptos: Vec<CryptoAttribute>,
}

pub(super) fn audio_media(body: &[u8]) -> AudioMedia {
    let mut out = AudioMedia::default();
    let Ok(text) = std::str::from_utf8(body) else {
        return out;
    };
    let mut in_audio = false;
    let mut types: Vec<u8> = Vec::new();
    for line in text.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                break;
            }
            if let Some(rest) = m.strip_prefix("audio ") {
                in_audio = true;
                let mut fields = rest.split_whitespace().skip(1);
                out.secure = fields.next().is_some_and(|proto| proto.contains("SAVP"));
                types = fields.filter_map(|t| t.parse().ok()).collect();
                out.codecs.extend(
                    types
                        .iter()
                        .filter_map(|&pt| Codec::from_static_payload_type(pt).map(|c| (pt, c))),
                );
            }
            continue;
        }
        if !in_audio {
            continue;
        }
        if let Some(crypto) = line.strip_prefix("a=crypto:") {
            if let Ok(c) = CryptoAttribute::parse(crypto.trim()) {
                out.cryptos.push(c);
            }
            continue;
        }
        if let Some(map) = line.strip_prefix("a=rtpmap:") {
            let Some((pt, encoding)) = map.split_once(' ') else {
                continue;
            };
            let Ok(pt) = pt.parse::<u8>() else { continue };
            let mut parts = encoding.split('/');
            let (Some(name), Some(rate)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(rate) = rate.parse() else { continue };
            if let Some(codec) = Codec::from_rtpmap(name, rate)
                && types.contains(&pt)
                && !out.codecs.iter().any(|(p, _)| *p == pt)
            {
                out.codecs.push((pt, codec));
            }
        }
    }
    out
}

/// The key each side encrypts with, from the offer's (`a`) and the
/// answer's (`b`) `a=crypto` lines: the answer's line, and the offer's
/// line with the same tag (RFC 4568 §5.1.2). `None` when either is missing.
pub(super) fn sdes_keys(
    a: &[CryptoAttribute],
    b: &[CryptoAttribute],
) -> Option<[CryptoAttribute; 2]> {
    let answer = b.first()?;
    let offer = a.iter().find(|c| c.tag == answer.tag)?;
    Some([offer.clone(), answer.clone()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_wins_and_each_owner_is_named_once() {
        assert_eq!(
            RecordingPlan::from_flags([(None, "alice"), (None, "bob")]),
            None
        );
        let plan = RecordingPlan::from_flags([
            (Some("mixed"), "alice"),
            (Some("stereo"), "bob"),
            (Some("mixed"), "alice"),
            (Some("bogus"), "eve"),
        ])
        .unwrap();
        assert_eq!(plan.layout, Layout::Stereo);
        assert_eq!(plan.owners, ["alice", "bob"]);
        // A gateway's flag on a call whose local party is not an account.
        let plan = RecordingPlan::from_flags([(Some("mixed"), "")]).unwrap();
        assert!(plan.owners.is_empty());
    }

    #[test]
    fn the_first_audio_lines_payload_types_are_mapped() {
        let sdp = b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 111 8 0 101\r\n\
                    a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
                    a=rtpmap:96 PCMA/8000\r\nm=audio 4002 RTP/AVP 9\r\na=rtpmap:97 PCMU/8000\r\n";
        let media = audio_media(sdp);
        assert_eq!(
            media.codecs,
            [(8, Codec::Pcma), (0, Codec::Pcmu), (111, Codec::OPUS)]
        );
        assert!(!media.secure && media.cryptos.is_empty());
        assert!(
            audio_media(b"v=0\r\nm=video 4000 RTP/AVP 96\r\n")
                .codecs
                .is_empty()
        );
        assert!(audio_media(&[0xff, 0xfe]).codecs.is_empty());
    }

    #[test]
    fn sdes_keys_pair_the_answer_with_the_offer_line_of_its_tag() {
        let key = |k: u8| media::srtp::MasterKey::new([k; 16], [k; 14]).key_params();
        let offer = format!(
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\n\
             a=crypto:2 AES_CM_128_HMAC_SHA1_32 {}\r\n",
            key(1),
            key(2)
        );
        let answer = format!(
            "m=audio 5000 RTP/SAVP 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 {}\r\n",
            key(9)
        );
        let (a, b) = (
            audio_media(offer.as_bytes()),
            audio_media(answer.as_bytes()),
        );
        assert!(a.secure && b.secure);
        let [mine, theirs] = sdes_keys(&a.cryptos, &b.cryptos).unwrap();
        assert_eq!((mine.tag, mine.key.key()[0]), (2, 2));
        assert_eq!((theirs.tag, theirs.key.key()[0]), (2, 9));
        assert!(sdes_keys(&a.cryptos, &[]).is_none());
        // DTLS-SRTP: secure, no keys to read.
        let dtls =
            audio_media(b"m=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 AB\r\n");
        assert!(dtls.secure && dtls.cryptos.is_empty());
    }
}
