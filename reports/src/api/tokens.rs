//! The usage API's bearer tokens: a TOML file of SHA-256 digests, each scoped to one tenant or
//! to every tenant (`"*"`, an operator). Only digests are stored, so the file can be read by
//! whoever deploys it without handing out the tokens.
//!
//! ```toml
//! [tokens]
//! "sha256:<hex of the token's SHA-256>" = "clinic-0001"
//! "sha256:<hex>" = "*"
//! ```

use std::path::Path;

use agentmeter_schemas::TenantId;
use sha2::{Digest, Sha256};

/// What a token may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant (`"*"`).
    Operator,
    /// This tenant alone.
    Tenant(TenantId),
}

impl Scope {
    /// Whether this scope may read `tenant`.
    pub fn allows(&self, tenant: &TenantId) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => t == tenant,
        }
    }
}

/// The tokens of an API token file.
#[derive(Debug, Clone, Default)]
pub struct ApiTokens {
    entries: Vec<([u8; 32], Scope)>,
}

/// The largest token file read: a file of a million tokens is a mistake.
const MAX_FILE_BYTES: u64 = 4 << 20;

impl ApiTokens {
    /// Reads and checks a token file; the message names the file and the entry at fault.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or [`ApiTokens::parse`] refuses it.
    pub fn load(path: &Path) -> Result<Self, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!("{}: larger than {MAX_FILE_BYTES} bytes", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a token file's text.
    ///
    /// # Errors
    ///
    /// Not TOML; a table other than `[tokens]`; a key that is not `sha256:` and 64 hex digits;
    /// a value that is neither `"*"` nor a valid tenant id; a digest listed twice; no token.
    pub fn parse(text: &str) -> Result<Self, String> {
        // toml's message quotes the line at fault, and the line may hold a token: only
        // where it is, and what is wrong in general terms.
        let doc: toml::Table = toml::from_str(text).map_err(|e| {
            let before = e.span().map_or("", |s| text.get(..s.start).unwrap_or(text));
            let line = before.matches('\n').count() + 1;
            format!("not TOML (line {line}): the line is not shown, as it may hold a token")
        })?;
        if let Some(other) = doc.keys().find(|k| *k != "tokens") {
            return Err(format!("unknown key {other:?}: the file holds one table, [tokens]"));
        }
        let Some(tokens) = doc.get("tokens") else {
            return Err("no [tokens] table".into());
        };
        let Some(tokens) = tokens.as_table() else {
            return Err("`tokens` must be a table: [tokens]".into());
        };
        let mut entries: Vec<([u8; 32], Scope)> = Vec::with_capacity(tokens.len());
        for (key, value) in tokens {
            let digest = parse_digest(key).ok_or_else(|| {
                // A key that is not even meant as a digest may be the token itself: it is
                // named by the entry's value instead.
                let shown = if key.starts_with("sha256:") {
                    format!("{:?}", shorten(key))
                } else {
                    let scope = value.as_str().map_or_else(
                        || format!("a {}", value.type_str()),
                        |v| format!("{:?}", shorten(v)),
                    );
                    format!("for {scope} (not shown, as it may be a token)")
                };
                format!(
                    "[tokens] key {shown} is not \"sha256:\" and the 64 hex digits of the token's \
                     SHA-256 (printf %s \"$TOKEN\" | sha256sum)"
                )
            })?;
            let scope = match value.as_str() {
                Some("*") => Scope::Operator,
                Some(t) => Scope::Tenant(TenantId::new(t).map_err(|e| {
                    format!(
                        "[tokens] {:?}: {e} (a tenant id, or \"*\" for every tenant)",
                        shorten(key)
                    )
                })?),
                None => {
                    return Err(format!(
                        "[tokens] {:?}: the value must be a tenant id string, or \"*\"",
                        shorten(key)
                    ));
                }
            };
            if entries.iter().any(|(d, _)| *d == digest) {
                return Err(format!("[tokens] {:?} is listed twice", shorten(key)));
            }
            entries.push((digest, scope));
        }
        if entries.is_empty() {
            return Err("[tokens] is empty: every request would be refused".into());
        }
        Ok(Self { entries })
    }

    /// The scope of the bearer token in an `Authorization` header value, if it is one of
    /// these. Every entry is compared, in constant time, whatever matches.
    pub fn scope(&self, authorization: Option<&str>) -> Option<&Scope> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if token.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (d, scope) in &self.entries {
            let diff = d.iter().zip(digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(scope);
            }
        }
        found
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds none (never true of a parsed file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The entry a message names, without echoing a long key whole.
fn shorten(key: &str) -> String {
    key.chars().take(80).collect()
}

fn parse_digest(key: &str) -> Option<[u8; 32]> {
    let hex_digits = key.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out).ok()?;
    Some(out)
}

/// The key a token file lists for `token`: `sha256:` and the hex of its SHA-256.
pub fn token_key(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str)]) -> String {
        let mut s = String::from("[tokens]\n");
        for (token, scope) in entries {
            s.push_str(&format!("{:?} = {scope:?}\n", token_key(token)));
        }
        s
    }

    #[test]
    fn each_token_reads_its_scope_and_nothing_else() {
        let t =
            ApiTokens::parse(&file(&[("tenant-secret", "clinic-a"), ("ops-secret", "*")])).unwrap();
        let a = TenantId::new("clinic-a").unwrap();
        let b = TenantId::new("clinic-b").unwrap();
        assert_eq!(t.scope(Some("Bearer tenant-secret")), Some(&Scope::Tenant(a.clone())));
        assert_eq!(t.scope(Some("Bearer ops-secret")), Some(&Scope::Operator));
        assert!(t.scope(Some("Bearer tenant-secret")).unwrap().allows(&a));
        assert!(!t.scope(Some("Bearer tenant-secret")).unwrap().allows(&b));
        assert!(t.scope(Some("Bearer ops-secret")).unwrap().allows(&b));
        assert_eq!(t.scope(Some("Bearer wrong")), None);
        assert_eq!(t.scope(Some("tenant-secret")), None);
        assert_eq!(t.scope(Some("Bearer ")), None);
        assert_eq!(t.scope(None), None);
    }

    #[test]
    fn the_key_is_the_sha256_of_the_token() {
        // printf %s test | sha256sum
        assert_eq!(
            token_key("test"),
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_entry_named() {
        let cases: &[(&str, &str)] = &[
            ("", "no [tokens] table"),
            ("[tokens]\n", "[tokens] is empty: every request would be refused"),
            ("tokens = 1\n", "`tokens` must be a table: [tokens]"),
            ("[other]\n", "unknown key \"other\": the file holds one table, [tokens]"),
            (
                "[tokens]\n\"abc\" = \"*\"\n",
                "[tokens] key for \"*\" (not shown, as it may be a token) is not \"sha256:\" and \
                 the 64 hex digits of the token's SHA-256 (printf %s \"$TOKEN\" | sha256sum)",
            ),
            (
                "[tokens]\n\"sha256:abc\" = \"*\"\n",
                "[tokens] key \"sha256:abc\" is not \"sha256:\" and the 64 hex digits of the \
                 token's SHA-256 (printf %s \"$TOKEN\" | sha256sum)",
            ),
            (
                "[tokens]\nsecret-token-1 = clinic-a\n",
                "not TOML (line 2): the line is not shown, as it may hold a token",
            ),
            (
                "[tokens]\nsecret-token-2 = \"*\"\nsecret-token-2 = \"*\"\n",
                "not TOML (line 3): the line is not shown, as it may hold a token",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(ApiTokens::parse(text).unwrap_err(), *want, "{text:?}");
        }
        let key = token_key("x");
        let bad_tenant = format!("[tokens]\n{key:?} = \"../etc\"\n");
        let e = ApiTokens::parse(&bad_tenant).unwrap_err();
        assert!(e.starts_with(&format!("[tokens] {key:?}: ")), "{e}");
        assert!(e.ends_with("(a tenant id, or \"*\" for every tenant)"), "{e}");
        let number = format!("[tokens]\n{key:?} = 3\n");
        assert_eq!(
            ApiTokens::parse(&number).unwrap_err(),
            format!("[tokens] {key:?}: the value must be a tenant id string, or \"*\"")
        );
        let upper = format!("[tokens]\n{:?} = \"*\"\n{:?} = \"a\"\n", key, key.to_uppercase());
        // Upper-case hex is the same digest: listed twice.
        let e = ApiTokens::parse(&upper.replace("SHA256", "sha256")).unwrap_err();
        assert!(e.ends_with("is listed twice"), "{e}");
    }
}
