//! The API's clock: Unix seconds, optionally shifted by a number read from a
//! file (`api.clock_offset_file`). The shift exists so that tests of the
//! time rules (the 60 s resend wait) can move time forward without sleeping;
//! with no file configured it is the system clock.

use std::path::PathBuf;

/// Seconds since the epoch, as the sign-up rules see them.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_file: Option<PathBuf>,
}

impl Clock {
    pub fn new(offset_file: &str) -> Self {
        Self {
            offset_file: (!offset_file.is_empty()).then(|| PathBuf::from(offset_file)),
        }
    }

    /// Now, shifted by the file's offset (a missing or unreadable file is 0).
    pub fn now(&self) -> i64 {
        let offset = self
            .offset_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        crate::store::now_secs().saturating_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_file_moves_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("offset");
        let clock = Clock::new(file.to_str().unwrap());
        let before = clock.now();
        std::fs::write(&file, "61\n").unwrap();
        let after = clock.now();
        assert!((61..=63).contains(&(after - before)), "{before} {after}");
        assert!(Clock::new("").now() <= crate::store::now_secs());
    }
}
