use super::script::{Input, ScriptedCall};
use super::*;

fn facts(service: &str, args: &[&str], caller: &str) -> Facts {
    Facts {
        service: service.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        caller_login: caller.into(),
        caller_id: caller.into(),
        callee: "950".into(),
        language: "en".into(),
        ..Facts::default()
    }
}

fn lines(call: &ScriptedCall) -> Vec<&str> {
    call.transcript.iter().map(String::as_str).collect()
}

#[test]
fn code_readout_says_the_code_twice_and_hangs_up() {
    let mut call = ScriptedCall::new([]);
    code_readout(&mut call, &facts("code-readout", &["4711"], "")).unwrap();
    assert_eq!(
        lines(&call),
        [
            "answer",
            "pause 700",
            "play code-intro",
            "say-digits 4711",
            "pause 600",
            "play code-repeat",
            "say-digits 4711",
            "pause 400",
            "play goodbye",
            "hangup 200",
        ]
    );
}

#[test]
fn code_readout_stops_when_the_callee_hangs_up() {
    let mut call = ScriptedCall::new([Input::HangUp]);
    let r = code_readout(&mut call, &facts("code-readout", &["4711"], ""));
    assert_eq!(r, Err(Error::HungUp));
    assert_eq!(lines(&call), ["answer"]);
}

#[test]
fn code_readout_without_a_code_refuses_the_call() {
    let mut call = ScriptedCall::new([]);
    let r = code_readout(&mut call, &facts("code-readout", &[], ""));
    assert!(matches!(r, Err(Error::Invalid(_))));
    assert_eq!(
        lines(&call),
        ["log code-readout without a code", "hangup 500"]
    );
}

#[test]
fn a_deposit_plays_the_greeting_records_and_stores() {
    let mut call = ScriptedCall::new([Input::Speak {
        ms: 4200,
        end: RecordEnd::Silence,
    }])
    .with_box("bob", &[]);
    voicemail_deposit(&mut call, &facts("voicemail-deposit", &["bob"], "alice")).unwrap();
    assert_eq!(
        lines(&call),
        [
            "answer",
            "play greeting vm-greeting-default",
            "record max=120s beep=true",
            "  recording:101 4200ms Silence",
            "deposit recording:101 into bob",
            "play vm-message-saved",
            "hangup 200",
        ]
    );
    assert_eq!(call.boxes["bob"].messages.len(), 1);
}

#[test]
fn a_caller_who_hangs_up_while_recording_still_leaves_the_message() {
    let mut call = ScriptedCall::new([Input::Speak {
        ms: 3000,
        end: RecordEnd::HungUp,
    }])
    .with_box("bob", &[]);
    call.hung_up = false;
    voicemail_deposit(&mut call, &facts("voicemail-deposit", &["bob"], "alice")).unwrap();
    assert_eq!(call.boxes["bob"].messages.len(), 1);
    assert!(!lines(&call).contains(&"play vm-message-saved"));
}

#[test]
fn a_hang_up_at_the_beep_leaves_nothing() {
    let mut call = ScriptedCall::new([Input::Speak {
        ms: 200,
        end: RecordEnd::HungUp,
    }])
    .with_box("bob", &[]);
    voicemail_deposit(&mut call, &facts("voicemail-deposit", &["bob"], "alice")).unwrap();
    assert!(call.boxes["bob"].messages.is_empty());
}

#[test]
fn the_greeting_can_be_skipped_with_a_key_and_config_sets_the_limits() {
    let mut call = ScriptedCall::new([
        Input::Key('5'),
        Input::Speak {
            ms: 1000,
            end: RecordEnd::FinishKey,
        },
    ])
    .with_box("bob", &[]);
    call.config.insert("max-seconds".into(), "30".into());
    voicemail_deposit(&mut call, &facts("voicemail-deposit", &["bob"], "alice")).unwrap();
    assert_eq!(
        &lines(&call)[1..4],
        [
            "play greeting vm-greeting-default",
            "  interrupted by 5",
            "record max=30s beep=true"
        ]
    );
}

#[test]
fn a_deposit_to_a_box_the_call_does_not_grant_is_refused() {
    let mut call = ScriptedCall::new([]);
    let r = voicemail_deposit(&mut call, &facts("voicemail-deposit", &["bob"], "alice"));
    assert!(matches!(r, Err(Error::Forbidden(_))));
    assert_eq!(lines(&call), ["hangup 480"]);
}

#[test]
fn access_counts_then_plays_new_before_saved_with_the_menu() {
    // 3 heard (saved), 1 and 2 new; keys: delete the first, save the second,
    // next on the third.
    let mut call = ScriptedCall::new([Input::Key('7'), Input::Key('9'), Input::Key('#')])
        .with_box("alice", &[(1, false), (2, false), (3, true)]);
    voicemail_access(&mut call, &facts("voicemail", &["alice"], "alice")).unwrap();
    assert_eq!(
        lines(&call),
        [
            "answer",
            "play vm-you-have",
            "say-number 2",
            "play vm-new-messages",
            "play vm-and",
            "say-number 1",
            "play vm-saved-message",
            "play vm-message",
            "play voicemail:1",
            "  interrupted by 7",
            "heard 1",
            "delete 1",
            "play vm-deleted",
            "play vm-message",
            "play voicemail:2",
            "  interrupted by 9",
            "heard 2",
            "play vm-saved",
            "play vm-message",
            "play voicemail:3",
            "  interrupted by #",
            "play vm-end-of-messages",
            "play goodbye",
            "hangup 200",
        ]
    );
    assert_eq!(call.boxes["alice"].messages.len(), 2);
    assert!(call.boxes["alice"].messages.iter().all(|m| m.heard));
}

#[test]
fn one_repeats_the_message_and_a_silent_menu_moves_on() {
    let mut call = ScriptedCall::new([Input::Key('1')]).with_box("alice", &[(5, false)]);
    voicemail_access(&mut call, &facts("voicemail", &["alice"], "alice")).unwrap();
    let l = lines(&call);
    assert_eq!(
        l.iter().filter(|s| **s == "play voicemail:5").count(),
        2,
        "{l:?}"
    );
    assert_eq!(l.iter().filter(|s| **s == "heard 5").count(), 1, "{l:?}");
    // The second time nobody pressed anything: the menu, then the end.
    assert_eq!(
        &l[l.len() - 4..],
        [
            "gather vm-menu",
            "play vm-end-of-messages",
            "play goodbye",
            "hangup 200"
        ]
    );
}

#[test]
fn an_empty_box_says_so() {
    let mut call = ScriptedCall::new([]).with_box("alice", &[]);
    voicemail_access(&mut call, &facts("voicemail", &["alice"], "alice")).unwrap();
    assert_eq!(
        lines(&call),
        [
            "answer",
            "play vm-no-messages",
            "play goodbye",
            "hangup 200"
        ]
    );
}

#[test]
fn playback_by_id_plays_only_that_message_of_the_callers_own_box() {
    let mut call =
        ScriptedCall::new([Input::Key('#')]).with_box("alice", &[(7, false), (8, false)]);
    voicemail_access(
        &mut call,
        &facts("voicemail-playback", &["alice", "8"], "alice"),
    )
    .unwrap();
    let l = lines(&call);
    assert!(l.contains(&"play voicemail:8"), "{l:?}");
    assert!(!l.contains(&"play voicemail:7"), "{l:?}");
    assert!(
        !l.contains(&"play vm-you-have"),
        "no counts for a direct playback"
    );

    let mut call = ScriptedCall::new([]).with_box("alice", &[(7, false)]);
    voicemail_access(
        &mut call,
        &facts("voicemail-playback", &["alice", "99"], "alice"),
    )
    .unwrap();
    assert_eq!(
        lines(&call),
        ["answer", "play vm-not-found goodbye", "hangup 200"]
    );
}

#[test]
fn access_to_a_box_not_granted_plays_the_error() {
    let mut call = ScriptedCall::new([]);
    let r = voicemail_access(&mut call, &facts("voicemail", &["mallory"], ""));
    assert!(matches!(r, Err(Error::Forbidden(_))));
    assert_eq!(lines(&call), ["answer", "play error", "hangup 200"]);
}

#[test]
fn a_greeting_is_recorded_played_back_and_kept_with_1() {
    let mut call = ScriptedCall::new([
        Input::Speak {
            ms: 2500,
            end: RecordEnd::FinishKey,
        },
        Input::Key('2'),
        Input::Speak {
            ms: 3100,
            end: RecordEnd::Silence,
        },
        Input::Key('1'),
    ])
    .with_box("alice", &[]);
    greeting(&mut call, &facts("greeting", &["alice"], "alice")).unwrap();
    assert_eq!(
        lines(&call),
        [
            "answer",
            "play vm-record-greeting",
            "record max=60s beep=true",
            "  recording:101 2500ms FinishKey",
            "gather recording:101 silence:300 vm-greeting-menu",
            "play vm-record-greeting",
            "record max=60s beep=true",
            "  recording:102 3100ms Silence",
            "gather recording:102 silence:300 vm-greeting-menu",
            "save-greeting recording:102",
            "play vm-greeting-saved goodbye",
            "hangup 200",
        ]
    );
    assert_eq!(call.boxes["alice"].greeting, Some(102));
}

#[test]
fn a_greeting_never_confirmed_is_not_kept() {
    let mut call = ScriptedCall::new([
        Input::Speak {
            ms: 2500,
            end: RecordEnd::FinishKey,
        },
        Input::Wait,
        Input::Wait,
        Input::Wait,
    ])
    .with_box("alice", &[]);
    greeting(&mut call, &facts("greeting", &["alice"], "alice")).unwrap();
    assert_eq!(call.boxes["alice"].greeting, None);
    assert_eq!(
        lines(&call)
            .iter()
            .filter(|l| l.starts_with("gather"))
            .count(),
        3
    );
    assert_eq!(lines(&call).last(), Some(&"hangup 200"));
}
