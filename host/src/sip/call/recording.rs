//! Recording a relayed call: which calls are recorded (the caller's or
//! callee's account flag, or the gateway's), and the task that mixes the
//! relay's copies of the call's RTP and stores the audio in chunks while
//! the call goes on.

use std::time::{Duration, Instant};

use media::codec::Codec;
use media::recording::{CallRecorder, Layout};
use media::{BridgeFrame, Tapped};
use tokio::sync::{mpsc, oneshot};

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
        plan: RecordingPlan,
        call: RecordedCall,
    ) -> Recorder {
        let (stop, stopped) = oneshot::channel();
        let span = tracing::info_span!("recording", call_id = %call.call_id);
        tokio::spawn(tracing::Instrument::instrument(
            run(store, tap, codecs, plan, call, stopped),
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

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn run(
    store: Store,
    mut tap: Tap,
    codecs: Vec<(u8, Codec)>,
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
    let mut recorder = CallRecorder::new(layout, codecs);
    let push = |recorder: &mut CallRecorder, heard: Heard| match heard {
        Heard::Rtp(p) => recorder.push(p.from, ms(p.at), &p.packet),
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

/// The payload types of the first audio m-line of an SDP body, with their
/// codecs where the media engine decodes them.
pub(super) fn audio_codecs(body: &[u8]) -> Vec<(u8, Codec)> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    let mut in_audio = false;
    let mut types: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                break;
            }
            if let Some(rest) = m.strip_prefix("audio ") {
                in_audio = true;
                types = rest
                    .split_whitespace()
                    .skip(2)
                    .filter_map(|t| t.parse().ok())
                    .collect();
                out.extend(
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
                && !out.iter().any(|(p, _)| *p == pt)
            {
                out.push((pt, codec));
            }
        }
    }
    out
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
        assert_eq!(
            audio_codecs(sdp),
            [(8, Codec::Pcma), (0, Codec::Pcmu), (111, Codec::OPUS)]
        );
        assert!(audio_codecs(b"v=0\r\nm=video 4000 RTP/AVP 96\r\n").is_empty());
        assert!(audio_codecs(&[0xff, 0xfe]).is_empty());
    }
}
