//! What every service of a process shares: one async runtime for the AWS SDK, the SDK
//! configuration (loaded once, the standard way), and opening a lake from its location.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agentmeter_aggregate::Lake;
use agentmeter_aggregate::store::{S3Store, S3StoreOptions, Store};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::error::{Error, Result};

/// Attempts per AWS call before an error is returned (the SDK's standard retry: throttling,
/// 5xx, timeouts and transport errors, with exponential backoff and jitter).
pub const AWS_MAX_ATTEMPTS: u32 = 10;

/// Where a lake is: a local directory, or an S3 prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    /// A directory.
    Dir(PathBuf),
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix (may be empty).
        prefix: String,
    },
}

impl LakeLocation {
    /// `s3://bucket[/prefix]` or a path.
    ///
    /// # Errors
    ///
    /// A malformed `s3://` location, or another scheme, naming what is wrong.
    pub fn parse(text: &str) -> Result<Self> {
        if text.starts_with("s3://") {
            let loc = agentmeter_ingest::s3::S3Location::parse(text).map_err(Error::Usage)?;
            if loc.prefix.split('/').any(|p| p == ".." || p == ".") {
                return Err(Error::Usage(format!(
                    "{text}: the prefix must not hold . or .. parts"
                )));
            }
            return Ok(Self::S3 {
                bucket: loc.bucket,
                prefix: loc.prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(Error::Usage(format!(
                "{text}: a lake is a directory or s3://BUCKET/PREFIX, not {scheme}://"
            )));
        }
        if text.is_empty() {
            return Err(Error::Usage("the lake location is empty".into()));
        }
        Ok(Self::Dir(PathBuf::from(text)))
    }

    /// As given, for messages.
    pub fn display(&self) -> String {
        match self {
            Self::Dir(p) => p.display().to_string(),
            Self::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

impl std::fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// The runtime and AWS configuration of one process.
pub struct Env {
    rt: tokio::runtime::Runtime,
    sdk: OnceLock<SdkConfig>,
}

impl Env {
    /// A runtime with two workers (AWS calls are I/O; the work is on the callers' threads).
    ///
    /// # Errors
    ///
    /// The runtime cannot start.
    pub fn new() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("agentmeter-io")
            .build()
            .map_err(|e| Error::Io { what: "starting the async runtime".into(), source: e })?;
        Ok(Self { rt, sdk: OnceLock::new() })
    }

    /// The runtime.
    pub fn rt(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The SDK configuration, the standard way (credential chain, profile, region,
    /// `AWS_ENDPOINT_URL`), with the standard retry mode; loaded on first use. A region is
    /// required: streams, log groups and buckets are regional.
    ///
    /// # Errors
    ///
    /// No region is configured (a usage error).
    pub fn sdk(&self) -> Result<&SdkConfig> {
        if let Some(c) = self.sdk.get() {
            return Ok(c);
        }
        let config = self.rt.block_on(sdk_config())?;
        Ok(self.sdk.get_or_init(|| config))
    }

    /// Opens (creating it when new) the lake at `loc`.
    ///
    /// # Errors
    ///
    /// Not a lake, no AWS region for an S3 lake, or the store fails.
    pub fn open_lake(&self, loc: &LakeLocation) -> Result<Lake> {
        let sdk = match loc {
            LakeLocation::Dir(_) => None,
            LakeLocation::S3 { .. } => Some(self.sdk()?),
        };
        open_lake_on(self.rt.handle(), sdk, loc, true, cache_dir()?)
    }

    /// Opens a lake that must exist already.
    ///
    /// # Errors
    ///
    /// There is no lake there, or the store fails.
    pub fn existing_lake(&self, loc: &LakeLocation) -> Result<Lake> {
        let sdk = match loc {
            LakeLocation::Dir(_) => None,
            LakeLocation::S3 { .. } => Some(self.sdk()?),
        };
        open_lake_on(self.rt.handle(), sdk, loc, false, cache_dir()?)
    }
}

/// Opens the lake at `loc` with the runtime `handle` (an S3 lake's requests run there; call
/// from a thread that is not driving it), creating it when `create` and it is new.
///
/// # Errors
///
/// Not a lake (or none there, without `create`), no SDK configuration for an S3 lake, or the
/// store fails.
pub fn open_lake_on(
    handle: &tokio::runtime::Handle,
    sdk: Option<&SdkConfig>,
    loc: &LakeLocation,
    create: bool,
    cache: Option<(PathBuf, u64)>,
) -> Result<Lake> {
    let lake = match loc {
        LakeLocation::Dir(p) if p.is_file() => {
            return Err(Error::Usage(format!(
                "--lake {} is a file, not a lake directory",
                p.display()
            )));
        }
        LakeLocation::Dir(p) if create => Lake::open_dir(p),
        LakeLocation::Dir(p) => Lake::existing_dir(p),
        LakeLocation::S3 { bucket, prefix } => {
            let sdk = sdk.ok_or_else(|| {
                Error::Usage(format!("{loc}: an S3 lake needs an AWS configuration"))
            })?;
            let opts = S3StoreOptions { cache, ..Default::default() };
            let store: Arc<dyn Store> = Arc::new(S3Store::new(
                s3_client(sdk),
                bucket.clone(),
                prefix,
                handle.clone(),
                opts,
            ));
            if create { Lake::open(store) } else { Lake::existing(store) }
        }
    };
    lake.map_err(|e| lake_error(loc, e))
}

/// "Not a lake" is the user's to fix; the rest is the store's.
fn lake_error(loc: &LakeLocation, e: agentmeter_aggregate::Error) -> Error {
    match e {
        agentmeter_aggregate::Error::NotALake { reason, .. } => {
            Error::Usage(format!("--lake {loc}: {reason}"))
        }
        other => Error::Lake { what: format!("opening the lake {loc}"), source: other },
    }
}

/// The default size of the object cache of commands (`AGENTMETER_CACHE_MAX_BYTES`).
pub const CACHE_MAX_BYTES: u64 = 2 << 30;

/// Where immutable data files of S3 lakes are cached, and at most how many bytes:
/// `$AGENTMETER_CACHE_DIR` (else `default_dir`) and `$AGENTMETER_CACHE_MAX_BYTES` (else
/// `default_max`); `None` when the size is 0 or there is no directory.
///
/// # Errors
///
/// `AGENTMETER_CACHE_MAX_BYTES` is not a whole number of bytes (a usage error).
pub fn cache_from_env(
    default_dir: Option<PathBuf>,
    default_max: u64,
) -> Result<Option<(PathBuf, u64)>> {
    let max = match std::env::var("AGENTMETER_CACHE_MAX_BYTES") {
        Ok(v) => v.trim().parse::<u64>().map_err(|_| {
            Error::Usage(format!(
                "AGENTMETER_CACHE_MAX_BYTES={v:?} is not a number of bytes (0 turns the cache off)"
            ))
        })?,
        Err(_) => default_max,
    };
    if max == 0 {
        return Ok(None);
    }
    let dir = std::env::var_os("AGENTMETER_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or(default_dir);
    Ok(dir.map(|d| (d, max)))
}

/// The object cache of commands: `~/.cache/agentmeter/objects`, 2 GiB, unless the environment
/// says otherwise ([`cache_from_env`]).
///
/// # Errors
///
/// As [`cache_from_env`].
pub fn cache_dir() -> Result<Option<(PathBuf, u64)>> {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/agentmeter/objects"));
    cache_from_env(home, CACHE_MAX_BYTES)
}

/// The SDK configuration the standard way, with the standard retry mode.
///
/// # Errors
///
/// No region is configured.
pub async fn sdk_config() -> Result<SdkConfig> {
    let retry = RetryConfig::standard()
        .with_max_attempts(AWS_MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(20));
    let config = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry).load().await;
    if config.region().is_none() {
        return Err(Error::Usage(
            "no AWS region configured: set AWS_REGION (or a profile's region) for an S3 lake and for kinesis://, logs:// and s3:// sources".into(),
        ));
    }
    agentmeter_aggregate::aws_credentials::check(&config).await.map_err(Error::Usage)?;
    Ok(config)
}

/// An S3 client: path-style addressing for a custom endpoint (`AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_S3`: an emulator, MinIO), which such endpoints need.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    agentmeter_ingest::s3::client(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(LakeLocation::parse("lake").unwrap(), LakeLocation::Dir("lake".into()));
        assert_eq!(
            LakeLocation::parse("s3://lakes/acme/prod/").unwrap(),
            LakeLocation::S3 { bucket: "lakes".into(), prefix: "acme/prod".into() }
        );
        assert_eq!(
            LakeLocation::parse("s3://lakes").unwrap(),
            LakeLocation::S3 { bucket: "lakes".into(), prefix: String::new() }
        );
        let err = |t: &str| LakeLocation::parse(t).unwrap_err().to_string();
        assert!(
            err("s3://Bad_Bucket/x").contains("not an S3 bucket name"),
            "{}",
            err("s3://Bad_Bucket/x")
        );
        assert!(err("s3://lakes/a/../b").contains("must not hold"));
        assert!(err("gs://x/y").contains("not gs://"));
    }
}
