//! Media through the relay, seen from outside: SIPp places the calls, the
//! test's own UDP sockets stand in for the phones' and the carrier's RTP.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::sipp::*;
use tokio::net::UdpSocket;

/// The `c=` address and `m=audio` port of the first received SIP message
/// starting with `start_line` in a SIPp message trace.
fn received_media(trace: &str, start_line: &str) -> Option<(String, u16)> {
    trace
        .split("message received")
        .skip(1)
        .map(|chunk| {
            chunk
                .split_once('\n')
                .map_or("", |(_, rest)| rest)
                .trim_start()
        })
        .find(|msg| msg.starts_with(start_line))
        .and_then(|msg| {
            let addr = msg
                .lines()
                .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?;
            let port = msg
                .lines()
                .find_map(|l| l.trim().strip_prefix("m=audio "))?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((addr.trim().to_owned(), port))
        })
}

/// Waits until a SIPp trace file shows the SDP of a message.
async fn wait_media(path: &std::path::Path, start_line: &str) -> ((String, u16), String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(found) = received_media(&text, start_line) {
            return (found, text);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never showed a {start_line:?} with SDP:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rtp(seq: u16, payload_byte: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend((0..160).map(|i| payload_byte.wrapping_add(i as u8)));
    p
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf))
        .await
        .expect("a relayed packet in time")
        .unwrap();
    (buf[..n].to_vec(), from)
}

fn spawn_sipp(args: &[&str], err: std::path::PathBuf) -> Device {
    let child = std::process::Command::new("sipp")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .expect("sipp (Debian package sip-tester) must be installed: scripts/setup.sh installs it");
    Device(child)
}

/// OFFNET: the phone's RTP reaches the carrier byte for byte, the carrier
/// sees only the switch's address, in SDP and on the wire; and back.
#[tokio::test(flavor = "multi_thread")]
async fn an_offnet_call_is_anchored_on_the_relay() {
    offnet_call(false).await;
}

/// The same call with `media.kernel_forwarding` (needs root and nft, as CI
/// has): once each direction has settled, the kernel forwards it — still
/// byte for byte and only from the relay's ports — and the relay's sockets
/// see none of it; when the call ends the kernel lets go.
#[tokio::test(flavor = "multi_thread")]
async fn an_offnet_calls_settled_media_is_forwarded_by_the_kernel() {
    offnet_call(true).await;
}

async fn offnet_call(kernel: bool) {
    let mut switch = if kernel {
        Switch::start("[media]\nkernel_forwarding = true\n").await
    } else {
        Switch::start("").await
    };
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(&[], "carrier", "4860", carrier_port, "udp");
    // The phone's and the carrier's media on their own loopback addresses,
    // so that where a packet or an SDP address comes from is unambiguous.
    let phone = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let carrier_media = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let phone_addr = phone.local_addr().unwrap();
    let carrier_addr = carrier_media.local_addr().unwrap();

    let carrier_port_text = carrier_addr.port().to_string();
    let carrier_scenario = switch.variant_with(
        "call_gw_uas.xml",
        &[
            ("EXPECT_RURI", "4860012345"),
            ("EXPECT_FROM", "sip:48600111222@"),
            ("c=IN IP[media_ip_type] [media_ip]", "c=IN IP4 127.0.0.4"),
            ("[media_port]", &carrier_port_text),
        ],
    );
    let carrier_trace = switch.site.path("carrier.log");
    let mut carrier = carrier(&switch, &carrier_scenario, carrier_port, "u1");

    let caller_scenario = switch.variant(
        "call_uac.xml",
        "c=IN IP[media_ip_type] [media_ip]",
        "c=IN IP4 127.0.0.3",
    );
    let text = std::fs::read_to_string(&caller_scenario)
        .unwrap()
        .replace("[media_port]", &phone_addr.port().to_string());
    std::fs::write(&caller_scenario, text).unwrap();
    let users = switch.users("dora.csv", "dora", "dora-pw");
    let caller_trace = switch.site.path("caller.log");
    let target = switch.target();
    let mut caller = spawn_sipp(
        &[
            &target,
            "-sf",
            caller_scenario.to_str().unwrap(),
            "-inf",
            users.to_str().unwrap(),
            "-s",
            "int4860012345",
            "-d",
            if kernel { "10000" } else { "4000" },
            "-key",
            "domain",
            "localhost",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "30",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            caller_trace.to_str().unwrap(),
        ],
        switch.site.path("caller.err"),
    );

    let ((carrier_saw_ip, relay_b), invite) = wait_media(&carrier_trace, "INVITE ").await;
    assert_eq!(carrier_saw_ip, "127.0.0.1", "carrier's SDP:\n{invite}");
    assert!(
        !invite.contains("127.0.0.3"),
        "the phone's address leaked to the carrier:\n{invite}"
    );
    let ((phone_saw_ip, relay_a), ok) = wait_media(&caller_trace, "SIP/2.0 200").await;
    assert_eq!(phone_saw_ip, "127.0.0.1", "phone's SDP:\n{ok}");
    assert!(
        !ok.contains("127.0.0.4"),
        "the carrier's address leaked:\n{ok}"
    );
    assert_ne!(relay_a, phone_addr.port());
    assert_ne!(relay_b, carrier_addr.port());

    let relay_a: SocketAddr = format!("127.0.0.1:{relay_a}").parse().unwrap();
    let relay_b: SocketAddr = format!("127.0.0.1:{relay_b}").parse().unwrap();
    let both_ways = |from: u16, to: u16| {
        let (phone, carrier_media) = (&phone, &carrier_media);
        async move {
            for seq in from..to {
                let packet = rtp(seq, 7);
                phone.send_to(&packet, relay_a).await.unwrap();
                let (got, came_from) = recv(carrier_media).await;
                assert_eq!(got, packet, "packet {seq} changed on the way");
                assert_eq!(
                    came_from, relay_b,
                    "the carrier got media from elsewhere than the relay"
                );
            }
            for seq in from..to {
                let packet = rtp(seq, 99);
                carrier_media.send_to(&packet, relay_b).await.unwrap();
                let (got, came_from) = recv(phone).await;
                assert_eq!((got, came_from), (packet, relay_a));
            }
        }
    };
    both_ways(0, 20).await;
    if kernel {
        // A second of 20 ms packets each way settles both directions.
        both_ways(20, 60).await;
        switch
            .wait_metric("softswitch_media_kernel_entries", |v| v == 2)
            .await;
        // The housekeeping copies the relay's count once a second.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let relayed = switch
            .metric("softswitch_media_packets_relayed_total")
            .await;
        both_ways(60, 100).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            switch
                .metric("softswitch_media_packets_relayed_total")
                .await,
            relayed,
            "the relay's sockets carried packets the kernel should have"
        );
    }
    // Ports are in use during the call and all back after it.
    switch
        .wait_metric("softswitch_media_ports_in_use", |v| v >= 4)
        .await;
    let caller_ok = tokio::task::spawn_blocking(move || caller.0.wait().unwrap())
        .await
        .unwrap();
    assert!(
        caller_ok.success(),
        "caller failed:\n{}\n{}",
        std::fs::read_to_string(&caller_trace).unwrap_or_default(),
        switch.log()
    );
    let carrier_ok = tokio::task::spawn_blocking(move || carrier.0.wait().unwrap())
        .await
        .unwrap();
    assert!(carrier_ok.success(), "carrier failed");
    switch
        .wait_metric("softswitch_media_ports_in_use", |v| v == 0)
        .await;
    switch
        .wait_metric("softswitch_media_streams", |v| v == 0)
        .await;
    switch
        .wait_metric("softswitch_media_kernel_entries", |v| v == 0)
        .await;
    if kernel {
        // Stopped cleanly, the switch leaves no nftables table behind.
        switch.terminate();
        let listed = std::process::Command::new("nft")
            .args(["list", "table", "ip", "softswitch_relay_127_0_0_1_20000"])
            .output()
            .unwrap();
        assert!(
            !listed.status.success(),
            "the relay's table outlived the switch"
        );
    }
}

/// Two softphones, each behind its own NAT with no route to the other,
/// call each other over TLS with ICE and SRTP: the only path for their
/// media is the relay candidate the switch added, and media flows both ways.
#[tokio::test(flavor = "multi_thread")]
async fn two_softphones_behind_separate_nats_talk_through_the_relay() {
    let lab = support::netns::NatLab::build();
    let switch_ip = support::netns::SWITCH_IP;
    let switch =
        Switch::start_tls_on(switch_ip, "", &format!("[media]\nbind = \"{switch_ip}\"\n")).await;
    let (alice_ns, bob_ns) = (lab.ns("alice"), lab.ns("bob"));
    let phone = |ns: &str, user: &str, params: &'static str, commands: &'static [&'static str]| {
        let private = support::netns::NatLab::private_ip(user);
        Baresip::start_opts(
            &switch,
            user,
            &format!("{user}-pw"),
            &BaresipOptions {
                netns: Some(ns),
                listen: private,
                proxy: switch_ip,
                modules: &["ice", "srtp", "stun"],
                account_params: params,
                commands,
                verbose: true,
                codecs: &["g711"],
                extra_config: "",
            },
        )
    };
    let _bob = phone(
        &bob_ns,
        "bob",
        ";medianat=ice;mediaenc=srtp-mand;answermode=auto",
        &[],
    );
    switch.wait_registered(1).await;
    let before = switch
        .metric("softswitch_media_packets_relayed_total")
        .await;
    let _alice = phone(
        &alice_ns,
        "alice",
        ";medianat=ice;mediaenc=srtp-mand",
        &["/dial bob"],
    );
    switch
        .wait_metric("softswitch_calls_answered_total", |v| v >= 1)
        .await;
    let log_of = |u: &str| {
        std::fs::read_to_string(switch.site.path(&format!("baresip-{u}/stdout.log")))
            .unwrap_or_default()
    };
    let logs = || {
        format!(
            "--- alice ---\n{}\n--- bob ---\n{}",
            log_of("alice"),
            log_of("bob")
        )
    };
    // Each phone: the direct pair failed (the NATs do not route between the
    // private networks), the pair with the switch's relay candidate was
    // nominated, SRTP is on, and RTP arrives from the relay.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    for (user, relay_side) in [("alice", "A"), ("bob", "B")] {
        let wanted = [
            "host <--->  host  FSM:  InProgress ===> Failed",
            "Succeeded { VN}",
            "SRTP is Enabled",
            &format!("incoming rtp for 'audio' established, receiving from {switch_ip}:"),
        ];
        loop {
            let log = log_of(user);
            let missing: Vec<&&str> = wanted.iter().filter(|w| !log.contains(**w)).collect();
            if missing.is_empty() {
                let nominated = log
                    .lines()
                    .find(|l| l.contains("Succeeded { VN}"))
                    .unwrap_or_default();
                assert!(
                    nominated.contains(&format!("<---> relay:{switch_ip}:")),
                    "{user} ({relay_side} side) nominated a pair without the relay: {nominated}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{user}'s phone never showed {missing:?}\n{}\n{}",
                logs(),
                switch.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // 20 ms packets both ways: a few seconds of call is hundreds of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let relayed = switch
            .metric("softswitch_media_packets_relayed_total")
            .await
            - before;
        if relayed >= 300 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {relayed} packets relayed\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(lab);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opus_only_phone_reaches_a_g711_only_carrier_through_the_transcoder() {
    transcoded_call(false).await;
}

/// The same phone insisting on SRTP (SDES): the carrier still gets plain
/// G.711, the phone an SRTP answer, and media flows both ways.
#[tokio::test(flavor = "multi_thread")]
async fn an_srtp_opus_phone_reaches_a_plain_g711_carrier_through_the_transcoder() {
    transcoded_call(true).await;
}

async fn transcoded_call(srtp: bool) {
    use support::audio::{collect_rtp, tone_blocks, write_pcma_pcap};
    let switch = Switch::start("").await;
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(&[], "carrier", "486", carrier_port, "udp");
    // The carrier speaks G.711 only: it insists on a PCMA/PCMU offer and
    // answers PCMA toward a socket of the test, then (3 s in) sends a
    // 1 kHz tone of its own.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tone = media::tone::sine(1000.0, 8000, Duration::from_millis(3000));
    let pcap = switch.site.path("carrier-tone.pcap");
    write_pcma_pcap(&pcap, &tone);
    let carrier_scenario = switch.variant_with(
        "call_gw_uas.xml",
        &[
            ("EXPECT_RURI", "4860012345"),
            ("EXPECT_FROM", "sip:48600111222@"),
            ("c=IN IP[media_ip_type] [media_ip]", "c=IN IP4 127.0.0.1"),
            (
                "m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000",
                &format!(
                    "m=audio {} RTP/AVP 8\n      a=rtpmap:8 PCMA/8000",
                    sink.local_addr().unwrap().port()
                ),
            ),
            (
                "<recv request=\"ACK\"/>",
                &format!(
                    "<recv request=\"ACK\"/>\n  <pause milliseconds=\"3000\"/>\n  \
                     <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>",
                    pcap.display()
                ),
            ),
        ],
    );
    // dora's calls are recorded: a transcoded call is recorded from its
    // bridge.
    switch
        .site
        .ok(&["account", "set", "dora", "--recording", "stereo"]);
    let carrier = carrier(&switch, &carrier_scenario, carrier_port, "u1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = std::thread::spawn(move || {
        collect_rtp(&sink, Duration::from_secs(2), Duration::from_secs(20))
    });
    // dora's softphone offers Opus only; its microphone is a 440 Hz sine.
    let dora = Baresip::start_opts(
        &switch,
        "dora",
        "dora-pw",
        &BaresipOptions {
            codecs: &["opus"],
            modules: if srtp { &["srtp"] } else { &[] },
            account_params: if srtp { ";mediaenc=srtp-mand" } else { "" },
            commands: &["/dial int4860012345"],
            verbose: true,
            ..BaresipOptions::default()
        },
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    dora.quit();
    let mut carrier = carrier;
    let status = carrier.0.wait().unwrap();
    let carrier_log = std::fs::read_to_string(switch.site.path("carrier.log")).unwrap_or_default();
    assert!(
        status.success(),
        "carrier:\n{carrier_log}\n{}",
        switch.log()
    );
    // The carrier was offered G.711 by the switch, never the phone's Opus.
    let invite = carrier_log
        .split("message received")
        .find(|m| m.contains("INVITE sip:"))
        .unwrap_or_default();
    assert!(invite.contains("a=rtpmap:8 PCMA/8000"), "{invite}");
    assert!(!invite.to_lowercase().contains("opus"), "{invite}");
    assert!(
        invite.contains("RTP/AVP") && !invite.contains("a=crypto"),
        "{invite}"
    );
    // Phone to carrier: the sine arrives as PCMA.
    let pcma = heard.join().unwrap();
    let samples: Vec<i16> = pcma.iter().map(|&b| media::g711::alaw_decode(b)).collect();
    let sine = tone_blocks(&samples, 440.0) as f64 * 0.02;
    assert!(
        sine >= 1.0,
        "{sine} s of the phone's sine reached the carrier"
    );
    // Carrier to phone: baresip receives the switch's Opus stream.
    let out = std::fs::read_to_string(switch.site.path("baresip-dora/stdout.log"))
        .unwrap_or_default()
        + &std::fs::read_to_string(switch.site.path("baresip-dora/stderr.log")).unwrap_or_default();
    assert!(
        out.contains("incoming rtp for 'audio' established"),
        "baresip got no audio:\n{out}"
    );
    if srtp {
        assert!(out.contains("SRTP is Enabled"), "{out}");
        assert!(!out.contains("failed to decrypt"), "{out}");
    }
    assert!(switch.log().contains("call is bridged"), "{}", switch.log());
    // The recording: dora's sine left, the carrier's tone right.
    let wav = admin_download_last_recording(&switch).await;
    assert_stereo_tones(&wav, (440.0, 1000.0), 1.0);
    switch
        .wait_metric("softswitch_calls_active", |v| v == 0)
        .await;
    switch
        .wait_metric("softswitch_media_ports_in_use", |v| v == 0)
        .await;
}

/// One OFFNET call from `login` through the gateway of
/// [`a_recorded_call_is_stored_per_direction_for_its_owner_only`], the
/// test's sockets streaming 2 s of a `phone_hz` tone (phone) and a
/// `carrier_hz` tone (carrier) as PCMU both ways at once.
async fn tones_through_the_gateway(
    switch: &Switch,
    login: &str,
    carrier_port: u16,
    phone_hz: f64,
    carrier_hz: f64,
) {
    let phone = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let carrier_media = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let carrier_port_text = carrier_media.local_addr().unwrap().port().to_string();
    let carrier_scenario = switch.variant_with(
        "call_gw_uas.xml",
        &[
            ("EXPECT_RURI", "4860012345"),
            ("EXPECT_FROM", "sip:"),
            ("c=IN IP[media_ip_type] [media_ip]", "c=IN IP4 127.0.0.4"),
            ("[media_port]", &carrier_port_text),
        ],
    );
    // Where `carrier` writes; the last call's messages go first.
    let carrier_trace = switch.site.path("carrier.log");
    let _ = std::fs::remove_file(&carrier_trace);
    let mut carrier = carrier(switch, &carrier_scenario, carrier_port, "u1");
    let caller_scenario = switch.variant_with(
        "call_uac.xml",
        &[
            ("c=IN IP[media_ip_type] [media_ip]", "c=IN IP4 127.0.0.3"),
            (
                "[media_port]",
                &phone.local_addr().unwrap().port().to_string(),
            ),
        ],
    );
    let users = switch.users(&format!("{login}.csv"), login, &format!("{login}-pw"));
    let caller_trace = switch.site.path(&format!("caller-{login}.log"));
    let target = switch.target();
    let mut caller = spawn_sipp(
        &[
            &target,
            "-sf",
            caller_scenario.to_str().unwrap(),
            "-inf",
            users.to_str().unwrap(),
            "-s",
            "int4860012345",
            "-d",
            "3000",
            "-key",
            "domain",
            "localhost",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "30",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            caller_trace.to_str().unwrap(),
        ],
        switch.site.path(&format!("caller-{login}.err")),
    );
    let ((_, relay_b), _) = wait_media(&carrier_trace, "INVITE ").await;
    let ((_, relay_a), _) = wait_media(&caller_trace, "SIP/2.0 200").await;
    let relay_a: SocketAddr = format!("127.0.0.1:{relay_a}").parse().unwrap();
    let relay_b: SocketAddr = format!("127.0.0.1:{relay_b}").parse().unwrap();
    let phone_tone = media::tone::sine(phone_hz, 8000, Duration::from_secs(2));
    let carrier_tone = media::tone::sine(carrier_hz, 8000, Duration::from_secs(2));
    let packet = |seq: usize, ssrc: u32, frame: &[i16]| {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&(seq as u16).to_be_bytes());
        p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend(frame.iter().map(|&s| media::g711::ulaw_encode(s)));
        p
    };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (seq, (a, b)) in phone_tone
        .chunks(160)
        .zip(carrier_tone.chunks(160))
        .enumerate()
    {
        tick.tick().await;
        phone.send_to(&packet(seq, 0xA, a), relay_a).await.unwrap();
        carrier_media
            .send_to(&packet(seq, 0xB, b), relay_b)
            .await
            .unwrap();
    }
    for (name, device, trace) in [
        ("caller", &mut caller, &caller_trace),
        ("carrier", &mut carrier, &carrier_trace),
    ] {
        let status = tokio::task::block_in_place(|| device.0.wait().unwrap());
        assert!(
            status.success(),
            "{name} failed:\n{}\n{}",
            std::fs::read_to_string(trace).unwrap_or_default(),
            switch.log()
        );
    }
}

/// The audio of the newest call recording, once it has ended, from the
/// admin API.
async fn admin_download_last_recording(switch: &Switch) -> Vec<u8> {
    let token = std::fs::read_to_string(switch.site.path("data/admin.token")).unwrap();
    let get = |path: String| {
        let token = token.trim().to_owned();
        async move {
            reqwest::Client::new()
                .get(format!("http://127.0.0.1:{}{path}", switch.admin))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let id = loop {
        let listed: serde_json::Value = get("/recordings?limit=1".into())
            .await
            .json()
            .await
            .unwrap();
        let newest = &listed["recordings"][0];
        if newest["ended_at"].is_i64() {
            break newest["id"].as_i64().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ended recording: {listed}\n{}",
            switch.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    get(format!("/recordings/{id}/audio"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// A stereo recording holds `hz.0` left and `hz.1` right, each for at
/// least `min_secs`, and neither tone in the other channel.
fn assert_stereo_tones(wav: &[u8], hz: (f64, f64), min_secs: f64) {
    let (left, right) = (wav_channel(wav, 2, 0), wav_channel(wav, 2, 1));
    let secs = |samples: &[i16], f: f64| support::audio::tone_blocks(samples, f) as f64 * 0.02;
    assert!(
        secs(&left, hz.0) >= min_secs,
        "{} s of {} Hz left",
        secs(&left, hz.0),
        hz.0
    );
    assert!(
        secs(&right, hz.1) >= min_secs,
        "{} s of {} Hz right",
        secs(&right, hz.1),
        hz.1
    );
    assert_eq!(
        secs(&left, hz.1) + secs(&right, hz.0),
        0.0,
        "the directions crossed"
    );
}

/// Channel `channel` of `channels` of a WAV served by the switch (44-byte
/// header, 16-bit samples), checking the header says 8 kHz and `channels`.
fn wav_channel(wav: &[u8], channels: u16, channel: usize) -> Vec<i16> {
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), channels, "channels");
    assert_eq!(
        u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
        8000
    );
    wav[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .skip(channel)
        .step_by(usize::from(channels))
        .collect()
}

/// Call recording, by the caller's account flag (stereo: caller left,
/// callee right) and by the gateway's (mixed): each direction's tone is
/// where the layout puts it and lasts the 2 s it was sent for — with the
/// kernel forwarding settled streams, so a recorded stream must stay in
/// the relay's hands; the owner lists and downloads it (WAV, MP3), another
/// user cannot, the admin API can.
#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_call_is_stored_per_direction_for_its_owner_only() {
    let (sip, api_port, admin) = (free_sip_port(), support::free_port(), support::free_port());
    let site = support::Site::with_api(
        sip,
        &format!("listen = [\"127.0.0.1:{api_port}\"]\n"),
        &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[media]\nkernel_forwarding = true\n"),
    );
    for login in ["erin", "eve"] {
        site.ok(&[
            "account",
            "add",
            login,
            "--password",
            &format!("{login}-pw"),
            "--username",
            login,
            "--access-password",
            &format!("{login}-web"),
        ]);
    }
    let mut switch = Switch {
        site,
        running: None,
        sip,
        tls: 0,
        admin,
    };
    switch.boot().await;
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(
        &["--username", "dora", "--access-password", "dora-web"],
        "carrier",
        "4860",
        carrier_port,
        "udp",
    );
    switch
        .site
        .ok(&["gateway", "set", "carrier", "--recording", "mixed"]);
    switch
        .site
        .ok(&["account", "set", "dora", "--recording", "stereo"]);

    // dora's own flag (stereo) wins over the gateway's (mixed); erin has
    // none, so the gateway's applies.
    tones_through_the_gateway(&switch, "dora", carrier_port, 440.0, 1000.0).await;
    tones_through_the_gateway(&switch, "erin", carrier_port, 700.0, 1300.0).await;

    let admin_token = std::fs::read_to_string(switch.site.path("data/admin.token")).unwrap();
    let admin_get = |path: String| {
        let token = admin_token.trim().to_owned();
        async move {
            reqwest::Client::new()
                .get(format!("http://127.0.0.1:{admin}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    // Both recordings, ended, newest first.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let listed: serde_json::Value = admin_get("/recordings".into()).await.json().await.unwrap();
        let list = listed["recordings"].as_array().cloned().unwrap_or_default();
        if list.len() == 2 && list.iter().all(|r| r["ended_at"].is_i64()) {
            break list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "recordings: {listed}\n{}",
            switch.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (erin_rec, dora_rec) = (&listed[0], &listed[1]);
    assert_eq!(
        (
            dora_rec["caller"].as_str(),
            dora_rec["callee"].as_str(),
            dora_rec["layout"].as_str(),
            dora_rec["gateway"].as_str()
        ),
        (
            Some("dora"),
            Some("4860012345"),
            Some("stereo"),
            Some("carrier")
        ),
        "{dora_rec}"
    );
    assert_eq!(
        (erin_rec["caller"].as_str(), erin_rec["layout"].as_str()),
        (Some("erin"), Some("mixed"))
    );
    // From the answer to the last packet: the 2 s of tone, after however
    // long the test took to start sending.
    for rec in [dora_rec, erin_rec] {
        let ms = rec["duration_ms"].as_i64().unwrap();
        assert!(
            (1900..=3500).contains(&ms),
            "{ms} ms recorded of 2 s sent: {rec}"
        );
    }

    // Stereo: the phone's tone left, the carrier's right, 2 s each.
    let dora_id = dora_rec["id"].as_i64().unwrap();
    let wav = admin_get(format!("/recordings/{dora_id}/audio"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_stereo_tones(&wav, (440.0, 1000.0), 1.8);
    // Mixed: both of erin's tones in the one channel.
    let erin_id = erin_rec["id"].as_i64().unwrap();
    let wav = admin_get(format!("/recordings/{erin_id}/audio"))
        .await
        .bytes()
        .await
        .unwrap();
    let mixed = wav_channel(&wav, 1, 0);
    let both = mixed
        .chunks(160)
        .filter(|b| {
            b.len() == 160
                && support::audio::tone_ratio(b, 700.0) > 0.15
                && support::audio::tone_ratio(b, 1300.0) > 0.15
        })
        .count();
    assert!(both as f64 * 0.02 >= 1.8, "{both} blocks hold both tones");

    // The client API: dora's list holds only her recording, which she
    // downloads as MP3 (stereo, 2 s); eve sees nothing and gets 404.
    let client = support::api_client();
    let base = format!("https://127.0.0.1:{api_port}");
    let (dora, eve) = (
        support::api_token(&client, &base, "dora", "dora-web").await,
        support::api_token(&client, &base, "eve", "eve-web").await,
    );
    let get = |path: String, token: &str| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
    };
    let mine: serde_json::Value = get("/v1/recordings".into(), &dora)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = mine["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [dora_id], "{mine}");
    let mp3 = get(format!("/v1/recordings/{dora_id}/audio?format=mp3"), &dora)
        .await
        .unwrap();
    assert_eq!(mp3.headers()["content-type"], "audio/mpeg");
    let mp3 = mp3.bytes().await.unwrap();
    let (mp3_file, wav_file) = (
        switch.site.path("rec.mp3"),
        switch.site.path("rec-from-mp3.wav"),
    );
    std::fs::write(&mp3_file, &mp3).unwrap();
    let status = std::process::Command::new("mpg123")
        .args(["-q", "-w"])
        .arg(&wav_file)
        .arg(&mp3_file)
        .status()
        .expect("mpg123 is needed: run scripts/setup.sh");
    assert!(status.success());
    let decoded = std::fs::read(&wav_file).unwrap();
    let left = wav_channel(&decoded, 2, 0);
    let secs = |samples: &[i16], hz: f64| support::audio::tone_blocks(samples, hz) as f64 * 0.02;
    let recorded = dora_rec["duration_ms"].as_i64().unwrap() as f64 / 1000.0;
    assert!(
        (left.len() as f64 / 8000.0 - recorded).abs() < 0.2,
        "the MP3 lasts {} s, the recording {recorded} s",
        left.len() as f64 / 8000.0
    );
    assert!(
        secs(&left, 440.0) >= 1.6,
        "{} s of 440 Hz left in the MP3",
        secs(&left, 440.0)
    );
    let theirs: serde_json::Value = get("/v1/recordings".into(), &eve)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["recordings"], serde_json::json!([]), "{theirs}");
    for path in [
        format!("/v1/recordings/{dora_id}/audio"),
        format!("/v1/recordings/{erin_id}/audio"),
    ] {
        assert_eq!(get(path, &eve).await.unwrap().status(), 404);
    }
    let gone = client
        .delete(format!("{base}/v1/recordings/{dora_id}"))
        .bearer_auth(&eve)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404, "eve cannot delete it");
    let gone = client
        .delete(format!("{base}/v1/recordings/{dora_id}"))
        .bearer_auth(&dora)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(
        admin_get(format!("/recordings/{dora_id}/audio"))
            .await
            .status(),
        404,
        "its last owner deleted it"
    );
    switch
        .wait_metric("softswitch_media_ports_in_use", |v| v == 0)
        .await;
}

/// A recorded ONNET call between two softphones that insist on SRTP (SDES
/// keys, G.711): the relay carries it encrypted, and the recorder decrypts
/// each side with the key that side's SDP announced — both channels hold
/// the phones' 440 Hz sine, which noise from undecrypted packets would not.
#[tokio::test(flavor = "multi_thread")]
async fn an_srtp_call_between_two_phones_is_recorded_decrypted() {
    let switch = Switch::start("").await;
    switch
        .site
        .ok(&["account", "set", "alice", "--recording", "stereo"]);
    let phone = |user: &str, params: &'static str, commands: &'static [&'static str]| {
        Baresip::start_opts(
            &switch,
            user,
            &format!("{user}-pw"),
            &BaresipOptions {
                modules: &["srtp"],
                account_params: params,
                commands,
                codecs: &["g711"],
                verbose: true,
                ..BaresipOptions::default()
            },
        )
    };
    let bob = phone("bob", ";mediaenc=srtp-mand;answermode=auto", &[]);
    switch.wait_registered(1).await;
    let alice = phone("alice", ";mediaenc=srtp-mand", &["/dial bob"]);
    switch
        .wait_metric("softswitch_calls_answered_total", |v| v >= 1)
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    alice.quit();
    bob.quit();
    let wav = admin_download_last_recording(&switch).await;
    let secs = |samples: &[i16]| support::audio::tone_blocks(samples, 440.0) as f64 * 0.02;
    let (left, right) = (wav_channel(&wav, 2, 0), wav_channel(&wav, 2, 1));
    assert!(
        secs(&left) >= 2.0 && secs(&right) >= 2.0,
        "{} s / {} s of the sine decrypted\n{}",
        secs(&left),
        secs(&right),
        switch.log()
    );
    assert!(switch.log().contains("undecrypted=0"), "{}", switch.log());
}

/// A transcoded call put on hold: the carrier is told too (sendonly, then
/// sendrecv again: `call_uas_hold.xml` checks), the phone gets the
/// complement (recvonly), and while it holds nothing is sent to it; when it
/// resumes, its stream goes on where it stopped (next sequence number).
#[tokio::test(flavor = "multi_thread")]
async fn a_transcoded_call_on_hold_holds_the_carrier_and_sends_the_phone_nothing() {
    let switch = Switch::start("").await;
    let carrier_port = free_sip_port();
    switch.dora_and_gateway(&[], "carrier", "486", carrier_port, "udp");
    // As a carrier: ends at the BYE (no wait for a stray ACK, whose
    // timeout SIPp counts as a failure).
    let carrier_scenario = switch.variant(
        "call_uas_hold.xml",
        "<recv request=\"ACK\" timeout=\"1000\" ontimeout=\"done\" optional=\"true\"/>",
        "",
    );
    let mut carrier = carrier(&switch, &carrier_scenario, carrier_port, "u1");
    let phone = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let pause = "<pause milliseconds=\"2000\"/>\n  <send retrans=\"500\" start_txn=";
    let caller_scenario = switch.variant_with(
        "call_uac_hold.xml",
        &[
            ("c=IN IP[media_ip_type] [media_ip]", "c=IN IP4 127.0.0.3"),
            (
                "m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000",
                &format!(
                    "m=audio {} RTP/AVP 111\n      a=rtpmap:111 opus/48000/2",
                    phone.local_addr().unwrap().port()
                ),
            ),
            (
                "<send retrans=\"500\" start_txn=\"hold\">",
                &format!("{pause}\"hold\">"),
            ),
            (
                "<send retrans=\"500\" start_txn=\"resume\">",
                &format!("{pause}\"resume\">"),
            ),
            (
                "<send retrans=\"500\" start_txn=\"bye\">",
                &format!("{pause}\"bye\">"),
            ),
        ],
    );
    let users = switch.users("dora.csv", "dora", "dora-pw");
    let caller_trace = switch.site.path("caller.log");
    let target = switch.target();
    let mut caller = spawn_sipp(
        &[
            &target,
            "-sf",
            caller_scenario.to_str().unwrap(),
            "-inf",
            users.to_str().unwrap(),
            "-s",
            "int4860012345",
            "-key",
            "domain",
            "localhost",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "30",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            caller_trace.to_str().unwrap(),
        ],
        switch.site.path("caller.err"),
    );
    // What the phone's socket receives: (arrival, sequence number).
    let heard = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok((n, _)) = phone.recv_from(&mut buf)
                && n >= 12
            {
                got.push((start.elapsed(), u16::from_be_bytes([buf[2], buf[3]])));
            }
            if got.len() > 10 && got.last().unwrap().0 + Duration::from_secs(3) < start.elapsed() {
                break;
            }
        }
        got
    });
    for (name, device, trace) in [
        ("caller", &mut caller, caller_trace.clone()),
        ("carrier", &mut carrier, switch.site.path("carrier.log")),
    ] {
        let status = tokio::task::block_in_place(|| device.0.wait().unwrap());
        assert!(
            status.success(),
            "{name} failed:\n{}\n{}\n{}",
            std::fs::read_to_string(switch.site.path(&format!("{name}.err"))).unwrap_or_default(),
            std::fs::read_to_string(trace).unwrap_or_default(),
            switch.log()
        );
    }
    let got = tokio::task::block_in_place(|| heard.join().unwrap());
    assert!(got.len() > 100, "{} packets reached the phone", got.len());
    let (gap_at, gap) = got
        .windows(2)
        .map(|w| (w[1], w[1].0 - w[0].0))
        .max_by_key(|(_, gap)| *gap)
        .unwrap();
    assert!(
        gap >= Duration::from_millis(1500),
        "the phone kept getting packets while it held the call (longest gap {gap:?})"
    );
    let resumed = got.iter().position(|p| *p == gap_at).unwrap();
    assert!(
        resumed > 50 && got.len() - resumed > 50,
        "packets before ({resumed}) and after ({}) the hold",
        got.len() - resumed
    );
    assert_eq!(
        got[resumed].1,
        got[resumed - 1].1.wrapping_add(1),
        "the stream resumes with the next sequence number"
    );
    assert!(switch.log().contains("call is bridged"), "{}", switch.log());
    switch
        .wait_metric("softswitch_media_ports_in_use", |v| v == 0)
        .await;
}
