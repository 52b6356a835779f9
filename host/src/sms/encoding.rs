//! Which data coding a text needs on the air (3GPP TS 23.038): the GSM
//! 7-bit default alphabet when every character is in it or in its
//! extension table, UCS-2 otherwise. Provider guests of
//! `softswitch:sms-provider@0.2.0` get it in `message.encoding`, so none of
//! them carries these tables (and each gets them wrong its own way).

/// How a text is coded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GSM 7-bit: 160 characters in one SMS, 153 per part of a longer one.
    Gsm7,
    /// UCS-2: 70 UTF-16 units in one SMS, 67 per part.
    Ucs2,
}

/// The characters of the GSM 7-bit default alphabet and its extension table
/// outside printable ASCII, which are all in it but the backquote (the
/// extension table holds `^ { } \ [ ~ ] |`).
const GSM7_NON_ASCII: &str = "£¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà€";

impl Encoding {
    /// The coding `text` needs.
    pub fn of(text: &str) -> Self {
        if text.chars().all(in_gsm7) {
            Encoding::Gsm7
        } else {
            Encoding::Ucs2
        }
    }

    /// Its name in the WIT (`gsm7`, `ucs2`), for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

fn in_gsm7(c: char) -> bool {
    match c {
        // Line feed, carriage return (basic table), form feed (extension).
        '\n' | '\r' | '\x0c' => true,
        '`' => false,
        ' '..='~' => true,
        _ => GSM7_NON_ASCII.contains(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_western_european_texts_are_gsm7() {
        for text in [
            "",
            "Your verification code is 1234",
            "Café à Paris, Åse & Søren: 5 € [promo] {x} ~^|\\",
            "line one\nline two\r\n",
            "Ñoño ¿qué? ¡olé! §3 £5 ¥9 ¤",
            "ΔΦΓΛΩΠΨΣΘΞ",
        ] {
            assert_eq!(Encoding::of(text), Encoding::Gsm7, "{text:?}");
        }
    }

    #[test]
    fn anything_outside_the_tables_needs_ucs2() {
        // `ó`, `ú` (only `ò` and `ù` are in), `ł`, `ç` (only `Ç` is in), the
        // backquote, lower-case Greek, Cyrillic, an emoji, a tab.
        for text in [
            "Twój kod: 1234",
            "Ñandú",
            "łódź",
            "ça va",
            "run `ls`",
            "αβγ",
            "Ваш код 1234",
            "ok 👍",
            "a\tb",
        ] {
            assert_eq!(Encoding::of(text), Encoding::Ucs2, "{text:?}");
        }
        assert_eq!(Encoding::Ucs2.as_str(), "ucs2");
        assert_eq!(Encoding::Gsm7.as_str(), "gsm7");
    }
}
