//! Symmetric encryption of secrets kept at rest (today: SIP passwords).
//!
//! SIP passwords cannot be hashed: digest authentication needs the clear
//! password on the server, and the login API hands it back to the handset
//! (SPEC §3). So they are encrypted with AES-256-GCM under a key that lives in
//! a file beside the data, never in the database: a database dump alone does
//! not reveal them. Access (web) passwords are only ever verified, so the store
//! hashes those with argon2 instead.
//!
//! Ciphertext format: `v1:` + lowercase hex of `nonce (12 bytes) ‖ ciphertext
//! ‖ tag (16 bytes)`. The version prefix leaves room for key rotation or a
//! different algorithm later without guessing at old values.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Length of the key in bytes (AES-256).
pub const KEY_LEN: usize = 32;

const PREFIX_V1: &str = "v1:";
const TAG_LEN: usize = 16;

/// Errors from loading keys and from encrypting or decrypting secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The key file could not be read, created or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The key is not 64 hex digits (32 bytes).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A value to decrypt is not in the `v1:<hex>` format or is too short.
    #[error("malformed ciphertext: {0}")]
    Malformed(String),
    /// Authentication failed: the value was altered or encrypted under
    /// another key.
    #[error("decryption failed: wrong key or tampered ciphertext")]
    Decrypt,
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Rng,
}

/// A 256-bit key for AES-256-GCM. Cheap to share behind an `Arc`.
pub struct Secrets {
    key: LessSafeKey,
    /// Derives the other keys of the node (digest nonces), so one file holds
    /// every secret and nodes sharing it agree on all of them.
    derive: ring::hmac::Key,
    rng: SystemRandom,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material, not even part of it.
        f.debug_struct("Secrets")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Secrets {
    /// Builds from raw key bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, SecretError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| SecretError::InvalidKey("AES-256-GCM rejected the key".into()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            derive: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes),
            rng: SystemRandom::new(),
        })
    }

    /// Builds from 64 hex digits; surrounding whitespace (a trailing newline
    /// in a hand-written key file) is ignored.
    pub fn from_hex(hex_key: &str) -> Result<Self, SecretError> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(hex_key.trim(), &mut bytes).map_err(|e| {
            SecretError::InvalidKey(format!("expected {} hex digits: {e}", KEY_LEN * 2))
        })?;
        Self::from_bytes(&bytes)
    }

    /// A 256-bit key for another purpose, derived from this one
    /// (HMAC-SHA256 of `label`): never the encryption key itself.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.derive, label.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// A fresh random key (tests, or callers that manage storage themselves).
    pub fn generate() -> Result<Self, SecretError> {
        Self::from_bytes(&random_key()?)
    }

    /// Loads the hex key at `path`, or creates it with a fresh random key if
    /// the file does not exist. A new file is created with mode 0600 (on
    /// Unix) so only the service user can read it; parent directories are
    /// created as needed.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let io_err = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        match fs::read_to_string(path) {
            Ok(text) => return Self::from_hex(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }

        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        let key = random_key()?;
        let mut options = fs::OpenOptions::new();
        // create_new: if another process created the file since we looked,
        // use its key rather than overwrite it (which would orphan every
        // password it already encrypted).
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut file) => {
                let written = file
                    .write_all(format!("{}\n", hex::encode(key)).as_bytes())
                    .and_then(|()| file.sync_all());
                if let Err(e) = written {
                    // A half-written key file would fail every later start;
                    // better to leave none and report.
                    let _ = fs::remove_file(path);
                    return Err(io_err(e));
                }
                tracing::info!(path = %path.display(), "created a new secrets key file");
                Self::from_bytes(&key)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(path).map_err(io_err)?;
                Self::from_hex(&text)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Encrypts `plaintext` under a fresh random nonce.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random number generator fails, which
    /// leaves no safe way to continue (reusing a nonce would break GCM).
    pub fn encrypt(&self, plaintext: &str) -> String {
        match self.try_encrypt(plaintext) {
            Ok(s) => s,
            Err(e) => panic!("cannot encrypt a secret: {e}"),
        }
    }

    /// Like [`Secrets::encrypt`], but reports a random number generator
    /// failure instead of panicking.
    pub fn try_encrypt(&self, plaintext: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Rng)?;
        let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext.as_bytes());
        let mut sealed = buf.split_off(NONCE_LEN);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            // Only fails for inputs beyond GCM's ~64 GiB limit.
            .map_err(|_| SecretError::Malformed("plaintext too long".into()))?;
        buf.extend_from_slice(&sealed);
        Ok(format!("{PREFIX_V1}{}", hex::encode(buf)))
    }

    /// Decrypts a value produced by [`Secrets::encrypt`].
    pub fn decrypt(&self, ciphertext: &str) -> Result<String, SecretError> {
        let hex_part = ciphertext
            .strip_prefix(PREFIX_V1)
            .ok_or_else(|| SecretError::Malformed("missing `v1:` prefix".into()))?;
        let mut raw =
            hex::decode(hex_part).map_err(|e| SecretError::Malformed(format!("not hex: {e}")))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed(format!(
                "{} bytes, at least {} expected",
                raw.len(),
                NONCE_LEN + TAG_LEN
            )));
        }
        let mut sealed = raw.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&raw)
            .map_err(|_| SecretError::Malformed("bad nonce".into()))?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| SecretError::Malformed("plaintext is not UTF-8".into()))
    }
}

fn random_key() -> Result<[u8; KEY_LEN], SecretError> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| SecretError::Rng)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Secrets::generate().unwrap();
        for clear in ["", "hunter2", "pässwörd with spaces ✓"] {
            let enc = s.encrypt(clear);
            assert!(enc.starts_with("v1:"));
            assert!(!enc.contains(clear) || clear.is_empty());
            assert_eq!(s.decrypt(&enc).unwrap(), clear);
        }
    }

    #[test]
    fn nonces_differ() {
        let s = Secrets::generate().unwrap();
        assert_ne!(s.encrypt("same"), s.encrypt("same"));
    }

    #[test]
    fn tamper_detected() {
        let s = Secrets::generate().unwrap();
        let enc = s.encrypt("secret");
        let mut raw = hex::decode(enc.strip_prefix("v1:").unwrap()).unwrap();
        // Flip one bit in the nonce, the ciphertext and the tag in turn.
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 0x01;
            let forged = format!("v1:{}", hex::encode(&raw));
            assert!(matches!(s.decrypt(&forged), Err(SecretError::Decrypt)));
            raw[i] ^= 0x01;
        }
        // Truncation is caught as well.
        let short = &enc[..enc.len() - 2];
        assert!(matches!(s.decrypt(short), Err(SecretError::Decrypt)));
    }

    #[test]
    fn wrong_key_fails() {
        let a = Secrets::generate().unwrap();
        let b = Secrets::generate().unwrap();
        let enc = a.encrypt("secret");
        assert!(matches!(b.decrypt(&enc), Err(SecretError::Decrypt)));
    }

    #[test]
    fn malformed_input() {
        let s = Secrets::generate().unwrap();
        for bad in ["", "secret", "v2:00", "v1:zz", "v1:00ff"] {
            assert!(
                matches!(s.decrypt(bad), Err(SecretError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn hex_key_parsing() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let a = Secrets::from_hex(hex_key).unwrap();
        let b = Secrets::from_hex(&format!("  {hex_key}\n")).unwrap();
        assert_eq!(b.decrypt(&a.encrypt("x")).unwrap(), "x");
        assert!(matches!(
            Secrets::from_hex("abcd"),
            Err(SecretError::InvalidKey(_))
        ));
        assert!(matches!(
            Secrets::from_hex(&hex_key.replace('0', "g")),
            Err(SecretError::InvalidKey(_))
        ));
    }

    #[test]
    fn debug_hides_key() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let s = Secrets::from_hex(hex_key).unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("0011") && !shown.to_lowercase().contains("aabb"));
    }

    #[test]
    fn load_or_create_persists_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secrets.key");
        let first = Secrets::load_or_create(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), KEY_LEN * 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = Secrets::load_or_create(&path).unwrap();
        assert_eq!(second.decrypt(&first.encrypt("kept")).unwrap(), "kept");
    }

    #[test]
    fn load_rejects_bad_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            Secrets::load_or_create(&path),
            Err(SecretError::InvalidKey(_))
        ));
    }
}
