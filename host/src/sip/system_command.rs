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
//!
//! `file` (SPEC §7): `{"command": "file", "id": the 32 hex digits the upload
//! returned, "type": its content type (one of the shared-file types),
//! "size": bytes (optional), "name": text (optional)}`. Unlike the other
//! commands it is announced by push (as a picture, video or audio), since
//! the seed's file messages inherit the chat's pushes.

use serde_json::Value;

/// Why a command is refused (the reason phrase of the 400).
pub fn check(body: &[u8]) -> Result<(), &'static str> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err("Bad Request - a system command is a JSON object");
    };
    let Some(command) = map.get("command").and_then(Value::as_str) else {
        return Err("Bad Request - a system command has a command name");
    };
    if command == "file" {
        return check_file(&map);
    }
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

fn check_file(map: &serde_json::Map<String, Value>) -> Result<(), &'static str> {
    let id_ok = map
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    if !id_ok {
        return Err("Bad Request - file needs the id its upload returned");
    }
    let type_ok = map
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| crate::api::files::FILE_TYPES.contains(&t));
    if !type_ok {
        return Err("Bad Request - file needs its type, one of the shared-file types");
    }
    if map.get("size").is_some_and(|n| n.as_u64().is_none()) {
        return Err("Bad Request - file size is bytes, 0 or more");
    }
    if let Some(name) = map.get("name")
        && !name
            .as_str()
            .is_some_and(|n| n.chars().count() <= 255 && !n.chars().any(char::is_control))
    {
        return Err("Bad Request - file name is text of at most 255 characters");
    }
    Ok(())
}

/// The content type of the file a `file` command shares (`None` for any
/// other body): what its push announces.
pub fn shared_file_type(body: &[u8]) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    if map.get("command").and_then(Value::as_str) != Some("file") {
        return None;
    }
    map.get("type").and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::{check, shared_file_type};

    const ID: &str = "0123456789abcdef0123456789ABCDEF";

    #[test]
    fn file_commands_name_an_upload_and_its_type() {
        let ok = format!(
            r#"{{"command":"file","id":"{ID}","type":"image/jpeg","size":1234,"name":"cat.jpg"}}"#
        );
        assert_eq!(check(ok.as_bytes()), Ok(()));
        assert_eq!(
            shared_file_type(ok.as_bytes()).as_deref(),
            Some("image/jpeg")
        );
        assert_eq!(
            shared_file_type(br#"{"command":"location","lat":1,"lon":1}"#),
            None
        );
        for bad in [
            r#"{"command":"file","type":"image/jpeg"}"#.to_string(),
            format!(
                r#"{{"command":"file","id":"{}","type":"image/jpeg"}}"#,
                &ID[1..]
            ),
            format!(r#"{{"command":"file","id":"{ID}","type":"text/html"}}"#),
            format!(r#"{{"command":"file","id":"{ID}","type":"image/png","size":-1}}"#),
            format!(
                r#"{{"command":"file","id":"{ID}","type":"image/png","name":"a
b"}}"#
            ),
        ] {
            assert!(check(bad.as_bytes()).is_err(), "{bad}");
        }
    }

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
