//! The STUN server seen from outside: real clients over UDP (coturn's
//! `turnutils_stunclient`, the classic RFC 3489 `stun` client), an
//! independent STUN implementation over TCP, hand-made RFC 3489 and
//! malformed packets, and the per-source rate limit.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use media::stun as codec;
use support::sipp::{Switch, free_sip_port};

/// A switch whose STUN listens on UDP and TCP `port`, with `stun_extra`
/// added to its `[stun]` section.
async fn switch_with_stun(stun_extra: &str) -> (Switch, u16) {
    let port = free_sip_port();
    let switch = Switch::start_with(
        "",
        &format!(
            "\n[stun]\nudp = [\"127.0.0.1:{port}\"]\ntcp = [\"127.0.0.1:{port}\"]\n{stun_extra}\n"
        ),
    )
    .await;
    assert!(
        switch.log().contains(&format!(
            "STUN listening transport=\"udp\" address=127.0.0.1:{port}"
        )),
        "no listening line: {}",
        switch.log()
    );
    (switch, port)
}

/// Runs a client to completion, killing it after `secs`; `tool` names the
/// Debian package so a missing one fails loudly.
fn run(cmd: &mut Command, tool: &str, secs: u64) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} must be installed (scripts/setup.sh installs it): {e}"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{tool} did not finish in {secs} s: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn client(local: &str) -> UdpSocket {
    let socket = UdpSocket::bind(local).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    socket
}

fn request(id: u8) -> Vec<u8> {
    codec::Message::binding_request(codec::TransactionId([id; 12]))
        .encode(None, true)
        .unwrap()
}

/// The next datagram, or `None` when nothing comes within the read timeout.
fn receive(socket: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    match socket.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("receive: {e}"),
    }
}

#[tokio::test]
async fn coturn_client_learns_its_address_over_udp() {
    let (switch, port) = switch_with_stun("").await;
    let out = run(
        Command::new("turnutils_stunclient").args(["-p", &port.to_string(), "127.0.0.1"]),
        "turnutils_stunclient (Debian package coturn)",
        20,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // "0: : IPv4. UDP reflexive addr: 127.0.0.1:36075"
    let mapped: SocketAddr = stdout
        .lines()
        .find_map(|l| l.split("UDP reflexive addr: ").nth(1))
        .unwrap_or_else(|| panic!("no reflexive address in: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");
    assert_ne!(mapped.port(), 0);
    assert!(switch.metric("softswitch_stun_answered_total").await >= 1);
}

#[tokio::test]
async fn classic_rfc3489_client_learns_its_address_and_port() {
    let (_switch, port) = switch_with_stun("").await;
    // Test 1 of RFC 3489 §10.1 only: one Binding request without cookie.
    let out = run(
        Command::new("stun").args([&format!("127.0.0.1:{port}"), "1", "-v"]),
        "stun (Debian package stun-client)",
        20,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The client says which source port it opened; the answer must name it.
    let source: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("Opened port "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no source port in: {text}"));
    assert!(
        text.contains(&format!("MappedAddress = 127.0.0.1:{source}")),
        "{text}"
    );
    assert!(text.contains("ServerName = softswitch"), "{text}");
}

#[tokio::test]
async fn raw_rfc3489_request_gets_mapped_address() {
    let (_switch, port) = switch_with_stun("").await;
    let socket = client("127.0.0.1:0");
    let id: [u8; 16] = *b"classic-3489-id!";
    let mut packet = vec![0x00, 0x01, 0x00, 0x00];
    packet.extend_from_slice(&id);
    socket.send_to(&packet, ("127.0.0.1", port)).unwrap();
    let answer = receive(&socket).expect("an answer to a classic request");
    assert_eq!(&answer[..2], &[0x01, 0x01], "Binding success");
    assert_eq!(&answer[4..20], &id, "the whole 128-bit ID echoed");
    let local = socket.local_addr().unwrap();
    let mut mapped = vec![0x00, 0x01, 0x00, 0x08, 0x00, 0x01];
    mapped.extend_from_slice(&local.port().to_be_bytes());
    mapped.extend_from_slice(&[127, 0, 0, 1]);
    assert_eq!(
        &answer[20..32],
        &mapped,
        "MAPPED-ADDRESS first, in the clear"
    );
    let m = codec::Message::decode(&answer).unwrap();
    assert!(m.is_rfc3489());
    assert_eq!(m.mapped_address(), Some(local));
    assert_eq!(m.xor_mapped_address(), None);
    assert!(!m.has_fingerprint(), "RFC 3489 knows no FINGERPRINT");
}

#[tokio::test]
async fn independent_client_over_tcp_gets_xor_mapped_address() {
    use stun::fingerprint::FINGERPRINT;
    use stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Getter, Message};
    use stun::textattrs::TextAttribute;
    use stun::xoraddr::XorMappedAddress;

    let (switch, port) = switch_with_stun("").await;
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut requests = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut m = Message::new();
        m.build(&[
            Box::new(BINDING_REQUEST),
            Box::new(stun::agent::TransactionId::new()),
            Box::new(FINGERPRINT),
        ])
        .unwrap();
        ids.push(m.transaction_id);
        requests.extend_from_slice(&m.raw);
    }
    // Two requests in one segment: the server must frame them apart.
    conn.write_all(&requests).unwrap();
    for id in ids {
        let mut header = [0u8; 20];
        conn.read_exact(&mut header).unwrap();
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut raw = header.to_vec();
        raw.resize(20 + len, 0);
        conn.read_exact(&mut raw[20..]).unwrap();
        let mut answer = Message::new();
        answer.unmarshal_binary(&raw).unwrap();
        assert_eq!(answer.typ, BINDING_SUCCESS);
        assert_eq!(answer.transaction_id, id);
        FINGERPRINT.check(&answer).unwrap();
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&answer).unwrap();
        let local = conn.local_addr().unwrap();
        assert_eq!((mapped.ip, mapped.port), (local.ip(), local.port()));
        let software =
            TextAttribute::get_from_as(&answer, stun::attributes::ATTR_SOFTWARE).unwrap();
        assert!(
            software.text.starts_with("softswitch "),
            "{}",
            software.text
        );
    }
    drop(conn);

    // Garbage closes the connection; a new one is served.
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    match garbage.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the connection should be closed, got {other:?}"),
    }
    let mut again = TcpStream::connect(("127.0.0.1", port)).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    again.write_all(&request(1)).unwrap();
    let mut header = [0u8; 20];
    again.read_exact(&mut header).unwrap();
    assert_eq!(&header[..2], &[0x01, 0x01]);
    assert!(
        switch
            .metric("softswitch_stun_dropped_total{reason=\"malformed\"}")
            .await
            >= 1
    );
}

#[tokio::test]
async fn malformed_packets_get_no_answer_and_the_server_keeps_serving() {
    let (switch, port) = switch_with_stun("").await;
    let socket = client("127.0.0.1:0");
    let good = request(7);
    let mut bad_fingerprint = good.clone();
    let n = bad_fingerprint.len();
    bad_fingerprint[n - 1] ^= 0xFF;
    let mut rtp = vec![0x80, 0x00, 0x12, 0x34];
    rtp.extend_from_slice(&[0; 168]);
    let mut wrong_length = good.clone();
    wrong_length[3] = 0x40;
    let response = codec::Message::binding_success(
        &codec::Message::decode(&good).unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    )
    .encode(None, true)
    .unwrap();
    let junk: [&[u8]; 6] = [
        b"hello",
        &rtp,
        &bad_fingerprint,
        &good[..good.len() - 4],
        &wrong_length,
        &response,
    ];
    for packet in junk {
        socket.send_to(packet, ("127.0.0.1", port)).unwrap();
        assert_eq!(receive(&socket), None, "answered {packet:02x?}");
    }
    socket.send_to(&good, ("127.0.0.1", port)).unwrap();
    let answer = codec::Message::decode(&receive(&socket).expect("still serving")).unwrap();
    assert_eq!(
        answer.xor_mapped_address(),
        Some(socket.local_addr().unwrap())
    );
    assert_eq!(
        switch
            .metric("softswitch_stun_dropped_total{reason=\"malformed\"}")
            .await,
        5
    );
    assert_eq!(
        switch
            .metric("softswitch_stun_dropped_total{reason=\"not-binding-request\"}")
            .await,
        1
    );
    assert_eq!(switch.metric("softswitch_stun_answered_total").await, 1);
}

#[tokio::test]
async fn rate_limit_drops_one_noisy_source_while_another_is_answered() {
    let (switch, port) = switch_with_stun("burst = 5\nrate_per_sec = 1\n").await;
    let noisy = client("127.0.0.1:0");
    let sent = 12;
    let started = Instant::now();
    for id in 0..sent {
        noisy.send_to(&request(id), ("127.0.0.1", port)).unwrap();
    }
    let mut answered = 0u64;
    while receive(&noisy).is_some() {
        answered += 1;
    }
    // One token a second: a machine slow enough to spread the burst over
    // more than a second earns that many more answers.
    let allowed = 5 + started.elapsed().as_secs();
    assert!(
        (5..=allowed).contains(&answered),
        "{answered} answers of {sent}, burst 5 (+{} s)",
        started.elapsed().as_secs()
    );

    let other = client("127.0.0.2:0");
    other.send_to(&request(99), ("127.0.0.1", port)).unwrap();
    let answer =
        codec::Message::decode(&receive(&other).expect("the other source is answered")).unwrap();
    assert_eq!(
        answer.xor_mapped_address(),
        Some(other.local_addr().unwrap())
    );
    assert_eq!(
        switch
            .metric("softswitch_stun_dropped_total{reason=\"rate-limited\"}")
            .await,
        sent as i64 - answered as i64
    );
}
