//! The endpoint against a phone made of a loopback UDP socket.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::*;
use crate::dtmf::{DtmfSender, InbandDetector};
use crate::g711::{ulaw_decode, ulaw_encode};
use crate::relay::RelayConfig;
use crate::rtp::{Header, Packet};
use crate::tone;

const TE: u8 = 101;

fn relay(port_min: u16, port_max: u16) -> Relay {
    Relay::new(RelayConfig {
        bind: IpAddr::from([127, 0, 0, 1]),
        port_min,
        port_max,
        kernel_forwarding: false,
    })
}

fn config(remote: SocketAddr, telephone_event: Option<u8>) -> EndpointConfig {
    EndpointConfig {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event,
        remote,
        srtp: None,
        webrtc: None,
    }
}

/// The far end: sends RTP from its own socket, as a phone would.
struct Phone {
    socket: UdpSocket,
    endpoint: SocketAddr,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl Phone {
    async fn new() -> Phone {
        Phone {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            endpoint: "127.0.0.1:9".parse().unwrap(),
            ssrc: 0x0FF1CE,
            seq: 100,
            ts: 5000,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    async fn open(relay: &Relay, telephone_event: Option<u8>) -> (Phone, Endpoint) {
        let mut phone = Phone::new().await;
        let endpoint = relay
            .open_endpoint(config(phone.addr(), telephone_event))
            .unwrap();
        phone.endpoint = endpoint.local_addr();
        (phone, endpoint)
    }

    async fn raw(&self, datagram: &[u8]) {
        self.socket.send_to(datagram, self.endpoint).await.unwrap();
    }

    async fn rtp(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let mut out = Vec::new();
        Header {
            marker,
            payload_type: pt,
            sequence: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
        }
        .build(payload, &mut out)
        .unwrap();
        self.seq = self.seq.wrapping_add(1);
        self.raw(&out).await;
    }

    /// Sends 20 ms frames of µ-law, paced like a phone.
    async fn talk(&mut self, payload: &[u8]) {
        let mut pace = tokio::time::interval(FRAME_DURATION);
        for frame in payload.chunks(160) {
            pace.tick().await;
            let ts = self.ts;
            self.rtp(0, false, ts, frame).await;
            self.ts = self.ts.wrapping_add(160);
        }
    }

    /// One key press as RFC 4733 packets (sent back to back: events do
    /// not go through the jitter buffer).
    async fn press(&mut self, digit: char) {
        let mut sender =
            DtmfSender::new(digit, Duration::from_millis(100), 8000, FRAME_DURATION).unwrap();
        let ts = self.ts;
        while let Some(p) = sender.next_packet() {
            self.rtp(TE, p.marker, ts, &p.payload.write().unwrap())
                .await;
        }
        self.ts = self.ts.wrapping_add(800);
    }

    /// Packets received from the endpoint for `ms`.
    async fn listen(&self, ms: u64) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut got = Vec::new();
        let until = Instant::now() + Duration::from_millis(ms);
        let mut buf = [0u8; 2048];
        while let Ok(Ok((n, from))) =
            tokio::time::timeout_at(until, self.socket.recv_from(&mut buf)).await
        {
            got.push((buf[..n].to_vec(), from));
        }
        got
    }
}

fn parsed(datagrams: &[(Vec<u8>, SocketAddr)]) -> Vec<(Header, Vec<u8>)> {
    datagrams
        .iter()
        .map(|(d, _)| {
            let p = Packet::parse(d).unwrap();
            (p.header, p.payload.to_vec())
        })
        .collect()
}

/// Loud enough everywhere that no sample codes as µ-law zero.
fn prompt(n: usize) -> Arc<[i16]> {
    (0..n)
        .map(|i| {
            let v = ((i * 7919) % 20_000) as i16 - 10_000;
            if v.abs() < 500 { 4321 } else { v }
        })
        .collect()
}

#[tokio::test]
async fn played_samples_reach_the_phone_as_g711_in_a_steady_stream() {
    let relay = relay(42000, 42019);
    let (phone, endpoint) = Phone::open(&relay, Some(TE)).await;
    let samples = prompt(1000);
    let started = Instant::now();
    let (outcome, datagrams) = tokio::join!(endpoint.play(samples.clone(), ""), phone.listen(600));
    assert_eq!(outcome, PlayOutcome::Finished);
    let packets = parsed(&datagrams);
    assert!(packets.len() >= 20, "{} packets", packets.len());
    // Paced, not a burst, and about 50 a second (loose: CI machines).
    let spread = started.elapsed();
    assert!(
        packets.len() <= 40 && spread >= Duration::from_millis(500),
        "{} packets in {spread:?}",
        packets.len()
    );
    let first = packets[0].0;
    assert!(first.marker, "the first packet starts a talkspurt");
    for (i, (h, payload)) in packets.iter().enumerate() {
        assert_eq!(h.payload_type, 0);
        assert_eq!(h.ssrc, first.ssrc);
        assert_eq!(h.sequence, first.sequence.wrapping_add(i as u16));
        assert_eq!(h.timestamp, first.timestamp.wrapping_add(160 * i as u32));
        assert_eq!(payload.len(), 160);
        assert!(datagrams[i].1 == endpoint.local_addr());
    }
    // Silence, the prompt byte for byte (its last frame padded with
    // silence), silence again.
    let start = packets
        .iter()
        .position(|(_, p)| p.as_slice() != Codec::Pcmu.silence())
        .unwrap();
    let played: Vec<u8> = packets[start..start + 7]
        .iter()
        .flat_map(|(_, p)| p.clone())
        .collect();
    let expected: Vec<u8> = samples.iter().map(|&s| ulaw_encode(s)).collect();
    assert_eq!(&played[..1000], &expected[..]);
    assert!(played[1000..].iter().all(|&b| b == 0xFF));
    let heard: Vec<i16> = played[..1000].iter().map(|&b| ulaw_decode(b)).collect();
    for (h, s) in heard.iter().zip(samples.iter()) {
        assert!((h - s).abs() <= s.abs() / 16 + 16, "{s} heard as {h}");
    }
    assert!(
        packets[start + 7..]
            .iter()
            .all(|(_, p)| p.as_slice() == Codec::Pcmu.silence())
    );
    assert!(endpoint.stats().packets_sent as usize >= packets.len());
}

#[tokio::test]
async fn keys_from_the_phone_interrupt_a_play_and_others_stay_queued() {
    let relay = relay(42020, 42039);
    let (mut phone, endpoint) = Phone::open(&relay, Some(TE)).await;
    let long = prompt(8000 * 10);
    let started = Instant::now();
    let (outcome, ()) = tokio::join!(endpoint.play(long, "#"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        phone.press('5').await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        phone.press('#').await;
    });
    assert_eq!(outcome, PlayOutcome::Interrupted('#'));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(endpoint.next_digit(Duration::from_secs(1)).await, Some('5'));
    assert_eq!(endpoint.next_digit(Duration::from_millis(50)).await, None);
    // Keys typed ahead of a play interrupt it at once; flushed ones do not.
    phone.press('1').await;
    phone.press('2').await;
    assert_eq!(endpoint.next_digit(Duration::from_secs(1)).await, Some('1'));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        endpoint.play(prompt(8000), "2").await,
        PlayOutcome::Interrupted('2')
    );
    phone.press('3').await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    endpoint.flush_digits();
    assert_eq!(endpoint.play(prompt(400), "3").await, PlayOutcome::Finished);
    assert_eq!(endpoint.stats().digits_received, 5);
}

#[tokio::test]
async fn a_recording_is_what_the_phone_said_and_ends_on_a_key() {
    let relay = relay(42040, 42059);
    let (mut phone, endpoint) = Phone::open(&relay, Some(TE)).await;
    // Codes that decode to non-zero samples, in a pattern.
    let said: Vec<u8> = (0..25 * 160)
        .map(|i| match (i * 31 % 256) as u8 {
            0x7F | 0xFF => 0x80,
            b => b,
        })
        .collect();
    let options = RecordOptions {
        max: Duration::from_secs(10),
        silence_timeout: None,
        finish_keys: "#*".into(),
    };
    let (recording, ()) = tokio::join!(endpoint.record(options), async {
        phone.talk(&said).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        phone.press('#').await;
    });
    assert_eq!(recording.reason, RecordEnd::Key('#'));
    // Whatever silence the jitter buffer put around or between frames,
    // the audio is the phone's, sample for sample.
    let heard: Vec<i16> = recording
        .samples
        .iter()
        .copied()
        .filter(|&s| s != 0)
        .collect();
    let expected: Vec<i16> = said.iter().map(|&b| ulaw_decode(b)).collect();
    assert_eq!(heard, expected);
    // The key ended the recording: it is not queued.
    assert_eq!(endpoint.next_digit(Duration::from_millis(50)).await, None);
    let stats = endpoint.stats();
    assert_eq!(stats.dropped_late + stats.dropped_wrong_ssrc, 0);
    assert!(stats.idle < Duration::from_secs(1));
}

#[tokio::test]
async fn a_recording_ends_at_its_maximum_when_the_phone_is_silent() {
    let relay = relay(42060, 42079);
    let (_phone, endpoint) = Phone::open(&relay, Some(TE)).await;
    let recording = endpoint
        .record(RecordOptions {
            max: Duration::from_millis(300),
            silence_timeout: None,
            finish_keys: "#".into(),
        })
        .await;
    assert_eq!(recording.reason, RecordEnd::MaxDuration);
    assert_eq!(recording.samples.len(), 2400);
    assert!(recording.samples.iter().all(|&s| s == 0));
    assert!(endpoint.stats().idle >= Duration::from_millis(250));
}

#[tokio::test]
async fn a_recording_ends_on_silence_with_the_quiet_tail_trimmed() {
    let relay = relay(42080, 42099);
    let (mut phone, endpoint) = Phone::open(&relay, Some(TE)).await;
    let voice: Vec<u8> = tone::sine(400.0, 8000, Duration::from_millis(400))
        .iter()
        .map(|&s| ulaw_encode(s))
        .collect();
    let options = RecordOptions {
        max: Duration::from_secs(5),
        silence_timeout: Some(Duration::from_millis(300)),
        finish_keys: String::new(),
    };
    let (recording, ()) = tokio::join!(endpoint.record(options), async {
        phone.talk(&voice).await;
        phone.talk(&[0xFF; 160 * 60]).await;
    });
    assert_eq!(recording.reason, RecordEnd::Silence);
    let loud = recording.samples.iter().filter(|s| s.abs() > 1000).count();
    assert!(loud > 1500, "{loud} loud samples");
    let last_loud = recording
        .samples
        .iter()
        .rposition(|s| s.abs() > 1000)
        .unwrap();
    assert!(
        recording.samples.len() - last_loud <= 160,
        "{} samples after the voice",
        recording.samples.len() - last_loud
    );
}

#[tokio::test]
async fn garbage_is_dropped_and_counted_and_stops_nothing() {
    let relay = relay(42100, 42119);
    let (mut phone, endpoint) = Phone::open(&relay, Some(TE)).await;
    phone.raw(&[1, 2, 3]).await;
    phone.raw(&[0x40; 40]).await; // RTP version 1
    phone.raw(&[0xAA; 1]).await;
    let ts = phone.ts;
    phone.rtp(0, false, ts, &[0xFF; 160]).await; // the stream starts
    phone.rtp(18, false, ts, &[0; 10]).await; // G.729: not negotiated
    phone.rtp(TE, true, ts, &[1, 2]).await; // truncated event
    phone.ssrc = 0xBAD;
    phone.rtp(0, false, ts, &[0xFF; 160]).await; // another source, once
    phone.ssrc = 0x0FF1CE;
    phone.raw(&[0x80, 200, 0, 6, 0, 0, 0, 1]).await; // RTCP on the RTP port
    phone
        .socket
        .send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], {
            let mut rtcp = phone.endpoint;
            rtcp.set_port(rtcp.port() + 1);
            rtcp
        })
        .await
        .unwrap();
    phone.press('7').await;
    assert_eq!(endpoint.next_digit(Duration::from_secs(2)).await, Some('7'));
    assert_eq!(endpoint.play(prompt(320), "").await, PlayOutcome::Finished);
    let s = endpoint.stats();
    assert_eq!(s.dropped_malformed, 4, "{s:?}");
    assert_eq!(s.dropped_wrong_payload_type, 1, "{s:?}");
    assert_eq!(s.dropped_wrong_ssrc, 1, "{s:?}");
    assert_eq!(s.rtcp_received, 2, "{s:?}");
    assert_eq!(s.packets_received, 8 + 7, "{s:?}");
    assert!(!endpoint.closed());
}

#[tokio::test]
async fn digits_sent_to_the_phone_follow_rfc_4733() {
    let relay = relay(42120, 42139);
    let (phone, endpoint) = Phone::open(&relay, Some(TE)).await;
    assert_eq!(
        endpoint
            .send_digit('x', Duration::from_millis(100))
            .await
            .unwrap_err()
            .to_string(),
        "'x' is not a DTMF key"
    );
    let (sent, datagrams) = tokio::join!(
        endpoint.send_digit('9', Duration::from_millis(100)),
        phone.listen(500)
    );
    sent.unwrap();
    let packets = parsed(&datagrams);
    let events: Vec<_> = packets
        .iter()
        .filter(|(h, _)| h.payload_type == TE)
        .collect();
    assert_eq!(events.len(), 7);
    let at = events[0].0.timestamp;
    let mut durations = Vec::new();
    for (i, (h, payload)) in events.iter().enumerate() {
        assert_eq!(h.marker, i == 0);
        assert_eq!(h.timestamp, at);
        let e = crate::dtmf::TelephoneEvent::parse(payload).unwrap();
        assert_eq!(e.digit(), Some('9'));
        assert_eq!(e.end, i >= 4);
        durations.push(e.duration);
    }
    assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
    // One sequence space; audio resumes after the event with its clock
    // having run on meanwhile.
    let first = packets[0].0;
    for (i, (h, _)) in packets.iter().enumerate() {
        assert_eq!(h.sequence, first.sequence.wrapping_add(i as u16));
        if h.payload_type == 0 {
            assert_eq!(h.timestamp, first.timestamp.wrapping_add(160 * i as u32));
        }
    }
    let start = packets
        .iter()
        .position(|(h, _)| h.payload_type == TE)
        .unwrap();
    assert_eq!(at, first.timestamp.wrapping_add(160 * start as u32));
}

#[tokio::test]
async fn without_telephone_event_keys_travel_as_tones_both_ways() {
    let relay = relay(42140, 42159);
    let (mut phone, endpoint) = Phone::open(&relay, None).await;
    let (sent, datagrams) = tokio::join!(
        endpoint.send_digit('3', Duration::from_millis(120)),
        phone.listen(500)
    );
    sent.unwrap();
    let mut detector = InbandDetector::new();
    let mut keys = String::new();
    for (h, payload) in parsed(&datagrams) {
        assert_eq!(h.payload_type, 0);
        let pcm: Vec<i16> = payload.iter().map(|&b| ulaw_decode(b)).collect();
        detector.push(&pcm, |k| keys.push(k));
    }
    assert_eq!(keys, "3");
    // The phone's tone, through the jitter buffer, becomes a key.
    let mut sound: Vec<u8> = tone::dtmf('9', Duration::from_millis(100))
        .unwrap()
        .iter()
        .map(|&s| ulaw_encode(s))
        .collect();
    sound.extend([0xFF; 800]);
    let (digit, ()) = tokio::join!(
        endpoint.next_digit(Duration::from_secs(3)),
        phone.talk(&sound)
    );
    assert_eq!(digit, Some('9'));
}

#[tokio::test]
async fn closing_from_a_handle_ends_what_waits_and_gives_the_ports_back() {
    let relay = relay(42160, 42163);
    let (mut phone, endpoint) = Phone::open(&relay, Some(TE)).await;
    let handle = endpoint.handle();
    let ports = relay.stats();
    assert_eq!(ports.ports_in_use.load(Ordering::Relaxed), 2);
    let options = RecordOptions {
        max: Duration::from_secs(30),
        silence_timeout: None,
        finish_keys: "#".into(),
    };
    let voice = vec![0x90; 160 * 10];
    let (played, recording, ()) = tokio::join!(
        endpoint.play(prompt(8000 * 30), "#"),
        endpoint.record(options),
        async {
            phone.talk(&voice).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            handle.close();
        }
    );
    assert_eq!(played, PlayOutcome::Closed);
    assert_eq!(recording.reason, RecordEnd::Closed);
    assert!(recording.samples.iter().filter(|&&s| s != 0).count() >= 8 * 160);
    assert!(endpoint.closed() && handle.closed());
    assert_eq!(ports.ports_in_use.load(Ordering::Relaxed), 0);
    let asked = Instant::now();
    assert_eq!(endpoint.next_digit(Duration::from_secs(5)).await, None);
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert!(matches!(
        endpoint.send_digit('1', Duration::from_millis(50)).await,
        Err(EndpointError::Closed)
    ));
    assert_eq!(endpoint.play(prompt(160), "").await, PlayOutcome::Closed);
    // The range holds two pairs: both open again, a third is refused.
    let a = relay.open_endpoint(config(phone.addr(), None)).unwrap();
    let b = relay.open_endpoint(config(phone.addr(), None)).unwrap();
    assert!(matches!(
        relay.open_endpoint(config(phone.addr(), None)),
        Err(EndpointError::Ports(RelayError::Exhausted))
    ));
    drop((a, b, endpoint));
    assert_eq!(ports.ports_in_use.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn packets_follow_the_phone_to_where_it_sends_from() {
    let relay = relay(42180, 42199);
    let announced = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut phone = Phone::new().await;
    let endpoint = relay
        .open_endpoint(config(announced.local_addr().unwrap(), Some(TE)))
        .unwrap();
    phone.endpoint = endpoint.local_addr();
    // Before the phone is heard from: to its SDP address.
    let mut buf = [0u8; 2048];
    tokio::time::timeout(Duration::from_secs(2), announced.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(phone.listen(60).await.is_empty());
    let ts = phone.ts;
    phone.rtp(0, false, ts, &[0xFF; 160]).await;
    let heard = phone.listen(200).await;
    assert!(!heard.is_empty());
    assert!(heard.iter().all(|(_, from)| *from == endpoint.local_addr()));
}

#[tokio::test]
async fn bad_payload_types_are_refused_when_opening() {
    let relay = relay(42200, 42219);
    let remote = "127.0.0.1:9".parse().unwrap();
    let mut c = config(remote, Some(0));
    assert!(matches!(
        relay.open_endpoint(c.clone()),
        Err(EndpointError::SamePayloadType(0))
    ));
    c.telephone_event = Some(128);
    assert!(matches!(
        relay.open_endpoint(c.clone()),
        Err(EndpointError::PayloadType(128))
    ));
    c.telephone_event = Some(72);
    assert!(matches!(
        relay.open_endpoint(c),
        Err(EndpointError::PayloadType(72))
    ));
    assert_eq!(relay.stats().ports_in_use.load(Ordering::Relaxed), 0);
}

#[test]
fn opening_outside_a_runtime_is_an_error_not_a_panic() {
    let relay = relay(42220, 42239);
    let remote = "127.0.0.1:9".parse().unwrap();
    assert!(matches!(
        relay.open_endpoint(config(remote, None)),
        Err(EndpointError::NoRuntime)
    ));
    assert_eq!(relay.stats().ports_in_use.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_peer_on_hold_gets_nothing_until_it_is_heard() {
    let relay = relay(42240, 42259);
    let mut phone = Phone::new().await;
    let endpoint = relay
        .open_endpoint(config("0.0.0.0:4000".parse().unwrap(), Some(TE)))
        .unwrap();
    phone.endpoint = endpoint.local_addr();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = endpoint.stats();
    assert_eq!((s.packets_sent, s.send_errors), (0, 0));
    let ts = phone.ts;
    phone.rtp(0, false, ts, &[0xFF; 160]).await;
    assert!(!phone.listen(200).await.is_empty());
}

#[tokio::test]
async fn extreme_durations_neither_panic_nor_hang() {
    let relay = relay(42260, 42279);
    let (_phone, endpoint) = Phone::open(&relay, None).await;
    let asked = Instant::now();
    let wait = tokio::time::timeout(
        Duration::from_millis(100),
        endpoint.next_digit(Duration::MAX),
    );
    assert!(wait.await.is_err(), "still waiting for a key");
    let recording = tokio::time::timeout(
        Duration::from_millis(200),
        endpoint.record(RecordOptions {
            max: Duration::ZERO,
            silence_timeout: Some(Duration::MAX),
            finish_keys: String::new(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(recording.reason, RecordEnd::MaxDuration);
    assert!(recording.samples.is_empty());
    // An in-band press of "forever" is held 8 s at most: started, then
    // abandoned by dropping the call.
    let press = tokio::time::timeout(
        Duration::from_millis(100),
        endpoint.send_digit('1', Duration::MAX),
    );
    assert!(press.await.is_err());
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert!(!endpoint.closed());
}

#[test]
fn the_endpoint_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Endpoint>();
    shareable::<EndpointHandle>();
}

/// Amplitude (full scale 1) of `frequency` in `x` (Goertzel).
fn tone_level(x: &[i16], rate: u32, frequency: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * frequency / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (4.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2)).sqrt() / x.len().max(1) as f64
}

#[tokio::test]
async fn an_opus_phone_is_recorded_and_hears_the_prompt_as_opus() {
    const OPUS_PT: u8 = 111;
    let relay = relay(42280, 42299);
    let mut phone = Phone::new().await;
    let endpoint = relay
        .open_endpoint(EndpointConfig {
            codec: Codec::from_rtpmap("opus", 48000)
                .unwrap()
                .with_fmtp("minptime=10;useinbandfec=1"),
            payload_type: OPUS_PT,
            telephone_event: Some(TE),
            remote: phone.addr(),
            srtp: None,
            webrtc: None,
        })
        .unwrap();
    phone.endpoint = endpoint.local_addr();
    // The phone says 800 Hz, encoded by libopus at 48 kHz fullband; the
    // endpoint plays 1200 Hz.
    let mut encoder =
        ::opus::Encoder::new(48000, ::opus::Channels::Mono, ::opus::Application::Voip).unwrap();
    let said = tone::sine(800.0, 10_000, Duration::from_millis(1400));
    let said_48k: Vec<i16> = (0..said.len() * 6)
        .map(|i| {
            let t = i as f64 / 48000.0;
            (10_000.0 * (2.0 * std::f64::consts::PI * 800.0 * t).sin()) as i16
        })
        .collect();
    let prompt: Arc<[i16]> = tone::sine(1200.0, 10_000, Duration::from_millis(1000)).into();
    let options = RecordOptions {
        max: Duration::from_millis(1000),
        silence_timeout: None,
        finish_keys: String::new(),
    };
    let talk = async {
        let mut pace = tokio::time::interval(FRAME_DURATION);
        let mut payload = vec![0u8; 1500];
        let mut datagram = Vec::new();
        for (i, frame) in said_48k.chunks(960).enumerate() {
            pace.tick().await;
            let n = encoder.encode(frame, &mut payload).unwrap();
            Header {
                marker: i == 0,
                payload_type: OPUS_PT,
                sequence: 7 + i as u16,
                timestamp: 90_000 + 960 * i as u32,
                ssrc: phone.ssrc,
            }
            .build(&payload[..n], &mut datagram)
            .unwrap();
            phone.raw(&datagram).await;
        }
    };
    let (recording, outcome, (), datagrams) = tokio::join!(
        endpoint.record(options),
        endpoint.play(prompt, ""),
        talk,
        phone.listen(1400),
    );
    assert_eq!(outcome, PlayOutcome::Finished);
    // The recording is 8 kHz PCM with the phone's tone in it (its second
    // half: past the jitter buffer's start and the codec's).
    assert_eq!(recording.reason, RecordEnd::MaxDuration);
    assert_eq!(recording.samples.len(), 8000);
    let heard = &recording.samples[4000..];
    let level = tone_level(heard, 8000, 800.0);
    assert!(
        (level - 10_000.0 / 32768.0).abs() < 0.05,
        "800 Hz recorded at {level}"
    );
    assert!(tone_level(heard, 8000, 1200.0) < 0.02, "the prompt echoed");
    // What the phone got: Opus on payload type 111, a 48 kHz clock.
    let packets = parsed(&datagrams);
    assert!(packets.len() >= 50, "{} packets", packets.len());
    let first = packets[0].0;
    let mut decoder = ::opus::Decoder::new(48000, ::opus::Channels::Mono).unwrap();
    let mut decoded = Vec::new();
    let mut pcm = vec![0i16; 5760];
    for (i, (h, payload)) in packets.iter().enumerate() {
        assert_eq!(h.payload_type, OPUS_PT);
        assert_eq!(h.ssrc, first.ssrc);
        assert_eq!(h.sequence, first.sequence.wrapping_add(i as u16));
        assert_eq!(h.timestamp, first.timestamp.wrapping_add(960 * i as u32));
        let n = decoder.decode(payload, &mut pcm, false).unwrap();
        assert_eq!(n, 960, "20 ms per packet");
        decoded.extend_from_slice(&pcm[..n]);
    }
    // Silence until the prompt starts (at once, mostly), then 1200 Hz at
    // its level, in 48 kHz audio.
    let start = decoded
        .chunks(960)
        .position(|f| f.iter().any(|s| s.abs() > 2000))
        .expect("the prompt was heard")
        * 960;
    assert!(decoded[..start].iter().all(|s| s.abs() < 100));
    let played = decoded
        .get(start + 4800..start + 4800 + 24000)
        .expect("600 ms of the prompt heard");
    let level = tone_level(played, 48000, 1200.0);
    assert!(
        (level - 10_000.0 / 32768.0).abs() < 0.05,
        "1200 Hz heard at {level}"
    );
    assert!(tone_level(played, 48000, 800.0) < 0.02);
    let stats = endpoint.stats();
    assert_eq!(
        stats.dropped_malformed + stats.dropped_late + stats.dropped_wrong_payload_type,
        0
    );
}

// Bridges: two endpoints, each with its phone.

const OPUS_PT: u8 = 111;

fn opus_config(remote: SocketAddr, telephone_event: Option<u8>) -> EndpointConfig {
    EndpointConfig {
        codec: Codec::from_rtpmap("opus", 48000).unwrap(),
        payload_type: OPUS_PT,
        telephone_event,
        remote,
        srtp: None,
        webrtc: None,
    }
}

fn pcma_config(remote: SocketAddr, telephone_event: Option<u8>) -> EndpointConfig {
    EndpointConfig {
        codec: Codec::Pcma,
        payload_type: 8,
        telephone_event,
        remote,
        srtp: None,
        webrtc: None,
    }
}

/// A phone and its endpoint, opened with `config` for the phone.
async fn open_with(
    relay: &Relay,
    config: impl Fn(SocketAddr) -> EndpointConfig,
) -> (Phone, Endpoint) {
    let mut phone = Phone::new().await;
    let endpoint = relay.open_endpoint(config(phone.addr())).unwrap();
    phone.endpoint = endpoint.local_addr();
    (phone, endpoint)
}

/// 20 ms Opus packets of a sine at 48 kHz, encoded by libopus as a phone
/// would (fullband).
fn opus_sine(frequency: f64, amplitude: f64, ms: usize) -> Vec<Vec<u8>> {
    let mut encoder =
        ::opus::Encoder::new(48000, ::opus::Channels::Mono, ::opus::Application::Voip).unwrap();
    let pcm: Vec<i16> = (0..ms * 48)
        .map(|i| {
            let t = i as f64 / 48000.0;
            (amplitude * (2.0 * std::f64::consts::PI * frequency * t).sin()) as i16
        })
        .collect();
    pcm.chunks_exact(960)
        .map(|frame| encoder.encode_vec(frame, 1500).unwrap())
        .collect()
}

/// 20 ms payloads of 8 kHz PCM through `encode` (G.711).
fn g711_frames(pcm: &[i16], encode: fn(i16) -> u8) -> Vec<Vec<u8>> {
    pcm.chunks(160)
        .map(|f| {
            let mut p: Vec<u8> = f.iter().map(|&s| encode(s)).collect();
            p.resize(160, encode(0));
            p
        })
        .collect()
}

/// Sends `payloads` as a paced stream of payload type `pt` (timestamps
/// `step` apart), from `phone`'s socket.
async fn stream(phone: &Phone, pt: u8, step: u32, payloads: &[Vec<u8>]) {
    let mut pace = tokio::time::interval(FRAME_DURATION);
    let mut datagram = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        pace.tick().await;
        Header {
            marker: i == 0,
            payload_type: pt,
            sequence: 3000u16.wrapping_add(i as u16),
            timestamp: 70_000u32.wrapping_add(step * i as u32),
            ssrc: phone.ssrc,
        }
        .build(payload, &mut datagram)
        .unwrap();
        phone.raw(&datagram).await;
    }
}

/// One key press as RFC 4733 packets on a `clock` Hz stream.
async fn press_at(phone: &mut Phone, digit: char, clock: u32) {
    let mut sender =
        DtmfSender::new(digit, Duration::from_millis(100), clock, FRAME_DURATION).unwrap();
    let ts = phone.ts;
    while let Some(p) = sender.next_packet() {
        phone
            .rtp(TE, p.marker, ts, &p.payload.write().unwrap())
            .await;
    }
    phone.ts = phone.ts.wrapping_add(clock / 10);
}

/// The payloads of payload type `pt`, in order.
fn payloads_of(datagrams: &[(Vec<u8>, SocketAddr)], pt: u8) -> Vec<(Header, Vec<u8>)> {
    parsed(datagrams)
        .into_iter()
        .filter(|(h, _)| h.payload_type == pt)
        .collect()
}

/// The events of a key press a phone got: its key and the durations.
fn event_durations(datagrams: &[(Vec<u8>, SocketAddr)]) -> (Vec<char>, Vec<u16>) {
    let events = payloads_of(datagrams, TE);
    let mut keys = Vec::new();
    let mut durations = Vec::new();
    for (i, (h, payload)) in events.iter().enumerate() {
        assert_eq!(h.marker, i == 0);
        assert_eq!(h.timestamp, events[0].0.timestamp);
        let e = crate::dtmf::TelephoneEvent::parse(payload).unwrap();
        keys.extend(e.digit().filter(|k| !keys.contains(k)));
        durations.push(e.duration);
    }
    (keys, durations)
}

fn decode_opus_48k(packets: &[(Header, Vec<u8>)]) -> Vec<i16> {
    let mut decoder = ::opus::Decoder::new(48000, ::opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 5760];
    let mut out = Vec::new();
    for (_, payload) in packets {
        let n = decoder.decode(payload, &mut pcm, false).unwrap();
        out.extend_from_slice(&pcm[..n]);
    }
    out
}

#[tokio::test]
async fn an_opus_phone_and_a_pcma_phone_hear_each_other_through_a_bridge() {
    let relay = relay(42300, 42319);
    let (opus_phone, opus) = open_with(&relay, |a| opus_config(a, Some(TE))).await;
    let (pcma_phone, pcma) = open_with(&relay, |a| pcma_config(a, Some(TE))).await;
    opus.bridge(&pcma).await.unwrap();
    // The Opus phone says 800 Hz, the PCMA phone 1200 Hz, for 1.4 s; each
    // listens meanwhile, and the Opus side's endpoint records.
    let said_opus = opus_sine(800.0, 10_000.0, 1400);
    let said_pcma = g711_frames(
        &tone::sine(1200.0, 10_000, Duration::from_millis(1400)),
        crate::g711::alaw_encode,
    );
    let options = RecordOptions {
        max: Duration::from_millis(1000),
        silence_timeout: None,
        finish_keys: String::new(),
    };
    let ((), (), to_opus, to_pcma, recording) = tokio::join!(
        stream(&opus_phone, OPUS_PT, 960, &said_opus),
        stream(&pcma_phone, 8, 160, &said_pcma),
        opus_phone.listen(1400),
        pcma_phone.listen(1400),
        opus.record(options),
    );
    let expected = 10_000.0 / 32768.0;
    // The PCMA phone got A-law only, with the Opus phone's tone in it.
    let packets = parsed(&to_pcma);
    assert!(packets.len() >= 50, "{} packets", packets.len());
    assert!(
        packets
            .iter()
            .all(|(h, p)| h.payload_type == 8 && p.len() == 160)
    );
    let heard: Vec<i16> = packets
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&b| crate::g711::alaw_decode(b)))
        .collect();
    let middle = &heard[3200..7200];
    let level = tone_level(middle, 8000, 800.0);
    assert!((level - expected).abs() < 0.05, "800 Hz heard at {level}");
    assert!(
        tone_level(middle, 8000, 1200.0) < 0.02,
        "its own voice echoed"
    );
    // The Opus phone got Opus only, with the PCMA phone's tone in it.
    let packets = parsed(&to_opus);
    assert!(packets.len() >= 50, "{} packets", packets.len());
    assert!(packets.iter().all(|(h, _)| h.payload_type == OPUS_PT));
    let heard = decode_opus_48k(&packets);
    let middle = &heard[6 * 3200..6 * 7200];
    let level = tone_level(middle, 48000, 1200.0);
    assert!((level - expected).abs() < 0.05, "1200 Hz heard at {level}");
    assert!(
        tone_level(middle, 48000, 800.0) < 0.02,
        "its own voice echoed"
    );
    // Recording goes on while bridged: what the Opus side heard.
    assert_eq!(recording.samples.len(), 8000);
    let level = tone_level(&recording.samples[4000..], 8000, 800.0);
    assert!(
        (level - expected).abs() < 0.05,
        "800 Hz recorded at {level}"
    );
    for endpoint in [&opus, &pcma] {
        let s = endpoint.stats();
        assert!(s.bridge_frames_heard >= 50, "{s:?}");
        assert!(s.bridge_frames_sent >= 50, "{s:?}");
        // A frame or two at the start (loose: a loaded machine stalls).
        assert!(s.bridge_dropped + s.bridge_underruns <= 10, "{s:?}");
    }
}

#[tokio::test]
async fn a_play_has_the_floor_over_the_bridge_until_unbridged() {
    let relay = relay(42320, 42339);
    let (mut a_phone, a) = Phone::open(&relay, Some(TE)).await;
    let (b_phone, b) = Phone::open(&relay, Some(TE)).await;
    a.bridge(&b).await.unwrap();
    let voice: Vec<u8> = tone::sine(800.0, 10_000, Duration::from_millis(1400))
        .iter()
        .map(|&s| ulaw_encode(s))
        .collect();
    let warning: Arc<[i16]> = tone::sine(1500.0, 10_000, Duration::from_millis(400)).into();
    let (played, (), datagrams) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            b.play(warning, "").await
        },
        a_phone.talk(&voice),
        b_phone.listen(1400),
    );
    assert_eq!(played, PlayOutcome::Finished);
    // Frame by frame what B's phone heard: the voice, the warning over
    // it (20 frames), the voice again.
    let frames: Vec<char> = parsed(&datagrams)
        .iter()
        .map(|(_, p)| {
            let pcm: Vec<i16> = p.iter().map(|&b| ulaw_decode(b)).collect();
            match (
                tone_level(&pcm, 8000, 800.0),
                tone_level(&pcm, 8000, 1500.0),
            ) {
                (v, w) if v > 0.2 && w < 0.05 => 'v',
                (v, w) if w > 0.2 && v < 0.05 => 'w',
                _ => '.',
            }
        })
        .collect();
    let heard: String = frames.iter().collect();
    let first_w = heard.find('w').expect(&heard);
    assert_eq!(&heard[first_w..first_w + 20], "w".repeat(20), "{heard}");
    assert!(heard[..first_w].matches('v').count() >= 15, "{heard}");
    assert!(heard[first_w + 20..].starts_with('v'), "{heard}");
    // Unbridged: the voice no longer crosses.
    a.unbridge().await.unwrap();
    let (_, datagrams) = tokio::join!(a_phone.talk(&voice[..160 * 20]), async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        b_phone.listen(300).await
    });
    let packets = parsed(&datagrams);
    assert!(packets.len() >= 10);
    assert!(
        packets
            .iter()
            .all(|(_, p)| p.as_slice() == Codec::Pcmu.silence())
    );
}

#[tokio::test]
async fn rfc_4733_keys_cross_a_bridge_on_each_sides_clock() {
    let relay = relay(42340, 42359);
    let (mut opus_phone, opus) = open_with(&relay, |a| opus_config(a, Some(TE))).await;
    let (mut pcma_phone, pcma) = open_with(&relay, |a| pcma_config(a, Some(TE))).await;
    pcma.bridge(&opus).await.unwrap();
    let ((), datagrams) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            press_at(&mut pcma_phone, '5', 8000).await;
        },
        opus_phone.listen(400)
    );
    // At 48 kHz: the 100 ms press in 20 ms steps of 960, three ends.
    let (keys, durations) = event_durations(&datagrams);
    assert_eq!(keys, ['5']);
    assert_eq!(durations, [960, 1920, 2880, 3840, 4800, 4800, 4800]);
    let ((), datagrams) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            press_at(&mut opus_phone, '#', 48000).await;
        },
        pcma_phone.listen(400)
    );
    let (keys, durations) = event_durations(&datagrams);
    assert_eq!(keys, ['#']);
    assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
    // Each endpoint's own script saw its key too.
    assert_eq!(pcma.next_digit(Duration::from_millis(100)).await, Some('5'));
    assert_eq!(opus.next_digit(Duration::from_millis(100)).await, Some('#'));
}

#[tokio::test]
async fn an_in_band_key_crosses_as_an_event_and_an_event_as_a_tone() {
    let relay = relay(42360, 42379);
    let (opus_phone, opus) = open_with(&relay, |a| opus_config(a, Some(TE))).await;
    // No telephone-event on the PCMA side: keys are tones there.
    let (mut pcma_phone, pcma) = open_with(&relay, |a| pcma_config(a, None)).await;
    opus.bridge(&pcma).await.unwrap();
    let mut sound = tone::dtmf('9', Duration::from_millis(100)).unwrap();
    sound.extend(tone::silence(Duration::from_millis(300)));
    let frames = g711_frames(&sound, crate::g711::alaw_encode);
    let ((), datagrams) =
        tokio::join!(stream(&pcma_phone, 8, 160, &frames), opus_phone.listen(600));
    let (keys, durations) = event_durations(&datagrams);
    assert_eq!(keys, ['9']);
    assert_eq!(durations.first(), Some(&960));
    // The Opus phone's event: a tone in the A-law the PCMA phone hears.
    pcma_phone.ssrc = 0xACE;
    let mut opus_phone = opus_phone;
    let ((), datagrams) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            press_at(&mut opus_phone, '3', 48000).await;
        },
        pcma_phone.listen(500)
    );
    let mut detector = InbandDetector::new();
    let mut keys = String::new();
    for (h, payload) in parsed(&datagrams) {
        assert_eq!(h.payload_type, 8);
        let pcm: Vec<i16> = payload
            .iter()
            .map(|&b| crate::g711::alaw_decode(b))
            .collect();
        detector.push(&pcm, |k| keys.push(k));
    }
    assert_eq!(keys, "3");
    assert_eq!(opus.stats().digits_received, 1);
    assert_eq!(pcma.stats().digits_received, 1);
}

#[tokio::test]
async fn closing_one_side_ends_the_bridge_and_the_other_sends_silence() {
    let relay = relay(42380, 42389);
    let (mut a_phone, a) = Phone::open(&relay, Some(TE)).await;
    let (b_phone, b) = Phone::open(&relay, Some(TE)).await;
    assert!(matches!(
        b.bridge(&b).await,
        Err(EndpointError::BridgedToItself)
    ));
    b.bridge(&a).await.unwrap();
    let voice = vec![0x90; 160 * 15];
    let ((), datagrams) = tokio::join!(a_phone.talk(&voice), b_phone.listen(300));
    assert!(parsed(&datagrams).iter().any(|(_, p)| p[0] == 0x90));
    a.handle().close();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let sent = b.stats().packets_sent;
    let datagrams = b_phone.listen(500).await;
    let packets = parsed(&datagrams);
    // Paced silence: no burst, no stop.
    assert!(
        (18..=32).contains(&packets.len()),
        "{} packets",
        packets.len()
    );
    assert!(
        packets
            .iter()
            .all(|(_, p)| p.as_slice() == Codec::Pcmu.silence())
    );
    assert!(b.stats().packets_sent - sent <= 32);
    assert!(!b.closed());
    assert!(matches!(b.bridge(&a).await, Err(EndpointError::Closed)));
    assert_eq!(b.play(prompt(320), "").await, PlayOutcome::Finished);
}

#[tokio::test]
async fn set_codec_switches_an_endpoint_from_pcma_to_pcmu() {
    let relay = relay(42390, 42399);
    let (phone, endpoint) = open_with(&relay, |a| pcma_config(a, Some(TE))).await;
    let before = phone.listen(100).await;
    assert!(matches!(
        endpoint.set_codec(Codec::Pcmu, 0, Some(0)).await,
        Err(EndpointError::SamePayloadType(0))
    ));
    endpoint.set_codec(Codec::Pcmu, 0, Some(TE)).await.unwrap();
    assert_eq!(endpoint.config().codec, Codec::Pcmu);
    let samples = prompt(800);
    let (outcome, after) = tokio::join!(endpoint.play(samples.clone(), ""), phone.listen(300));
    assert_eq!(outcome, PlayOutcome::Finished);
    // One stream: same source, sequence numbers running on, A-law (the
    // packets sent before the change was made) then µ-law only.
    let all: Vec<(Header, Vec<u8>)> = parsed(&before).into_iter().chain(parsed(&after)).collect();
    let switched = all.iter().position(|(h, _)| h.payload_type == 0).unwrap();
    assert!(switched >= 3, "{switched}");
    assert!(all.len() - switched >= 10);
    for (i, (h, p)) in all.iter().enumerate() {
        assert_eq!(h.ssrc, all[0].0.ssrc);
        assert_eq!(h.sequence, all[0].0.sequence.wrapping_add(i as u16));
        if i < switched {
            assert_eq!((h.payload_type, p.as_slice()), (8, Codec::Pcma.silence()));
        } else {
            assert_eq!(h.payload_type, 0);
        }
    }
    let played: Vec<u8> = all[switched..]
        .iter()
        .map(|(_, p)| p)
        .skip_while(|p| p.as_slice() == Codec::Pcmu.silence())
        .take(5)
        .flatten()
        .copied()
        .collect();
    let expected: Vec<u8> = samples.iter().map(|&s| ulaw_encode(s)).collect();
    assert_eq!(played, expected);
}

#[tokio::test]
async fn an_srtp_phone_is_recorded_and_hears_the_prompt_encrypted() {
    use crate::rtp;
    use crate::srtp::{MasterKey, SrtpConfig, SrtpContext, Suite};
    let relay = relay(42460, 42479);
    let suite = Suite::AesCm128HmacSha1_80;
    let (ours, theirs) = (MasterKey::random(), MasterKey::random());
    let mut phone = Phone::new().await;
    let endpoint = relay
        .open_endpoint(EndpointConfig {
            srtp: Some(SrtpConfig {
                suite,
                outgoing: ours.clone(),
                incoming: theirs.clone(),
            }),
            ..config(phone.addr(), Some(TE))
        })
        .unwrap();
    phone.endpoint = endpoint.local_addr();
    let mut says = SrtpContext::new(suite, &theirs);
    let mut hears = SrtpContext::new(suite, &ours);

    // The phone talks in SRTP (with a forged packet and a replay mixed
    // in), then presses # in SRTP.
    let said: Vec<u8> = (0..10 * 160).map(|i| 0x10 + (i % 0x60) as u8).collect();
    let options = RecordOptions {
        max: Duration::from_secs(10),
        silence_timeout: None,
        finish_keys: "#".into(),
    };
    let (recording, ()) = tokio::join!(endpoint.record(options), async {
        let mut send = async |pt: u8, marker: bool, ts: u32, payload: &[u8], twice: bool| {
            let mut packet = Vec::new();
            Header {
                marker,
                payload_type: pt,
                sequence: phone.seq,
                timestamp: ts,
                ssrc: phone.ssrc,
            }
            .build(payload, &mut packet)
            .unwrap();
            phone.seq = phone.seq.wrapping_add(1);
            says.protect_rtp(&mut packet).unwrap();
            if twice {
                // A forgery of the packet to come does not spoil it.
                let mut forged = packet.clone();
                forged[20] ^= 0xFF;
                phone.raw(&forged).await;
            }
            phone.raw(&packet).await;
            if twice {
                phone.raw(&packet).await;
            }
        };
        let mut pace = tokio::time::interval(FRAME_DURATION);
        let mut ts = 5000u32;
        for (i, frame) in said.chunks(160).enumerate() {
            pace.tick().await;
            send(0, false, ts, frame, i == 3).await;
            ts = ts.wrapping_add(160);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut press =
            DtmfSender::new('#', Duration::from_millis(100), 8000, FRAME_DURATION).unwrap();
        while let Some(p) = press.next_packet() {
            send(TE, p.marker, ts, &p.payload.write().unwrap(), false).await;
        }
    });
    assert_eq!(recording.reason, RecordEnd::Key('#'));
    let heard: Vec<i16> = recording
        .samples
        .iter()
        .copied()
        .filter(|&s| s != 0)
        .collect();
    let expected: Vec<i16> = said.iter().map(|&b| ulaw_decode(b)).collect();
    assert_eq!(heard, expected);

    // SRTCP on the RTCP port: authentic, then tampered.
    let rtcp_port = SocketAddr::new(phone.endpoint.ip(), phone.endpoint.port() + 1);
    let mut report = vec![0x80, 0xC9, 0, 1, 0, 0x0F, 0xF1, 0xCE];
    says.protect_rtcp(&mut report).unwrap();
    phone.socket.send_to(&report, rtcp_port).await.unwrap();
    report[9] ^= 1;
    phone.socket.send_to(&report, rtcp_port).await.unwrap();

    // The prompt arrives encrypted; with the key it is the prompt.
    let samples = prompt(480);
    let (outcome, datagrams) = tokio::join!(endpoint.play(samples.clone(), ""), phone.listen(300));
    assert_eq!(outcome, PlayOutcome::Finished);
    let expected: Vec<u8> = samples.iter().map(|&s| ulaw_encode(s)).collect();
    let mut played = Vec::new();
    for (datagram, _) in &datagrams {
        assert_eq!(datagram.len(), rtp::HEADER_LEN + 160 + 10);
        let mut plain = datagram.clone();
        let n = hears.unprotect_rtp(&mut plain).unwrap();
        let payload = &plain[rtp::HEADER_LEN..n];
        if payload != Codec::Pcmu.silence() {
            assert_ne!(&datagram[rtp::HEADER_LEN..n], payload, "not in the clear");
            played.extend_from_slice(payload);
        }
    }
    assert_eq!(played, expected);

    let stats = endpoint.stats();
    assert_eq!(stats.dropped_replayed, 1);
    assert_eq!(stats.dropped_unauthenticated, 2, "{stats:?}");
    assert_eq!(stats.rtcp_received, 2);
}

/// A browser's leg: nothing goes out before ICE and DTLS; then the audio
/// is SRTP with the handshake's keys, both ways. The "browser" is the
/// crate's own transport in the client role (the Chromium tests of the
/// switch play the real one).
#[tokio::test]
async fn a_browser_leg_is_silent_until_ice_and_dtls_then_talks_srtp() {
    use crate::srtp::SrtpContext;
    use crate::stun::{Attribute, Message, TransactionId};
    use crate::webrtc::{
        DtlsIdentity, DtlsRole, WebRtcConfig, WebRtcPeer, WebRtcTransport, parse_fingerprint,
    };
    let relay = relay(42480, 42499);
    let fingerprint =
        |id: &DtlsIdentity| parse_fingerprint(&format!("sha-256 {}", id.fingerprint())).unwrap();
    let (switch_id, browser_id) = (
        Arc::new(DtlsIdentity::generate().unwrap()),
        Arc::new(DtlsIdentity::generate().unwrap()),
    );
    let mut phone = Phone::new().await;
    let browser_config = WebRtcConfig::new(browser_id.clone(), None);
    let switch_config = WebRtcConfig::new(
        switch_id.clone(),
        Some(WebRtcPeer {
            ice_ufrag: browser_config.local.ufrag.clone(),
            fingerprint: fingerprint(&browser_id),
            role: DtlsRole::Server,
        }),
    );
    let endpoint = relay
        .open_endpoint(EndpointConfig {
            webrtc: Some(switch_config.clone()),
            ..config(phone.addr(), None)
        })
        .unwrap();
    phone.endpoint = endpoint.local_addr();
    // Nothing in the clear while ICE has not run.
    assert!(phone.listen(200).await.is_empty());

    let mut browser = WebRtcTransport::new(&browser_config);
    browser.set_peer(
        WebRtcPeer {
            ice_ufrag: switch_config.local.ufrag.clone(),
            fingerprint: fingerprint(&switch_id),
            role: DtlsRole::Client,
        },
        std::time::Instant::now(),
    );
    // The browser's nominating check, answered with its address.
    let check = Message::binding_request(TransactionId(rand::random()))
        .with(Attribute::Username(format!(
            "{}:{}",
            switch_config.local.ufrag, browser_config.local.ufrag
        )))
        .with(Attribute::IceControlling(1))
        .with(Attribute::UseCandidate)
        .encode(Some(switch_config.local.pwd.as_bytes()), true)
        .unwrap();
    phone.raw(&check).await;
    let (answer, _) = phone
        .listen(300)
        .await
        .into_iter()
        .next()
        .expect("no ICE answer");
    let answer = Message::decode(&answer).unwrap();
    assert_eq!(answer.xor_mapped_address(), Some(phone.addr()));
    // The browser learns the switch's address as the pair ICE chose.
    let reverse = Message::binding_request(TransactionId(rand::random()))
        .with(Attribute::Username(format!(
            "{}:x",
            browser_config.local.ufrag
        )))
        .encode(Some(browser_config.local.pwd.as_bytes()), true)
        .unwrap();
    browser.receive(&reverse, phone.endpoint, std::time::Instant::now());
    while browser.poll_transmit().is_some() {}

    // The handshake, over the sockets.
    let deadline = Instant::now() + Duration::from_secs(5);
    let keys = loop {
        assert!(Instant::now() < deadline, "no DTLS handshake");
        browser.handle_timeout(std::time::Instant::now());
        while let Some((datagram, to)) = browser.poll_transmit() {
            assert_eq!(to, phone.endpoint);
            phone.raw(&datagram).await;
        }
        for (datagram, from) in phone.listen(30).await {
            if datagram.first().is_some_and(|b| (20..=63).contains(b)) {
                browser.receive(&datagram, from, std::time::Instant::now());
            }
        }
        if let Some(keys) = browser.take_keys() {
            break keys;
        }
    };
    let mut says = SrtpContext::try_new(keys.suite, &keys.outgoing).unwrap();
    let mut hears = SrtpContext::try_new(keys.suite, &keys.incoming).unwrap();

    // The browser talks SRTP: the endpoint records the audio.
    let said: Vec<u8> = (0..10 * 160).map(|i| 0x10 + (i % 0x60) as u8).collect();
    let options = RecordOptions {
        max: Duration::from_millis(400),
        silence_timeout: None,
        finish_keys: String::new(),
    };
    let (recording, ()) = tokio::join!(endpoint.record(options), async {
        let mut pace = tokio::time::interval(FRAME_DURATION);
        for frame in said.chunks(160) {
            pace.tick().await;
            let mut packet = Vec::new();
            Header {
                marker: false,
                payload_type: 0,
                sequence: phone.seq,
                timestamp: phone.ts,
                ssrc: phone.ssrc,
            }
            .build(frame, &mut packet)
            .unwrap();
            phone.seq = phone.seq.wrapping_add(1);
            phone.ts = phone.ts.wrapping_add(160);
            says.protect_rtp(&mut packet).unwrap();
            phone.raw(&packet).await;
        }
    });
    let expected: Vec<i16> = said.iter().map(|&b| ulaw_decode(b)).collect();
    let heard: Vec<i16> = recording
        .samples
        .iter()
        .copied()
        .filter(|&s| s != 0)
        .collect();
    assert_eq!(heard, expected);

    // And hears the prompt, SRTP under the switch's key.
    let samples = prompt(480);
    let (outcome, datagrams) = tokio::join!(endpoint.play(samples.clone(), ""), phone.listen(300));
    assert_eq!(outcome, PlayOutcome::Finished);
    let mut played = Vec::new();
    for (datagram, _) in &datagrams {
        if datagram.first().is_some_and(|b| (128..=191).contains(b))
            && !crate::rtp::is_rtcp(datagram)
        {
            let mut plain = datagram.clone();
            let n = hears.unprotect_rtp(&mut plain).unwrap();
            let payload = &plain[crate::rtp::HEADER_LEN..n];
            if payload != Codec::Pcmu.silence() {
                played.extend_from_slice(payload);
            }
        }
    }
    let expected: Vec<u8> = samples.iter().map(|&s| ulaw_encode(s)).collect();
    assert_eq!(played, expected);
    assert_eq!(endpoint.stats().dropped_unauthenticated, 0);

    // RTCP: an SRTCP sender report whose block reports the browser's
    // stream (its 10 packets, none lost), then SDES.
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        assert!(Instant::now() < deadline, "no RTCP report within 10 s");
        let found = phone
            .listen(200)
            .await
            .into_iter()
            .find(|(d, _)| crate::rtp::is_rtcp(d));
        if let Some((mut report, _)) = found {
            let n = hears
                .unprotect_rtcp(&mut report)
                .expect("not SRTCP under the switch's key");
            report.truncate(n);
            break report;
        }
    };
    assert_eq!((report[0], report[1]), (0x81, 200), "{report:?}");
    let block = &report[28..52];
    assert_eq!(&block[0..4], &phone.ssrc.to_be_bytes());
    assert_eq!(&block[4..8], &[0, 0, 0, 0], "nothing lost");
    let highest = u32::from_be_bytes(block[8..12].try_into().unwrap());
    assert_eq!(highest as u16, phone.seq.wrapping_sub(1));
    assert_eq!(report[53], 202, "SDES follows");
    assert!(endpoint.stats().rtcp_sent >= 1);
}
