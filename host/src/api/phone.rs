//! Phone number normalisation (SPEC §4): E.164 without the leading `+`.
//! Every entry point that takes a number (sign-up, verification, status,
//! login) goes through [`normalize`].

/// Why a number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// Characters other than digits, `+` and separators.
    #[error("a phone number holds digits only (spaces, dashes, dots and brackets are ignored)")]
    NotDigits,
    /// A national number and no (valid) country code to complete it.
    #[error("a national number needs the user's country code (1 to 3 digits)")]
    NeedsCountryCode,
    /// Too short or too long for E.164 once normalised.
    #[error("a phone number has 7 to 15 digits with its country code")]
    Length,
}

/// E.164 allows 15 digits; fewer than 7 is no subscriber number anywhere.
const MIN_DIGITS: usize = 7;
const MAX_DIGITS: usize = 15;

/// Normalises `input` with the user's `country_code` (digits, e.g. `48`):
/// a `+`, `00` or `011` prefix is stripped; a single leading `0` is replaced
/// by the country code; otherwise the country code is prepended.
pub fn normalize(input: &str, country_code: Option<&str>) -> Result<String, PhoneError> {
    let cleaned: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
        .collect();
    let (international, rest) = if let Some(r) = cleaned.strip_prefix('+') {
        (true, r)
    } else if let Some(r) = cleaned.strip_prefix("00") {
        (true, r)
    } else if let Some(r) = cleaned.strip_prefix("011") {
        (true, r)
    } else {
        (false, cleaned.as_str())
    };
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PhoneError::NotDigits);
    }
    let number = if international {
        rest.to_string()
    } else {
        let cc = country_code
            .map(|c| c.trim().trim_start_matches('+'))
            .filter(|c| {
                (1..=3).contains(&c.len())
                    && c.bytes().all(|b| b.is_ascii_digit())
                    && !c.starts_with('0')
            })
            .ok_or(PhoneError::NeedsCountryCode)?;
        match rest.strip_prefix('0') {
            Some(national) => format!("{cc}{national}"),
            None => format!("{cc}{rest}"),
        }
    };
    if number.starts_with('0') || !(MIN_DIGITS..=MAX_DIGITS).contains(&number.len()) {
        return Err(PhoneError::Length);
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(normalize("0600345698", Some("48")).unwrap(), "48600345698");
        assert_eq!(normalize("600456789", Some("48")).unwrap(), "48600456789");
    }

    #[test]
    fn international_prefixes_are_stripped() {
        for input in [
            "+48600345698",
            "0048600345698",
            "01148600345698",
            "+48 600-345.698",
        ] {
            assert_eq!(normalize(input, None).unwrap(), "48600345698", "{input}");
            assert_eq!(
                normalize(input, Some("1")).unwrap(),
                "48600345698",
                "{input}"
            );
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(
            normalize("600456789", None),
            Err(PhoneError::NeedsCountryCode)
        );
        assert_eq!(
            normalize("600456789", Some("4a")),
            Err(PhoneError::NeedsCountryCode)
        );
        assert_eq!(
            normalize("600456789", Some("0")),
            Err(PhoneError::NeedsCountryCode)
        );
        assert_eq!(normalize("+48 600 x", None), Err(PhoneError::NotDigits));
        assert_eq!(normalize("", Some("48")), Err(PhoneError::NotDigits));
        assert_eq!(normalize("+", None), Err(PhoneError::NotDigits));
        assert_eq!(normalize("+123", None), Err(PhoneError::Length));
        assert_eq!(
            normalize("+1234567890123456", None),
            Err(PhoneError::Length)
        );
        assert_eq!(normalize("+0600345698", None), Err(PhoneError::Length));
    }
}
