//! Who may call: bearer tokens from a file, checked on every call.
//!
//! The file holds one token per line (blank lines and `#` comments aside). It
//! is read again when it changes (its modification time or size, checked at
//! each call: one `stat`) and on SIGHUP, so a token is added or revoked
//! without a restart. A file that cannot be read allows no one until it can.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The tokens a server accepts.
pub struct Tokens {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

/// Shows the file, never the tokens.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Loaded {
    /// The file's (modification time, size) when read; `None` forces a read.
    stamp: Option<(SystemTime, u64)>,
    tokens: Vec<String>,
}

impl Tokens {
    /// Reads `path`; fails when it cannot be read or holds no token.
    pub fn open(path: &Path) -> Result<Self, String> {
        let tokens = Self {
            path: path.to_path_buf(),
            loaded: Mutex::default(),
        };
        let count = tokens.reload()?;
        if count == 0 {
            return Err(format!("token file {} holds no token", path.display()));
        }
        Ok(tokens)
    }

    /// Reads the file again at the next call (SIGHUP).
    pub fn expire(&self) {
        self.lock().stamp = None;
    }

    /// Whether `token` is one of the file's, the file read again first if it
    /// changed.
    pub fn allows(&self, token: &str) -> bool {
        if let Err(e) = self.refresh() {
            log::error!("{e}: refusing every call until it can be read");
            return false;
        }
        self.lock()
            .tokens
            .iter()
            .any(|known| same_secret(known.as_bytes(), token.as_bytes()))
    }

    fn refresh(&self) -> Result<(), String> {
        let stamp = stamp_of(&self.path)?;
        if self.lock().stamp != Some(stamp) {
            self.reload()?;
        }
        Ok(())
    }

    fn reload(&self) -> Result<usize, String> {
        let stamp = stamp_of(&self.path)?;
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read token file {}: {e}", self.path.display()))?;
        let tokens: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_string)
            .collect();
        let count = tokens.len();
        *self.lock() = Loaded {
            stamp: Some(stamp),
            tokens: tokens.clone(),
        };
        log::info!("token file {}: {count} tokens", self.path.display());
        Ok(count)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn stamp_of(path: &Path) -> Result<(SystemTime, u64), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Ok((modified, meta.len()))
}

/// Compares two secrets in time that depends on their lengths only, so a
/// caller cannot find a token byte by byte from response times.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The bearer token of a call, checked against `tokens`.
pub fn check_bearer(tokens: &Tokens, metadata: &MetadataMap) -> Result<(), Status> {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Status::unauthenticated(
                "no token: send `authorization: Bearer <token>` (a token from the server's \
                 --auth-token-file)",
            )
        })?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| {
            Status::unauthenticated("the authorization header is not `Bearer <token>`")
        })?;
    if tokens.allows(token.trim()) {
        Ok(())
    } else {
        Err(Status::unauthenticated("wrong token"))
    }
}

/// The token of a handshake with basic authentication: any user name, a token
/// as the password. Returns the token, which the client then sends as its
/// bearer token.
pub fn check_basic(tokens: &Tokens, metadata: &MetadataMap) -> Result<String, Status> {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Status::unauthenticated("handshake without credentials"))?;
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
        .ok_or_else(|| Status::unauthenticated("the handshake's header is not `Basic ...`"))?;
    // Padded or not: Go's Flight client (under ADBC) sends it unpadded.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| Status::unauthenticated("the handshake's credentials are not base64"))?;
    let (_user, password) = decoded.split_once(':').ok_or_else(|| {
        Status::unauthenticated("the handshake's credentials lack `user:password`")
    })?;
    if tokens.allows(password) {
        Ok(password.to_string())
    } else {
        Err(Status::unauthenticated("wrong token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_allowed_until_the_file_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# ember\nalpha\n\n beta \n").unwrap();
        let tokens = Tokens::open(&path).unwrap();
        assert!(tokens.allows("alpha") && tokens.allows("beta"));
        assert!(!tokens.allows("gamma") && !tokens.allows("alph") && !tokens.allows(""));
        std::fs::write(&path, "gamma\n").unwrap();
        tokens.expire();
        assert!(tokens.allows("gamma") && !tokens.allows("alpha"));
        std::fs::remove_file(&path).unwrap();
        assert!(!tokens.allows("gamma"), "an unreadable file allows no one");
        std::fs::write(&path, "\n# none\n").unwrap();
        assert!(Tokens::open(&path).unwrap_err().contains("holds no token"));
    }

    #[test]
    fn bearer_and_basic_headers_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "s3cret\n").unwrap();
        let tokens = Tokens::open(&path).unwrap();
        let with = |value: &str| {
            let mut metadata = MetadataMap::new();
            metadata.insert("authorization", value.parse().unwrap());
            metadata
        };
        assert!(check_bearer(&tokens, &with("Bearer s3cret")).is_ok());
        assert!(check_bearer(&tokens, &with("Bearer nope")).is_err());
        assert!(check_bearer(&tokens, &MetadataMap::new()).is_err());
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert_eq!(
            check_basic(&tokens, &with(&format!("Basic {basic}"))).unwrap(),
            "s3cret"
        );
        // "you:s3cret" is 10 bytes: padded with "==" unless the encoder leaves it out.
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("you:s3cret");
        assert!(!unpadded.ends_with('='));
        assert_eq!(
            check_basic(&tokens, &with(&format!("Basic {unpadded}"))).unwrap(),
            "s3cret"
        );
        let wrong = base64::engine::general_purpose::STANDARD.encode("anyone:nope");
        assert!(check_basic(&tokens, &with(&format!("Basic {wrong}"))).is_err());
    }
}
