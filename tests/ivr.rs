//! IVR services against the real binary with SIPp callers: voicemail
//! deposit (RTP from a pcap, RFC 4733 keys), playback with `950msg<ID>`
//! compared sample for sample, the 950 menu driven by keys, and a guest
//! that never returns.

mod support;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

use support::audio::{collect_rtp, find, tone_blocks, write_pcma_pcap};
use support::sipp::{Switch, rand_suffix, sipp};

const TONE_HZ: f64 = 440.0;

/// `softswitch voicemail list LOGIN` lines after the counts line: (id, state).
fn voicemails(switch: &Switch, login: &str) -> (String, Vec<(i64, String)>) {
    let out = switch.site.ok(&["voicemail", "list", login]);
    let mut lines = out.lines();
    let counts = lines.next().unwrap_or_default().to_owned();
    let list = lines
        .map(|l| {
            let mut f = l.split('\t');
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().to_owned(),
            )
        })
        .collect();
    (counts, list)
}

/// Waits (up to `secs`) until `login`'s counts line reads `counts`; its list.
async fn wait_counts(switch: &Switch, login: &str, counts: &str, secs: u64) -> Vec<(i64, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (now, list) = voicemails(switch, login);
        if now == counts {
            return list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{now}\n{}",
            switch.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn export(switch: &Switch, login: &str, id: i64) -> Vec<i16> {
    let file = switch.site.path(&format!("vm-{}.wav", rand_suffix()));
    switch.site.ok(&[
        "voicemail",
        "export",
        login,
        &id.to_string(),
        file.to_str().unwrap(),
    ]);
    media::wav::read_file(&file).expect("the stored recording is an 8 kHz mono WAV")
}

/// Leaves a voicemail of `tone_ms` of 440 Hz for `callee` as alice; the
/// scenario presses 1 during the greeting and # after speaking.
fn leave_voicemail(switch: &Switch, callee: &str, tone_ms: u64) -> (bool, String) {
    support::sipp::leave_voicemail(switch, callee, tone_ms, TONE_HZ)
}

/// `ivr_listen_uac.xml` with its media toward `sink` and `keys` (scenario
/// lines, e.g. `play_pcap_audio` actions; "" for none) sent `after_ms`
/// after the answer.
fn listen_scenario(switch: &Switch, sink: &UdpSocket, keys: &str, after_ms: u64) -> PathBuf {
    switch.variant_with(
        "ivr_listen_uac.xml",
        &[
            ("MEDIA_PORT", &sink.local_addr().unwrap().port().to_string()),
            (
                "  <nop><action><exec play_pcap_audio=\"KEYS_PCAP\"/></action></nop>\n",
                keys,
            ),
            ("KEYS_AFTER", &after_ms.to_string()),
        ],
    )
}

#[tokio::test]
async fn a_voicemail_for_an_offline_user_is_stored_and_950msg_plays_it_back_exactly() {
    let switch = Switch::start("").await;
    // bob has no device: the call goes to his voicemail.
    let (ok, trace) = leave_voicemail(&switch, "bob", 3000);
    assert!(ok, "deposit call failed:\n{trace}\n{}", switch.log());
    let (counts, list) = voicemails(&switch, "bob");
    assert_eq!(counts, "bob: 1 new, 0 heard", "{list:?}\n{}", switch.log());
    let id = list[0].0;
    let recording = export(&switch, "bob", id);
    // The recording runs from the beep to the #: the 3 s tone and the
    // pauses around it, never the greeting.
    let secs = recording.len() as f64 / 8000.0;
    assert!((3.0..5.5).contains(&secs), "recording of {secs} s");
    let tone_secs = tone_blocks(&recording, TONE_HZ) as f64 * 0.02;
    assert!(
        (2.7..=3.1).contains(&tone_secs),
        "{tone_secs} s of {TONE_HZ} Hz in the recording"
    );

    // bob calls 950msg<ID>: the message plays, byte for byte as stored.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let scenario = listen_scenario(&switch, &sink, "", 100);
    let users = switch.users("bob.csv", "bob", "bob-pw");
    let service = format!("950msg{id}");
    let listener = std::thread::spawn(move || {
        collect_rtp(&sink, Duration::from_secs(3), Duration::from_secs(40))
    });
    let (ok, trace) = sipp(
        &switch,
        &scenario,
        &["-inf", users.to_str().unwrap(), "-s", &service],
    );
    assert!(ok, "playback call failed:\n{trace}\n{}", switch.log());
    let heard = listener.join().unwrap();
    let expected: Vec<u8> = recording
        .iter()
        .map(|&s| media::g711::alaw_encode(s))
        .collect();
    // The last partial frame may be padded; everything before it is exact.
    let whole = &expected[..expected.len() - expected.len() % 160];
    assert!(
        find(&heard, whole).is_some(),
        "the {} stored bytes are not in the {} bytes played",
        whole.len(),
        heard.len()
    );
    let (counts, _) = voicemails(&switch, "bob");
    assert_eq!(counts, "bob: 0 new, 1 heard", "played means heard");
    // Only the owner: alice asking for bob's message hears "not found".
    let users = switch.users("alice.csv", "alice", "alice-pw");
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let scenario = listen_scenario(&switch, &sink, "", 100);
    let listener = std::thread::spawn(move || {
        collect_rtp(&sink, Duration::from_secs(3), Duration::from_secs(20))
    });
    let (ok, trace) = sipp(
        &switch,
        &scenario,
        &["-inf", users.to_str().unwrap(), "-s", &service],
    );
    assert!(ok, "alice's call failed:\n{trace}");
    let heard_by_alice = listener.join().unwrap();
    assert!(find(&heard_by_alice, &whole[..1600]).is_none());
    let not_found = media::wav::read_file(&prompt("vm-not-found")).unwrap();
    let not_found: Vec<u8> = not_found
        .iter()
        .map(|&s| media::g711::alaw_encode(s))
        .collect();
    assert!(
        find(&heard_by_alice, &not_found[..1600]).is_some(),
        "alice hears that the message does not exist"
    );
    switch
        .wait_metric("softswitch_calls_active", |v| v == 0)
        .await;
    switch
        .wait_metric("softswitch_media_ports_in_use", |v| v == 0)
        .await;
}

fn prompt(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../prompts/en")
        .join(format!("{name}.wav"))
}

/// A SIPp MWI watcher of `login`'s own mailbox, answering up to `notifies`
/// NOTIFYs in the background; killed when dropped.
struct Watcher {
    child: std::process::Child,
    trace: PathBuf,
}

impl Watcher {
    fn start(switch: &Switch, login: &str, notifies: usize) -> Watcher {
        let text = std::fs::read_to_string(support::sipp::scenario("presence_watch.xml")).unwrap();
        let (start, end) = (
            text.find("<!--NOTIFY-->").unwrap(),
            text.find("<!--/NOTIFY-->").unwrap(),
        );
        let text = format!(
            "{}{}{}",
            &text[..start],
            text[start..end].repeat(notifies),
            &text[end..]
        )
        .replace("Event: presence", "Event: message-summary");
        let scenario = switch.site.path(&format!("mwi-{}.xml", rand_suffix()));
        std::fs::write(&scenario, text).unwrap();
        let trace = switch.site.path(&format!("mwi-{}.log", rand_suffix()));
        let users = switch.users(&format!("{login}-mwi.csv"), login, &format!("{login}-pw"));
        let child = std::process::Command::new("sipp")
            .arg(switch.target())
            .arg("-sf")
            .arg(&scenario)
            .arg("-inf")
            .arg(&users)
            .args(["-s", login, "-key", "domain", "localhost"])
            .args(["-m", "1", "-l", "1", "-nostdin", "-timeout", "120"])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(&trace)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp must be installed");
        Watcher { child, trace }
    }

    /// The `Voice-Message:` values received so far, repeats removed.
    fn counts(&self) -> Vec<String> {
        let trace = std::fs::read_to_string(&self.trace).unwrap_or_default();
        let mut seen: Vec<String> = trace
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Voice-Message: "))
            // `new/old (urgent new/urgent old)`: the first pair.
            .filter_map(|v| v.split_whitespace().next().map(str::to_owned))
            .collect();
        seen.dedup();
        seen
    }

    async fn wait_for(&self, count: &str, switch: &Switch) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while self.counts().last().map(String::as_str) != Some(count) {
            assert!(
                std::time::Instant::now() < deadline,
                "MWI never said {count}: {:?}\n{}",
                self.counts(),
                switch.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_drive_the_950_menu_and_mwi_follows_deposit_heard_and_delete() {
    let switch = Switch::start("").await;
    let watcher = Watcher::start(&switch, "bob", 12);
    watcher.wait_for("0/0", &switch).await;
    for n in 1..=2 {
        let (ok, trace) = leave_voicemail(&switch, "bob", 1000);
        assert!(ok, "deposit {n} failed:\n{trace}\n{}", switch.log());
        watcher.wait_for(&format!("{n}/0"), &switch).await;
    }
    // The list is newest first; the menu plays the oldest first.
    let (_, list) = voicemails(&switch, "bob");
    let (first, second) = (list[1].0, list[0].0);

    // bob calls 950 and presses 7 (delete) then 9 (save): typed ahead, each
    // acts on the message playing when it is read.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let keys = "  <nop><action><exec play_pcap_audio=\"/usr/share/sip-tester/dtmf_2833_7.pcap\"/></action></nop>\n\
                <pause milliseconds=\"700\"/>\n\
                <nop><action><exec play_pcap_audio=\"/usr/share/sip-tester/dtmf_2833_9.pcap\"/></action></nop>\n";
    let scenario = listen_scenario(&switch, &sink, keys, 1500);
    let users = switch.users("bob.csv", "bob", "bob-pw");
    let (ok, trace) = sipp(
        &switch,
        &scenario,
        &["-inf", users.to_str().unwrap(), "-s", "950"],
    );
    assert!(ok, "950 call failed:\n{trace}\n{}", switch.log());
    drop(sink);
    let (counts, list) = voicemails(&switch, "bob");
    assert_eq!(counts, "bob: 0 new, 1 heard", "{}", switch.log());
    assert_eq!(
        list,
        [(second, "heard".to_owned())],
        "the first was deleted"
    );
    watcher.wait_for("0/1", &switch).await;
    // Every state the mailbox went through was notified, in order: the
    // deletion (1 new left) or the hearing of the second may coalesce with
    // their neighbours, never reorder.
    let seen = watcher.counts();
    assert_eq!(&seen[..3], ["0/0", "1/0", "2/0"], "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("0/1"), "{seen:?}");
    assert!(!seen.contains(&"2/1".to_owned()), "{seen:?} ({first})");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_never_returns_is_stopped_and_leaks_nothing() {
    // 950: spins on the CPU after answering; 750: calls pause forever and
    // ignores that the caller hung up.
    let ivr = format!(
        "{}[ivr.services.greeting.config]\nmode = \"ignore\"\n",
        support::ivr_section(&[
            ("voicemail", "fixture_ivr_loop"),
            ("greeting", "fixture_ivr_loop")
        ])
    );
    let switch = Switch::start_with("", &ivr).await;
    let users = switch.users("alice.csv", "alice", "alice-pw");

    // The spinning guest is stopped at its step budget and the switch
    // hangs up on the caller.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let scenario = listen_scenario(&switch, &sink, "", 100);
    let (ok, trace) = sipp(
        &switch,
        &scenario,
        &["-inf", users.to_str().unwrap(), "-s", "950"],
    );
    assert!(ok, "spinning guest's call:\n{trace}\n{}", switch.log());
    let timeouts = "softswitch_guest_failures_total{guest=\"fixture_ivr_loop\",kind=\"timeout\",world=\"softswitch:ivr/scenario@0.1.0\"}";
    switch.wait_metric(timeouts, |v| v == 1).await;

    // The guest that ignores the hang-up is dropped when the call ends.
    let (ok, trace) = sipp(
        &switch,
        &support::sipp::scenario("call_uac.xml"),
        &["-inf", users.to_str().unwrap(), "-s", "750", "-d", "2000"],
    );
    assert!(ok, "ignoring guest's call:\n{trace}\n{}", switch.log());
    for gauge in [
        "softswitch_ivr_runs",
        "softswitch_calls_active",
        "softswitch_sip_dialogs",
        "softswitch_media_ports_in_use",
    ] {
        switch.wait_metric(gauge, |v| v == 0).await;
    }
    assert!(
        switch
            .log()
            .contains("IVR run did not end with its call: dropped"),
        "{}",
        switch.log()
    );
    // Both calls were answered and recorded once each.
    let cdrs = switch.site.ok(&["cdr", "list", "--login", "alice"]);
    assert_eq!(cdrs.lines().count(), 2, "{cdrs}");
    assert!(cdrs.lines().all(|l| l.contains("answered")), "{cdrs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_api_serves_each_user_only_their_own_voicemails() {
    let (sip, api_port, admin) = (
        support::sipp::free_sip_port(),
        support::free_port(),
        support::free_port(),
    );
    let site = support::Site::with_api(
        sip,
        &format!("listen = [\"127.0.0.1:{api_port}\"]\n"),
        &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
    );
    for (login, web) in [
        ("alice", "alice-web"),
        ("bob", "bob-web"),
        ("eve", "eve-web"),
    ] {
        site.ok(&[
            "account",
            "add",
            login,
            "--password",
            &format!("{login}-pw"),
            "--username",
            login,
            "--access-password",
            web,
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
    let (ok, trace) = leave_voicemail(&switch, "bob", 1000);
    assert!(ok, "deposit failed:\n{trace}\n{}", switch.log());
    let (_, list) = voicemails(&switch, "bob");
    let id = list[0].0;

    let client = support::api_client();
    let base = format!("https://127.0.0.1:{api_port}");
    let (bob, eve) = (
        support::api_token(&client, &base, "bob", "bob-web").await,
        support::api_token(&client, &base, "eve", "eve-web").await,
    );
    let get = |path: String, token: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };

    let listed: serde_json::Value = get("/v1/voicemails".into(), bob.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (listed["new"].as_i64(), listed["heard"].as_i64()),
        (Some(1), Some(0)),
        "{listed}"
    );
    let m = &listed["voicemails"][0];
    assert_eq!(
        (m["id"].as_i64(), m["caller"].as_str(), m["heard"].as_bool()),
        (Some(id), Some("alice"), Some(false)),
        "{m}"
    );
    let audio = get(format!("/v1/voicemails/{id}/audio"), bob.clone()).await;
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.headers()["content-type"], "audio/wav");
    let samples = media::wav::read(&audio.bytes().await.unwrap()).unwrap();
    assert_eq!(
        samples,
        export(&switch, "bob", id),
        "the download is the stored recording"
    );

    // eve sees nothing of bob's box, and an id of his is like none at all.
    let empty: serde_json::Value = get("/v1/voicemails".into(), eve.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["voicemails"], serde_json::json!([]), "{empty}");
    let stolen = get(format!("/v1/voicemails/{id}/audio"), eve.clone()).await;
    assert_eq!(stolen.status(), 404);
    let body: serde_json::Value = stolen.json().await.unwrap();
    assert_eq!(body["code"], "not-found");
    for (method, status) in [
        (reqwest::Method::PATCH, 404),
        (reqwest::Method::DELETE, 404),
    ] {
        let r = client
            .request(method, format!("{base}/v1/voicemails/{id}"))
            .bearer_auth(&eve)
            .json(&serde_json::json!({ "heard": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    assert_eq!(
        voicemails(&switch, "bob").0,
        "bob: 1 new, 0 heard",
        "eve changed nothing"
    );
    // Bad input gets a JSON error with a stable code.
    assert_eq!(
        get("/v1/voicemails/abc/audio".into(), bob.clone())
            .await
            .status(),
        404
    );
    let bad = get("/v1/voicemails?limit=0".into(), bob.clone()).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<serde_json::Value>().await.unwrap()["code"],
        "invalid-request"
    );
    assert_eq!(
        get("/v1/voicemails".into(), "nope".into()).await.status(),
        401
    );

    // bob marks it heard, then deletes it.
    let r = client
        .patch(format!("{base}/v1/voicemails/{id}"))
        .bearer_auth(&bob)
        .json(&serde_json::json!({ "heard": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(voicemails(&switch, "bob").0, "bob: 0 new, 1 heard");
    for expected in [204, 404] {
        let r = client
            .delete(format!("{base}/v1/voicemails/{id}"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected);
    }
    assert_eq!(voicemails(&switch, "bob").0, "bob: 0 new, 0 heard");
}

/// The digits said in `audio` (PCMA) from byte `from` on, one prompt after
/// the other: for each place, the digit whose prompt comes first.
fn digits_said(audio: &[u8], from: usize, count: usize) -> (String, usize) {
    let prompts: Vec<Vec<u8>> = (0..10)
        .map(|d| {
            let p: Vec<u8> = media::wav::read_file(&prompt(&format!("digit-{d}")))
                .unwrap()
                .iter()
                .map(|&s| media::g711::alaw_encode(s))
                .collect();
            p[..p.len() - p.len() % 160].to_vec()
        })
        .collect();
    let mut at = from;
    let mut said = String::new();
    for _ in 0..count {
        let (digit, pos) = (0..10)
            .filter_map(|d| find(&audio[at..], &prompts[d]).map(|p| (d, at + p)))
            .min_by_key(|&(_, p)| p)
            .expect("a digit is said");
        said.push(char::from(b'0' + digit as u8));
        at = pos + prompts[digit].len();
    }
    (said, at)
}

fn pcma_prompt(name: &str) -> Vec<u8> {
    let p: Vec<u8> = media::wav::read_file(&prompt(name))
        .unwrap()
        .iter()
        .map(|&s| media::g711::alaw_encode(s))
        .collect();
    p[..p.len() - p.len() % 160].to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn call_me_reads_the_code_twice_through_the_numbers_carrier_and_it_signs_up() {
    let (sip, api_port, admin, carrier_port) = (
        support::sipp::free_sip_port(),
        support::free_port(),
        support::free_port(),
        support::sipp::free_sip_port(),
    );
    let site = support::Site::with_api(
        sip,
        &format!("listen = [\"127.0.0.1:{api_port}\"]\n"),
        &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
    );
    site.ok(&[
        "gateway",
        "add",
        "carrier",
        "--prefix",
        "48",
        "--address",
        &format!("127.0.0.1:{carrier_port}"),
    ]);
    let mut switch = Switch {
        site,
        running: None,
        sip,
        tls: 0,
        admin,
    };
    switch.boot().await;
    // The carrier answers with PCMA toward a socket of the test.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let carrier_scenario = switch.variant_with(
        "call_gw_uas.xml",
        &[
            ("EXPECT_RURI", "48600999888"),
            ("EXPECT_FROM", "sip:verify@"),
            ("c=IN IP[media_ip_type] [media_ip]", "c=IN IP4 127.0.0.1"),
            (
                "m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000",
                &format!(
                    "m=audio {} RTP/AVP 8\n      a=rtpmap:8 PCMA/8000",
                    sink.local_addr().unwrap().port()
                ),
            ),
        ],
    );
    let carrier = support::sipp::carrier(&switch, &carrier_scenario, carrier_port, "u1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = std::thread::spawn(move || {
        collect_rtp(&sink, Duration::from_secs(3), Duration::from_secs(60))
    });

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{api_port}");
    let device =
        serde_json::json!({ "phone": "+48 600 999 888", "udid": "dev-1", "os": "android" });
    let r = client
        .post(format!("{base}/v1/signup/phone/call-me"))
        .json(&device)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "calling", "{body}");
    assert_eq!(body["sms_left"], 4, "{body}");

    let audio = listener.join().unwrap();
    let intro = find(&audio, &pcma_prompt("code-intro")).expect("the intro is said");
    let (code, after) = digits_said(&audio, intro, 4);
    let repeat =
        find(&audio[after..], &pcma_prompt("code-repeat")).expect("then said again") + after;
    let (again, after) = digits_said(&audio, repeat, 4);
    assert_eq!(code, again, "the same code twice");
    assert!(find(&audio[after..], &pcma_prompt("goodbye")).is_some());
    // The carrier saw the whole call, the switch's BYE included.
    let mut carrier = carrier;
    let status = carrier.0.wait().unwrap();
    assert!(
        status.success(),
        "{}\n{}",
        std::fs::read_to_string(switch.site.path("carrier.log")).unwrap_or_default(),
        switch.log()
    );

    // The call's outcome is the delivery status, and the code signs up.
    let query = [("phone", "+48600999888"), ("udid", "dev-1")];
    let mut delivery = String::new();
    for _ in 0..50 {
        let s: serde_json::Value = client
            .get(format!("{base}/v1/signup/phone/status"))
            .query(&query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        delivery = s["delivery"]
            .as_str()
            .unwrap_or_else(|| panic!("{s}"))
            .to_owned();
        if delivery != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivery, "delivered");
    let r = client
        .post(format!("{base}/v1/signup/phone/verify"))
        .json(&serde_json::json!({ "phone": "+48600999888", "udid": "dev-1", "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Asked again at once: the resend spacing of the SMS path holds.
    let r = client
        .post(format!("{base}/v1/signup/phone/call-me"))
        .json(&serde_json::json!({ "phone": "+48600777666", "udid": "dev-2", "os": "ios" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = client
        .post(format!("{base}/v1/signup/phone/call-me"))
        .json(&serde_json::json!({ "phone": "+48600777666", "udid": "dev-2", "os": "ios" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let cdrs = switch.site.ok(&["cdr", "list"]);
    assert!(
        cdrs.lines()
            .any(|l| l.contains("48600999888") && l.contains("answered")),
        "{cdrs}"
    );
}

/// The attachment of `content_type` in a MIME message, decoded.
fn attachment(mail: &str, content_type: &str) -> Vec<u8> {
    use base64::Engine;
    let at = mail
        .find(&format!("Content-Type: {content_type}"))
        .unwrap_or_else(|| panic!("no {content_type} part in:\n{mail}"));
    let part = &mail[at..];
    let body_start = part.find("\n\n").or_else(|| part.find("\r\n\r\n")).unwrap();
    let body: String = part[body_start..]
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty() && !l.starts_with("--"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("a base64 attachment")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voicemail_is_e_mailed_as_mp3_and_a_mailer_outage_loses_nothing() {
    let smtp_port = support::free_port();
    let switch = Switch::start_with(
        "",
        &format!(
            "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\nsmtp_tls = \"none\"\n"
        ),
    )
    .await;
    switch.site.ok(&[
        "account",
        "add",
        "dave",
        "--password",
        "dave-pw",
        "--email",
        "dave@example.com",
    ]);
    switch
        .site
        .ok(&["account", "set", "dave", "--voicemail-email", "on"]);
    // The SMTP server is down while the message is left.
    let (ok, trace) = leave_voicemail(&switch, "dave", 2000);
    assert!(ok, "deposit failed:\n{trace}\n{}", switch.log());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !switch.log().contains("voicemail e-mail failed") {
        assert!(std::time::Instant::now() < deadline, "{}", switch.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It comes back: the message goes at the next retry (10 s).
    let smtp = support::smtp::SmtpSink::start_on(smtp_port).await;
    let mail = smtp.next(&mut Vec::new()).await;
    assert!(mail.contains("To: dave@example.com"), "{mail}");
    assert!(mail.contains("New voicemail from"), "{mail}");
    assert!(mail.contains("alice"), "the caller is named: {mail}");
    let mp3 = attachment(&mail, "audio/mpeg");
    let (_, list) = voicemails(&switch, "dave");
    let stored = export(&switch, "dave", list[0].0);

    // Decoded by another program, it is the recording: same length, the tone.
    let mp3_file = switch.site.path("vm.mp3");
    let wav_file = switch.site.path("vm-from-mp3.wav");
    std::fs::write(&mp3_file, &mp3).unwrap();
    let status = std::process::Command::new("mpg123")
        .args(["-q", "-w"])
        .arg(&wav_file)
        .arg(&mp3_file)
        .status()
        .expect("mpg123 is needed: run scripts/setup.sh");
    assert!(status.success());
    let decoded = media::wav::read_file(&wav_file).expect("8 kHz mono 16-bit");
    let (got, want) = (decoded.len() as f64 / 8000.0, stored.len() as f64 / 8000.0);
    assert!(
        (got - want).abs() < 0.2,
        "the MP3 lasts {got} s, the recording {want} s"
    );
    let tone_secs = tone_blocks(&decoded, TONE_HZ) as f64 * 0.02;
    assert!(tone_secs >= 1.6, "{tone_secs} s of {TONE_HZ} Hz in the MP3");
    assert!(
        mail.contains(&format!(
            "of 0:{:02}",
            ((want * 1000.0).round() as i64 + 500) / 1000
        )),
        "the duration is in the text: {mail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_greeting_recorded_on_750_is_what_callers_then_hear() {
    let switch = Switch::start("").await;
    // carol records 2 s of tone after the prompt and the beep, falls silent
    // (the recording ends after 4 s of silence, trimmed), and keeps it with
    // 1, pressed while it plays back. (The pcaps' RTP timestamps only grow
    // from 1 to #, so # cannot come before 1 here.)
    let tone = media::tone::sine(TONE_HZ, 8000, Duration::from_millis(2000));
    let pcap = switch.site.path("greeting-tone.pcap");
    write_pcma_pcap(&pcap, &tone);
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let keys = format!(
        "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n\
         <pause milliseconds=\"7000\"/>\n\
         <nop><action><exec play_pcap_audio=\"/usr/share/sip-tester/dtmf_2833_1.pcap\"/></action></nop>\n",
        pcap.display()
    );
    // The prompt (4.0 s) and the beep (0.25 s) come first.
    let scenario = listen_scenario(&switch, &sink, &keys, 4400);
    let users = switch.users("carol.csv", "carol", "carol-pw");
    let (ok, trace) = sipp(
        &switch,
        &scenario,
        &["-inf", users.to_str().unwrap(), "-s", "750"],
    );
    assert!(ok, "750 call failed:\n{trace}\n{}", switch.log());
    // (What carol hears after she starts sending cannot be checked here:
    // the switch follows her RTP to SIPp's own media port, symmetric RTP.)
    drop(sink);

    // alice calls carol, who is offline: the greeting she hears is the tone
    // (the default greeting has none).
    let (ok, trace) = {
        let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = listen.local_addr().unwrap().port();
        let heard = std::thread::spawn(move || {
            collect_rtp(&listen, Duration::from_secs(2), Duration::from_secs(20))
        });
        let tone = media::tone::sine(TONE_HZ, 8000, Duration::from_millis(300));
        let pcap = switch.site.path("short.pcap");
        write_pcma_pcap(&pcap, &tone);
        let scenario = switch.variant_with(
            "ivr_deposit_uac.xml",
            &[
                ("MEDIA_PORT", &port.to_string()),
                ("TONE_PCAP", pcap.to_str().unwrap()),
                ("TONE_MS", "800"),
            ],
        );
        let users = switch.users("alice.csv", "alice", "alice-pw");
        let r = sipp(
            &switch,
            &scenario,
            &["-inf", users.to_str().unwrap(), "-s", "carol"],
        );
        let audio: Vec<i16> = heard
            .join()
            .unwrap()
            .iter()
            .map(|&b| media::g711::alaw_decode(b))
            .collect();
        // She presses 1 at 1.5 s (and the switch follows her RTP from then).
        let greeting_secs = tone_blocks(&audio[..12000.min(audio.len())], TONE_HZ) as f64 * 0.02;
        assert!(
            greeting_secs >= 1.0,
            "{greeting_secs} s of carol's tone at the start of her greeting\n{}",
            switch.log()
        );
        r
    };
    assert!(ok, "call to carol failed:\n{trace}\n{}", switch.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_nobody_answers_goes_to_voicemail_and_the_caller_hangs_up_cleanly() {
    let switch = Switch::start("").await;
    switch
        .site
        .ok(&["account", "set", "bob", "--no-answer-secs", "5"]);
    // bob's phone rings and is never picked up.
    let (_ringing, ring_trace) = support::sipp::device_with(
        &switch,
        "bob",
        "bob-pw",
        "u1",
        30_000,
        &support::sipp::scenario("call_uas_ring.xml"),
    );
    switch.wait_registered(1).await;
    // alice waits 9 s after the answer (the greeting, the beep, some
    // silence), then hangs up: her BYE reaches the voicemail's dialog.
    let users = switch.users("alice.csv", "alice", "alice-pw");
    let (ok, trace) = sipp(
        &switch,
        &support::sipp::scenario("call_uac.xml"),
        &["-inf", users.to_str().unwrap(), "-s", "bob", "-d", "9000"],
    );
    assert!(ok, "caller failed:\n{trace}\n{}", switch.log());
    assert!(
        std::fs::read_to_string(&ring_trace)
            .unwrap_or_default()
            .contains("CANCEL sip:"),
        "bob's phone stopped ringing"
    );
    wait_counts(&switch, "bob", "bob: 1 new, 0 heard", 10).await;
    for gauge in [
        "softswitch_ivr_runs",
        "softswitch_calls_active",
        "softswitch_sip_dialogs",
    ] {
        switch.wait_metric(gauge, |v| v == 0).await;
    }
    let cdrs = switch.site.ok(&["cdr", "list", "--login", "alice"]);
    assert_eq!(cdrs.lines().count(), 1, "one record per call: {cdrs}");
    assert!(cdrs.contains("\tanswered\t200\t"), "{cdrs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_leaves_a_voicemail_over_tls_and_hears_it_on_950() {
    let switch = Switch::start("").await;
    // alice's softphone (TLS, G.711, a 440 Hz sine as its microphone) calls
    // bob, who has no device; after the greeting and the beep she "speaks"
    // for a few seconds and hangs up.
    let alice =
        support::sipp::Baresip::start_with(&switch, "alice", "alice-pw", "", &["/dial bob"]);
    tokio::time::sleep(Duration::from_secs(9)).await;
    alice.quit();
    let id = wait_counts(&switch, "bob", "bob: 1 new, 0 heard", 10).await[0].0;
    let recording = export(&switch, "bob", id);
    let tone_secs = tone_blocks(&recording, TONE_HZ) as f64 * 0.02;
    assert!(
        tone_secs >= 1.5,
        "{tone_secs} s of baresip's sine in the message"
    );

    // bob's softphone dials 950: the message is played (and so marked
    // heard) and the switch ends the call after the menu. The record names
    // the service as the callee.
    let bob = support::sipp::Baresip::start_with(&switch, "bob", "bob-pw", "", &["/dial 950"]);
    wait_counts(&switch, "bob", "bob: 0 new, 1 heard", 30).await;
    switch.wait_metric("softswitch_ivr_runs", |v| v == 0).await;
    bob.quit();
    let cdrs = switch.site.ok(&["cdr", "list", "--login", "bob"]);
    assert!(
        cdrs.lines()
            .any(|l| l.contains("\tbob\tvoicemail\t") && l.contains("answered")),
        "{cdrs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offer_the_ivr_cannot_speak_gets_488_and_leaves_nothing_behind() {
    let switch = Switch::start("").await;
    // G.722 only: no codec of the endpoint (Opus, PCMU, PCMA).
    let scenario = switch.variant_with(
        "call_uac_fail.xml",
        &[
            ("<recv response=\"CODE\"", "<recv response=\"488\""),
            (
                "m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000",
                "m=audio [media_port] RTP/AVP 9\n      a=rtpmap:9 G722/8000",
            ),
        ],
    );
    let users = switch.users("alice.csv", "alice", "alice-pw");
    let (ok, trace) = sipp(
        &switch,
        &scenario,
        &["-inf", users.to_str().unwrap(), "-s", "950"],
    );
    assert!(ok, "expected 488:\n{trace}\n{}", switch.log());
    for gauge in [
        "softswitch_ivr_runs",
        "softswitch_calls_active",
        "softswitch_media_ports_in_use",
    ] {
        switch.wait_metric(gauge, |v| v == 0).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_with_mandatory_srtp_leaves_a_voicemail_the_switch_decrypted() {
    let switch = Switch::start("").await;
    // alice's softphone insists on SRTP (RTP/SAVP with SDES keys): before
    // the switch spoke it, the voicemail answered 488. Her sine reaches
    // the recording only if the switch authenticated and decrypted it.
    let alice = support::sipp::Baresip::start_opts(
        &switch,
        "alice",
        "alice-pw",
        &support::sipp::BaresipOptions {
            modules: &["srtp"],
            account_params: ";mediaenc=srtp-mand",
            commands: &["/dial bob"],
            verbose: true,
            ..support::sipp::BaresipOptions::default()
        },
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    alice.quit();
    let log =
        std::fs::read_to_string(switch.site.path("baresip-alice/stdout.log")).unwrap_or_default();
    let id = wait_counts(&switch, "bob", "bob: 1 new, 0 heard", 10).await[0].0;
    let recording = export(&switch, "bob", id);
    let tone_secs = tone_blocks(&recording, TONE_HZ) as f64 * 0.02;
    assert!(
        tone_secs >= 1.5,
        "{tone_secs} s of baresip's sine in the message\n{log}"
    );
    // The other way: baresip took the switch's answer as SRTP and every
    // packet of the greeting and beep it got authenticated and decrypted
    // (it drops and reports any that does not).
    assert!(log.contains("SRTP is Enabled"), "{log}");
    assert!(!log.contains("failed to decrypt"), "{log}");
    let cdrs = switch.site.ok(&["cdr", "list", "--login", "alice"]);
    assert!(cdrs.contains("\tanswered\t200\t"), "{cdrs}");
}

/// Answering rules by caller ID: bob sends alice straight to voicemail
/// with a greeting of her own (his phone does not even ring) and rejects
/// carol.
#[tokio::test(flavor = "multi_thread")]
async fn answering_rules_send_callers_to_voicemail_with_their_greeting_or_reject_them() {
    const GREETING_HZ: f64 = 600.0;
    let switch = Switch::start("").await;
    let greeting = switch.site.path("for-alice.wav");
    let tone = media::tone::sine(GREETING_HZ, 8000, Duration::from_millis(3000));
    std::fs::write(&greeting, media::wav::write(&tone).unwrap()).unwrap();
    let set = switch.site.ok(&[
        "voicemail",
        "rule",
        "bob",
        "alice",
        "voicemail",
        "--greeting",
        greeting.to_str().unwrap(),
    ]);
    assert!(set.contains("calls from alice voicemail"), "{set}");
    switch
        .site
        .ok(&["voicemail", "rule", "bob", "carol", "reject"]);
    let bad = switch
        .site
        .fails(&["voicemail", "rule", "bob", "dora", "maybe"]);
    assert!(
        bad.contains("ring, ring-only, voicemail or reject"),
        "{bad}"
    );
    let rules = switch.site.ok(&["voicemail", "rules", "bob"]);
    assert!(rules.contains("\talice\tvoicemail\tgreeting"), "{rules}");

    // bob's phone would ring (and never answer).
    let (_ringing, ring_trace) = support::sipp::device_with(
        &switch,
        "bob",
        "bob-pw",
        "u1",
        30_000,
        &support::sipp::scenario("call_uas_ring.xml"),
    );
    switch.wait_registered(1).await;

    // alice: voicemail at once; what she hears first is her greeting.
    let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = listen.local_addr().unwrap().port();
    let heard = std::thread::spawn(move || {
        collect_rtp(&listen, Duration::from_secs(2), Duration::from_secs(20))
    });
    let short = media::tone::sine(TONE_HZ, 8000, Duration::from_millis(300));
    let pcap = switch.site.path("short.pcap");
    write_pcma_pcap(&pcap, &short);
    let scenario = switch.variant_with(
        "ivr_deposit_uac.xml",
        &[
            ("MEDIA_PORT", &port.to_string()),
            ("TONE_PCAP", pcap.to_str().unwrap()),
            ("TONE_MS", "800"),
        ],
    );
    let users = switch.users("alice.csv", "alice", "alice-pw");
    let (ok, trace) = sipp(
        &switch,
        &scenario,
        &["-inf", users.to_str().unwrap(), "-s", "bob"],
    );
    assert!(ok, "alice's call failed:\n{trace}\n{}", switch.log());
    let audio: Vec<i16> = heard
        .join()
        .unwrap()
        .iter()
        .map(|&b| media::g711::alaw_decode(b))
        .collect();
    // She presses 1 at 1.5 s (and the switch follows her RTP from then).
    let greeting_secs = tone_blocks(&audio[..12000.min(audio.len())], GREETING_HZ) as f64 * 0.02;
    assert!(
        greeting_secs >= 1.0,
        "{greeting_secs} s of the greeting for alice\n{}",
        switch.log()
    );
    wait_counts(&switch, "bob", "bob: 1 new, 0 heard", 10).await;
    assert!(
        !std::fs::read_to_string(&ring_trace)
            .unwrap_or_default()
            .contains("INVITE sip:"),
        "bob's phone rang for alice"
    );

    // carol: declined at once.
    let reject = switch.variant(
        "call_uac_fail.xml",
        "<recv response=\"CODE\"",
        "<recv response=\"603\"",
    );
    let users = switch.users("carol.csv", "carol", "carol-pw");
    let (ok, trace) = sipp(
        &switch,
        &reject,
        &["-inf", users.to_str().unwrap(), "-s", "bob"],
    );
    assert!(ok, "carol was not declined:\n{trace}\n{}", switch.log());
    assert!(
        !std::fs::read_to_string(&ring_trace)
            .unwrap_or_default()
            .contains("INVITE sip:"),
        "bob's phone rang for carol"
    );
    let cdrs = switch.site.ok(&["cdr", "list", "--login", "carol"]);
    assert!(cdrs.contains("\t603\t"), "{cdrs}");
}
