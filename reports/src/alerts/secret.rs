//! The webhook signing secret: read from the environment or a file, never shown.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AlertError;

/// The variable holding the webhook secret itself.
pub const SECRET_ENV: &str = "AGENTMETER_WEBHOOK_SECRET";

/// The variable naming a file that holds the webhook secret (read when [`SECRET_ENV`] is not
/// set).
pub const SECRET_FILE_ENV: &str = "AGENTMETER_WEBHOOK_SECRET_FILE";

/// The prefix of the `X-Agentmeter-Signature` value.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// Secret files larger than this are refused (a secret is a few dozen bytes; this bounds a
/// mistake such as pointing at a log file or `/dev/zero`).
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

type HmacSha256 = Hmac<Sha256>;

/// The shared secret webhooks are signed with (HMAC-SHA256, see the [module
/// docs](super#webhook-signatures)).
///
/// `Debug` and `Display` print `[redacted]`; nothing in this module puts the bytes in a log,
/// an error or a report.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes. An empty secret signs but proves nothing; [`Secret::from_env`]
    /// refuses one.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// Reads the secret from `AGENTMETER_WEBHOOK_SECRET`, else from the file named by
    /// `AGENTMETER_WEBHOOK_SECRET_FILE` (its bytes, trailing `\n` and `\r` trimmed).
    /// `Ok(None)` when neither is set: webhooks then go unsigned.
    ///
    /// # Errors
    ///
    /// [`AlertError::Secret`] when the variable is set but empty or not UTF-8, or the file is
    /// empty or too large (over 64 KiB); [`AlertError::SecretFile`] when the file cannot be
    /// read. Errors name the variable and the file, never the value.
    pub fn from_env() -> Result<Option<Self>, AlertError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// [`Secret::from_env`] over any variable lookup (tests cannot set variables: the
    /// workspace forbids `unsafe`).
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Option<Self>, AlertError> {
        if let Some(value) = lookup(SECRET_ENV) {
            let value = value
                .into_string()
                .map_err(|_| AlertError::Secret { variable: SECRET_ENV, reason: "is not UTF-8" })?;
            if value.is_empty() {
                return Err(AlertError::Secret {
                    variable: SECRET_ENV,
                    reason: "is set but empty",
                });
            }
            return Ok(Some(Self(value.into_bytes())));
        }
        let Some(path) = lookup(SECRET_FILE_ENV) else {
            return Ok(None);
        };
        if path.is_empty() {
            return Err(AlertError::Secret {
                variable: SECRET_FILE_ENV,
                reason: "is set but empty (it should name a file)",
            });
        }
        let path = PathBuf::from(path);
        let file_error = |source| AlertError::SecretFile {
            variable: SECRET_FILE_ENV,
            path: path.clone(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|file| file.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(file_error)?;
        if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
            return Err(AlertError::Secret {
                variable: SECRET_FILE_ENV,
                reason: "names a file larger than 64 KiB, which cannot be a secret",
            });
        }
        while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(AlertError::Secret {
                variable: SECRET_FILE_ENV,
                reason: "names an empty file (after trimming the trailing newline)",
            });
        }
        Ok(Some(Self(bytes)))
    }

    /// The `X-Agentmeter-Signature` value for a request: `sha256=` and the lowercase hex
    /// HMAC-SHA256, keyed with this secret, of `"<timestamp>.<body>"`.
    pub fn signature(&self, timestamp: &str, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("{SIGNATURE_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks a received `X-Agentmeter-Signature` value against the timestamp header and
    /// the raw body, in constant time. Does not check the timestamp's age: a receiver
    /// should also reject timestamps too far from its clock (say 5 minutes).
    pub fn verify(&self, timestamp: &str, body: &[u8], signature: &str) -> bool {
        let Some(expected) =
            signature.strip_prefix(SIGNATURE_PREFIX).and_then(|digest| hex::decode(digest).ok())
        else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length (longer ones are hashed first), so `new_from_slice`
        // cannot fail for `Hmac<Sha256>`.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
