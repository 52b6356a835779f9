//! Voice prompts: 8 kHz mono 16-bit WAV files, one folder per language
//! (`prompts/en/digit-4.wav`), read once and kept in memory.
//!
//! A prompt missing from a language's folder is taken from `en/`, so an
//! operator can translate prompts one at a time. Names are checked before
//! they touch the file system: a guest cannot read `../../etc/passwd`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The language every other one falls back to.
pub const FALLBACK_LANGUAGE: &str = "en";

/// Why a prompt could not be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PromptError {
    /// The name or language has characters outside `a-z0-9-_`.
    #[error("invalid prompt name {0:?}")]
    InvalidName(String),
    /// No such file in the language's folder nor in `en/`.
    #[error("prompt {0:?} not found")]
    NotFound(String),
    /// The file is there but is not 8 kHz mono 16-bit PCM WAV.
    #[error("prompt {name:?} unusable: {reason}")]
    Unusable { name: String, reason: String },
}

/// Decoded samples by (language, name).
type Cache = HashMap<(String, String), Arc<[i16]>>;

/// Decoded prompts by (language, name).
pub struct Prompts {
    dir: PathBuf,
    cache: Mutex<Cache>,
}

fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Prompts {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The folder prompts are read from.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The samples of `name` in `language`, else in English.
    pub fn get(&self, language: &str, name: &str) -> Result<Arc<[i16]>, PromptError> {
        if !valid(name) {
            return Err(PromptError::InvalidName(name.into()));
        }
        let language = if valid(language) {
            language
        } else {
            FALLBACK_LANGUAGE
        };
        let key = (language.to_owned(), name.to_owned());
        if let Some(samples) = self.lock().get(&key) {
            return Ok(samples.clone());
        }
        let mut languages = vec![language];
        if language != FALLBACK_LANGUAGE {
            languages.push(FALLBACK_LANGUAGE);
        }
        for lang in languages {
            let path = self.dir.join(lang).join(format!("{name}.wav"));
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(PromptError::Unusable {
                        name: name.into(),
                        reason: e.to_string(),
                    });
                }
            };
            let samples: Arc<[i16]> = media::wav::read(&bytes)
                .map_err(|e| PromptError::Unusable {
                    name: name.into(),
                    reason: e.to_string(),
                })?
                .into();
            self.lock().insert(key, samples.clone());
            return Ok(samples);
        }
        Err(PromptError::NotFound(name.into()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The prompts that say `n` in English (`342` → three hundred forty two).
/// Other languages use the same names with their own recordings, which fits
/// the languages whose numbers are built the same way; a guest can always
/// say numbers its own way with `play`.
pub fn number_prompts(n: u32) -> Vec<String> {
    fn below_thousand(n: u32, out: &mut Vec<String>) {
        let (hundreds, rest) = (n / 100, n % 100);
        if hundreds > 0 {
            out.push(format!("digit-{hundreds}"));
            out.push("num-hundred".into());
        }
        match rest {
            0 => {}
            1..=9 => out.push(format!("digit-{rest}")),
            10..=19 => out.push(format!("num-{rest}")),
            _ => {
                out.push(format!("num-{}", rest / 10 * 10));
                if rest % 10 > 0 {
                    out.push(format!("digit-{}", rest % 10));
                }
            }
        }
    }
    if n == 0 {
        return vec!["digit-0".into()];
    }
    let mut out = Vec::new();
    let (thousands, rest) = (n / 1000, n % 1000);
    if thousands > 0 {
        below_thousand(thousands, &mut out);
        out.push("num-thousand".into());
    }
    below_thousand(rest, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_said_with_the_shipped_prompt_names() {
        let said = |n| number_prompts(n).join(" ");
        assert_eq!(said(0), "digit-0");
        assert_eq!(said(7), "digit-7");
        assert_eq!(said(13), "num-13");
        assert_eq!(said(40), "num-40");
        assert_eq!(said(342), "digit-3 num-hundred num-40 digit-2");
        assert_eq!(said(1000), "digit-1 num-thousand");
        assert_eq!(
            said(999_999),
            "digit-9 num-hundred num-90 digit-9 num-thousand digit-9 num-hundred num-90 digit-9"
        );
        // Every name used exists in the shipped English prompts.
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prompts/en");
        for n in [0, 5, 11, 19, 20, 99, 100, 101, 110, 1000, 123_456] {
            for name in number_prompts(n) {
                assert!(dir.join(format!("{name}.wav")).is_file(), "{name}");
            }
        }
    }

    #[test]
    fn prompts_fall_back_to_english_and_refuse_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("en")).unwrap();
        std::fs::create_dir_all(dir.path().join("de")).unwrap();
        let wav = |samples: &[i16]| media::wav::write(samples).unwrap();
        std::fs::write(dir.path().join("en/hello.wav"), wav(&[1, 2, 3])).unwrap();
        std::fs::write(dir.path().join("de/hello.wav"), wav(&[4, 5])).unwrap();
        std::fs::write(dir.path().join("en/bye.wav"), wav(&[6])).unwrap();
        std::fs::write(dir.path().join("en/broken.wav"), b"not a wav").unwrap();
        let p = Prompts::new(dir.path());
        assert_eq!(&*p.get("de", "hello").unwrap(), &[4, 5]);
        assert_eq!(&*p.get("de", "bye").unwrap(), &[6], "English stands in");
        assert_eq!(&*p.get("en", "hello").unwrap(), &[1, 2, 3]);
        assert_eq!(
            p.get("en", "nothing"),
            Err(PromptError::NotFound("nothing".into()))
        );
        assert!(matches!(
            p.get("en", "broken"),
            Err(PromptError::Unusable { .. })
        ));
        for bad in ["../en/hello", "Hello", "", "a/b", "x.wav"] {
            assert_eq!(p.get("en", bad), Err(PromptError::InvalidName(bad.into())));
        }
        // A language that is not a folder name is English.
        assert_eq!(&*p.get("../../etc", "hello").unwrap(), &[1, 2, 3]);
    }
}
