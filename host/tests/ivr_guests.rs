//! IVR guests through the real host runtime, without SIP: each run drives
//! a media endpoint on loopback, and a UDP socket stands in for the phone.

mod common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use media::codec::Codec;
use media::endpoint::EndpointConfig;
use media::{Relay, RelayConfig};
use softswitch::ivr::prompts::Prompts;
use softswitch::ivr::session::{CallFacts, Control, MailboxGrant, Session};
use softswitch::metrics::Metrics;
use softswitch::plugins::FailureKind;
use softswitch::plugins::ivr::{IvrGuest, RunOutcome};
use softswitch::secrets::Secrets;
use softswitch::store::Store;
use tokio::sync::mpsc;

struct Rig {
    relay: Relay,
    plugins: softswitch::plugins::Plugins,
    store: Store,
    prompts: Arc<Prompts>,
    _dir: tempfile::TempDir,
}

async fn rig(port_min: u16) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let plugins = common::plugins(&dir.path().join("cache"), &metrics);
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, Arc::new(Secrets::generate().unwrap()))
        .await
        .unwrap();
    let relay = Relay::new(RelayConfig {
        bind: "127.0.0.1".parse().unwrap(),
        port_min,
        port_max: port_min + 99,
        kernel_forwarding: false,
    });
    let prompts = Arc::new(Prompts::new(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prompts"),
    ));
    Rig {
        relay,
        plugins,
        store,
        prompts,
        _dir: dir,
    }
}

async fn guest(rig: &Rig, stem: &str, config: &[(&str, &str)]) -> IvrGuest {
    let config: BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    IvrGuest::load(
        &rig.plugins,
        stem,
        &common::guest_wasm(stem),
        config,
        Duration::from_millis(300),
    )
    .await
    .unwrap()
}

/// A session on a fresh endpoint whose peer is `phone`; the control
/// channel answers every `answer` with yes and records hang-ups.
fn session(
    rig: &Rig,
    phone: &UdpSocket,
    facts: CallFacts,
    grants: Vec<MailboxGrant>,
) -> (Session, mpsc::UnboundedReceiver<Control>) {
    let endpoint = rig
        .relay
        .open_endpoint(EndpointConfig {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(101),
            remote: phone.local_addr().unwrap(),
            srtp: None,
            webrtc: None,
        })
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let session = Session::new(
        facts,
        softswitch::ivr::line::Line::Media(endpoint),
        tx,
        rig.prompts.clone(),
        rig.store.clone(),
        grants,
        true,
        Default::default(),
    );
    (session, rx)
}

fn facts(service: &str, args: &[&str]) -> CallFacts {
    CallFacts {
        service: service.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        language: "en".into(),
        call_id: "test".into(),
        ..CallFacts::default()
    }
}

/// Every PCMU payload the phone receives until `quiet` passes.
fn heard(phone: &UdpSocket, quiet: Duration) -> Vec<u8> {
    phone.set_read_timeout(Some(quiet)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = phone.recv(&mut buf) {
        if n > 12 && buf[1] & 0x7f == 0 {
            out.extend_from_slice(&buf[12..n]);
        }
    }
    out
}

fn pcmu(samples: &[i16]) -> Vec<u8> {
    samples
        .iter()
        .map(|&s| media::g711::ulaw_encode(s))
        .collect()
}

fn prompt(name: &str) -> Vec<i16> {
    media::wav::read_file(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../prompts/en")
            .join(format!("{name}.wav")),
    )
    .unwrap()
}

/// Positions of `needle` in `haystack`, in order, not overlapping.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        if &haystack[at..at + needle.len()] == needle {
            found.push(at);
            at += needle.len();
        } else {
            at += 1;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn code_readout_says_the_four_digits_twice_and_hangs_up() {
    let rig = rig(43000).await;
    let guest = guest(&rig, "ivr_code_readout", &[("lead-in-ms", "100")]).await;
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (session, mut control) = session(&rig, &phone, facts("code-readout", &["4071"]), vec![]);
    let listener = std::thread::spawn(move || heard(&phone, Duration::from_millis(800)));
    let (outcome, mut session) = guest.run(session).await;
    session.finish();
    assert!(matches!(outcome, RunOutcome::Completed), "{outcome:?}");
    assert!(matches!(control.recv().await, Some(Control::Hangup(200))));
    let audio = listener.join().unwrap();
    // Each prompt is found whole in what the phone got, in the order said.
    let mut positions = Vec::new();
    for name in [
        "code-intro",
        "digit-4",
        "digit-0",
        "digit-7",
        "digit-1",
        "code-repeat",
        "digit-4",
        "digit-0",
        "digit-7",
        "digit-1",
        "goodbye",
    ] {
        let p = pcmu(&prompt(name));
        // The last partial frame of a prompt may be padded.
        let whole = &p[..p.len() - p.len() % 160];
        let after = positions.last().copied().unwrap_or(0);
        let at = occurrences(&audio[after..], whole)
            .first()
            .map(|a| a + after)
            .unwrap_or_else(|| panic!("{name} not heard after byte {after}"));
        positions.push(at);
    }
    let intros = occurrences(&audio, &pcmu(&prompt("digit-4"))[..1600]).len();
    assert_eq!(intros, 2, "the code is said exactly twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_guest_is_stopped_at_its_step_budget() {
    let rig = rig(43100).await;
    let guest = guest(&rig, "fixture_ivr_loop", &[]).await;
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (session, _control) = session(&rig, &phone, facts("voicemail", &[]), vec![]);
    let started = std::time::Instant::now();
    let (outcome, _) = tokio::time::timeout(Duration::from_secs(20), guest.run(session))
        .await
        .expect("the run must end on its own");
    match outcome {
        RunOutcome::Failed(f) => assert_eq!(f.kind, FailureKind::Timeout, "{f}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_gets_only_the_mailboxes_its_call_grants() {
    let rig = rig(43200).await;
    let guest = guest(&rig, "ivr_voicemail_access", &[]).await;
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The caller is not authenticated: no box at all; the flow plays the
    // error prompt and ends with a typed error.
    let (session, _control) = session(&rig, &phone, facts("voicemail", &["mallory"]), vec![]);
    let (outcome, _) = guest.run(session).await;
    match outcome {
        RunOutcome::GuestError(e) => assert!(e.to_string().contains("forbidden"), "{e}"),
        other => panic!("{other:?}"),
    }
}
