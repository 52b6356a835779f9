//! System commands clients send each other in MESSAGE bodies (SPEC §5, §7):
//! content type `application/vnd.softswitch.command+json`, a JSON object
//! with a `command` name. The switch stores and delivers them like any
//! message (never announcing them by push), and refuses the malformed ones
//! before anything is stored, so a recipient never gets a command it cannot
//! read.
//!
//! `location` (SPEC §7): `{"command": "location", "lat": -90..90,
//! "lon": -180..180, "accuracy": metres >= 0 (optional), "label": text of
//! at most 256 characters (optional)}`.

use serde_json::Value;

/// Why a command is refused (the reason phrase of the 400).
pub fn check(body: &[u8]) -> Result<(), &'static str> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err("Bad Request - a system command is a JSON object");
    };
    let Some(command) = map.get("command").and_then(Value::as_str) else {
        return Err("Bad Request - a system command has a command name");
    };
    if command == "location" {
        let number = |k: &str| map.get(k).and_then(Value::as_f64);
        match (number("lat"), number("lon")) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {}
            _ => return Err("Bad Request - location needs lat in -90..90 and lon in -180..180"),
        }
        if let Some(a) = map.get("accuracy")
            && !a.as_f64().is_some_and(|a| a >= 0.0 && a.is_finite())
        {
            return Err("Bad Request - location accuracy is metres, 0 or more");
        }
        if let Some(label) = map.get("label")
            && !label
                .as_str()
                .is_some_and(|l| l.chars().count() <= 256 && !l.chars().any(char::is_control))
        {
            return Err("Bad Request - location label is text of at most 256 characters");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn locations_are_checked_and_other_commands_need_a_name() {
        for ok in [
            r#"{"command":"location","lat":52.23,"lon":21.01}"#,
            r#"{"command":"location","lat":-90,"lon":180,"accuracy":12.5,"label":"Home"}"#,
            r#"{"command":"contacts-add","id":"c1"}"#,
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
        for bad in [
            "not json",
            "[1,2]",
            r#"{"id":"c1"}"#,
            r#"{"command":"location","lat":91,"lon":0}"#,
            r#"{"command":"location","lat":"52","lon":21}"#,
            r#"{"command":"location","lat":1,"lon":1,"accuracy":-3}"#,
            r#"{"command":"location","lat":1,"lon":1,"label":"a\nb"}"#,
        ] {
            assert!(check(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
