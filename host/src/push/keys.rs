//! The keys push guests sign with, which never enter a guest: APNs provider
//! tokens (ES256 JWT, RFC 7519/7518) and FCM's OAuth 2.0 access tokens
//! (RS256 JWT bearer grant, RFC 7523, at the service account's `token_uri`).
//!
//! Signed tokens are cached: APNs refuses provider tokens renewed more often
//! than every 20 minutes (`TooManyProviderTokenUpdates`), and an OAuth token
//! is good for an hour, so one token serves every push until shortly before
//! it expires.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

/// `[push.keys.NAME]`: one signing key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    /// A PEM private key (PKCS#8: an APNs `.p8` is EC P-256, or RSA), or a
    /// Google service-account JSON file (its `private_key`, `client_email`
    /// and `token_uri` are used). Relative to the config file's folder.
    pub path: String,
    /// `kid` of the JWT header (the APNs key id); a service account's
    /// `private_key_id` when empty.
    pub key_id: String,
}

/// Why a key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("push key {name}: cannot read {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("push key {name}: {message}")]
    Invalid { name: String, message: String },
}

enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl Signer {
    fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Rs256(_) => "RS256",
        }
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::Es256(k) => k
                .sign(rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ES256 signing failed".to_string()),
            Self::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, rng, message, &mut sig)
                    .map_err(|_| "RS256 signing failed".to_string())?;
                Ok(sig)
            }
        }
    }
}

/// The parts of a Google service-account file the OAuth grant needs.
#[derive(Deserialize)]
struct ServiceAccountFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

struct ServiceAccount {
    client_email: String,
    token_uri: String,
}

struct Key {
    signer: Signer,
    kid: Option<String>,
    account: Option<ServiceAccount>,
}

/// Tokens are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// Every configured key, with the caches of what was signed with them.
pub struct PushKeys {
    keys: BTreeMap<String, Key>,
    rng: SystemRandom,
    jwts: std::sync::Mutex<HashMap<(String, String), (String, Instant)>>,
    /// Held across a token fetch, so concurrent pushes wait for one fetch.
    oauth: tokio::sync::Mutex<HashMap<(String, String), (String, Instant)>>,
    client: reqwest::Client,
    /// Fetches of OAuth tokens, for the tests and `/metrics`.
    pub oauth_fetches: std::sync::atomic::AtomicU64,
    /// OAuth tokens given outright, by key name: only `softswitch guest
    /// test` ([`PushKeys::for_guest_test`]) has any, since it has no
    /// network to fetch them; the switch's keys come from config only.
    given_tokens: BTreeMap<String, String>,
}

fn parse_key(name: &str, pem: &[u8]) -> Result<Signer, KeyError> {
    let invalid = |message: String| KeyError::Invalid {
        name: name.to_string(),
        message,
    };
    let der = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| invalid(format!("not a PEM private key: {e}")))?;
    let PrivateKeyDer::Pkcs8(pkcs8) = der else {
        return Err(invalid("the key must be PKCS#8 (BEGIN PRIVATE KEY)".into()));
    };
    let bytes = pkcs8.secret_pkcs8_der();
    let rng = SystemRandom::new();
    if let Ok(k) =
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, bytes, &rng)
    {
        return Ok(Signer::Es256(k));
    }
    RsaKeyPair::from_pkcs8(bytes)
        .map(Signer::Rs256)
        .map_err(|e| invalid(format!("neither an EC P-256 nor an RSA key: {e}")))
}

fn load_key(name: &str, config: &KeyConfig) -> Result<Key, KeyError> {
    let path = Path::new(&config.path);
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let kid = |fallback: &str| {
        let k = if config.key_id.is_empty() {
            fallback
        } else {
            &config.key_id
        };
        (!k.is_empty()).then(|| k.to_string())
    };
    if bytes.trim_ascii_start().starts_with(b"{") {
        let file: ServiceAccountFile =
            serde_json::from_slice(&bytes).map_err(|e| KeyError::Invalid {
                name: name.to_string(),
                message: format!("not a service-account JSON file: {e}"),
            })?;
        return Ok(Key {
            signer: parse_key(name, file.private_key.as_bytes())?,
            kid: kid(&file.private_key_id),
            account: Some(ServiceAccount {
                client_email: file.client_email,
                token_uri: file.token_uri,
            }),
        });
    }
    Ok(Key {
        signer: parse_key(name, &bytes)?,
        kid: kid(""),
        account: None,
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl PushKeys {
    /// Loads every key (paths as resolved by `Config::load`).
    pub fn load(
        configs: &BTreeMap<String, KeyConfig>,
        client: reqwest::Client,
    ) -> Result<Self, KeyError> {
        let mut keys = BTreeMap::new();
        for (name, c) in configs {
            keys.insert(name.clone(), load_key(name, c)?);
        }
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
            jwts: Default::default(),
            oauth: Default::default(),
            client,
            oauth_fetches: Default::default(),
            given_tokens: BTreeMap::new(),
        })
    }

    /// The keys of `softswitch guest test`: a throwaway EC P-256 key under
    /// each name of `sign_keys` (its name as `kid`), so JWTs are really
    /// signed, and the OAuth tokens of `tokens` handed out by key name as
    /// the switch would have fetched them.
    pub fn for_guest_test(
        sign_keys: &[String],
        tokens: BTreeMap<String, String>,
    ) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let mut keys = BTreeMap::new();
        for name in sign_keys {
            let invalid = |message: &str| KeyError::Invalid {
                name: name.clone(),
                message: message.to_string(),
            };
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
                .map_err(|_| invalid("cannot make a test key"))?;
            let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
                .map_err(|_| invalid("cannot read the test key"))?;
            keys.insert(
                name.clone(),
                Key {
                    signer: Signer::Es256(pair),
                    kid: Some(name.clone()),
                    account: None,
                },
            );
        }
        Ok(Self {
            keys,
            rng,
            jwts: Default::default(),
            oauth: Default::default(),
            client: reqwest::Client::new(),
            oauth_fetches: Default::default(),
            given_tokens: tokens,
        })
    }

    fn key(&self, name: &str) -> Result<&Key, String> {
        self.keys
            .get(name)
            .ok_or_else(|| format!("no push key named {name:?} is configured"))
    }

    /// A JWT over `claims` (a JSON object) with `iat` added, signed by key
    /// `name`; the same one again for up to `max_age`.
    pub fn sign_jwt(&self, name: &str, claims: &str, max_age: Duration) -> Result<String, String> {
        let cache_key = (name.to_string(), claims.to_string());
        if let Some((jwt, at)) = self
            .jwts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
            && at.elapsed() < max_age
        {
            return Ok(jwt.clone());
        }
        let serde_json::Value::Object(mut map) =
            serde_json::from_str(claims).map_err(|e| format!("claims are not JSON: {e}"))?
        else {
            return Err("claims must be a JSON object".into());
        };
        map.insert("iat".into(), crate::store::now_secs().into());
        let jwt = self.sign(name, &serde_json::Value::Object(map))?;
        self.jwts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cache_key, (jwt.clone(), Instant::now()));
        Ok(jwt)
    }

    fn sign(&self, name: &str, claims: &serde_json::Value) -> Result<String, String> {
        let key = self.key(name)?;
        let mut header = serde_json::json!({ "alg": key.signer.alg(), "typ": "JWT" });
        if let Some(kid) = &key.kid {
            header["kid"] = kid.clone().into();
        }
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = key.signer.sign(&self.rng, signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", b64(&sig)))
    }

    /// An OAuth 2.0 access token for `scope` from key `name`'s service
    /// account, fetched once and reused until shortly before it expires.
    pub async fn oauth2_token(&self, name: &str, scope: &str) -> Result<String, String> {
        if let Some(token) = self.given_tokens.get(name) {
            return Ok(token.clone());
        }
        let key = self.key(name)?;
        let Some(account) = &key.account else {
            return Err(format!(
                "push key {name:?} is not a service-account file: no OAuth grant"
            ));
        };
        let cache_key = (name.to_string(), scope.to_string());
        let mut cache = self.oauth.lock().await;
        if let Some((token, until)) = cache.get(&cache_key)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let now = crate::store::now_secs();
        let claims = serde_json::json!({
            "iss": account.client_email,
            "scope": scope,
            "aud": account.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let assertion = self.sign(name, &claims)?;
        self.oauth_fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = self
            .client
            .post(&account.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", &assertion),
            ])
            .send()
            .await
            .map_err(|e| format!("OAuth token request failed: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("OAuth token endpoint answered HTTP {status}"));
        }
        #[derive(Deserialize)]
        struct Granted {
            access_token: String,
            #[serde(default = "an_hour")]
            expires_in: u64,
        }
        fn an_hour() -> u64 {
            3600
        }
        let granted: Granted = response
            .json()
            .await
            .map_err(|e| format!("OAuth token answer unreadable: {}", e.without_url()))?;
        let lifetime = Duration::from_secs(granted.expires_in)
            .saturating_sub(RENEW_BEFORE)
            .max(Duration::from_secs(30));
        cache.insert(
            cache_key,
            (granted.access_token.clone(), Instant::now() + lifetime),
        );
        tracing::info!(
            key = name,
            expires_in = granted.expires_in,
            "OAuth access token obtained"
        );
        Ok(granted.access_token)
    }

    /// Forgets every cached token (a service refused one: an OAuth token
    /// revoked, an APNs provider token "expired"): the next push signs or
    /// fetches a fresh one.
    pub async fn forget_cached(&self) {
        self.jwts.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.oauth.lock().await.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn verify(jwt: &str, public: &[u8], alg: &'static dyn signature::VerificationAlgorithm) {
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        signature::UnparsedPublicKey::new(alg, public)
            .verify(input.as_bytes(), &sig)
            .expect("signature verifies");
    }

    fn part(jwt: &str, i: usize) -> serde_json::Value {
        let p = jwt.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    #[test]
    fn an_apns_key_signs_es256_tokens_that_verify_and_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let path = write(dir.path(), "AuthKey.p8", &key.serialize_pem());
        let configs = BTreeMap::from([(
            "apns".to_string(),
            KeyConfig {
                path,
                key_id: "KEY123".into(),
            },
        )]);
        let keys = PushKeys::load(&configs, reqwest::Client::new()).unwrap();
        let claims = r#"{"iss":"TEAM42"}"#;
        let jwt = keys
            .sign_jwt("apns", claims, Duration::from_secs(1800))
            .unwrap();
        verify(
            &jwt,
            key.public_key_raw(),
            &signature::ECDSA_P256_SHA256_FIXED,
        );
        assert_eq!(
            part(&jwt, 0),
            serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "KEY123"})
        );
        assert_eq!(part(&jwt, 1)["iss"], "TEAM42");
        assert!(part(&jwt, 1)["iat"].as_i64().unwrap() > 1_700_000_000);
        let again = keys
            .sign_jwt("apns", claims, Duration::from_secs(1800))
            .unwrap();
        assert_eq!(jwt, again, "reused within max-age");
        assert!(keys.sign_jwt("nope", claims, Duration::ZERO).is_err());
        assert!(keys.sign_jwt("apns", "[1]", Duration::ZERO).is_err());
    }

    #[test]
    fn bad_key_files_are_refused_with_the_key_name() {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in [("a.p8", "not a key"), ("b.json", "{\"x\":1}")] {
            let configs = BTreeMap::from([(
                "k".to_string(),
                KeyConfig {
                    path: write(dir.path(), file, text),
                    key_id: String::new(),
                },
            )]);
            let e = PushKeys::load(&configs, reqwest::Client::new())
                .err()
                .unwrap()
                .to_string();
            assert!(e.starts_with("push key k:"), "{e}");
        }
    }
}
