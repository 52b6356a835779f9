//! RFC 3842 `application/simple-message-summary` bodies.

use crate::store::presence::MailboxCounts;

/// The body for `account` (`sip:login@domain`).
pub fn summary(account: &str, counts: MailboxCounts) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: {account}\r\nVoice-Message: {}/{} (0/0)\r\n",
        if counts.new > 0 { "yes" } else { "no" },
        counts.new,
        counts.old
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_format() {
        assert_eq!(
            summary("sip:alice@localhost", MailboxCounts { new: 2, old: 1 }),
            "Messages-Waiting: yes\r\nMessage-Account: sip:alice@localhost\r\nVoice-Message: 2/1 (0/0)\r\n"
        );
        assert!(summary("sip:a@b", MailboxCounts::default()).starts_with("Messages-Waiting: no"));
    }
}
