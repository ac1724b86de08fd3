//! S3 as a source (`aws-sdk-s3`): the objects under `s3://bucket/prefix` (Firehose output of
//! concatenated gzip payloads, NDJSON, OTLP files), listed with every page and downloaded
//! one by one to a local file, where the same format detection and decoding as for local
//! files applies. Which objects are done (key and ETag) is the caller's to remember.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use tokio::io::AsyncWriteExt;

/// Attempts to fetch an object whose body was cut off in the middle.
const BODY_ATTEMPTS: u32 = 6;

/// A parsed `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix (may be empty).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket[/prefix]`.
    ///
    /// # Errors
    ///
    /// A message naming what is wrong.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri.strip_prefix("s3://").ok_or_else(|| format!("{uri}: expected s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(format!("{uri}: {bucket:?} is not an S3 bucket name"));
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }

    /// `s3://bucket/prefix`.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// The URI of one object.
    pub fn object_uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// Its key.
    pub key: String,
    /// Its ETag (changes when the object is replaced).
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An S3 failure that retrying did not fix.
#[derive(Debug, thiserror::Error)]
#[error("S3 {operation} on {target}: {detail}")]
pub struct S3Error {
    /// The API operation.
    pub operation: &'static str,
    /// The bucket, prefix or object.
    pub target: String,
    /// What AWS said, or the transport error.
    pub detail: String,
}

/// An S3 client for a custom endpoint (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`: an
/// emulator, MinIO) uses path-style addressing, which such endpoints need; AWS itself gets
/// virtual-hosted style.
pub fn client(config: &aws_config::SdkConfig) -> Client {
    let custom = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    let conf = aws_sdk_s3::config::Builder::from(config).force_path_style(custom).build();
    Client::from_conf(conf)
}

/// Every object under the location, in key order (every `ListObjectsV2` page).
///
/// # Errors
///
/// A page cannot be listed (after the SDK's retries).
pub async fn list(client: &Client, loc: &S3Location) -> Result<Vec<S3Object>, S3Error> {
    let pages: Vec<_> = client
        .list_objects_v2()
        .bucket(&loc.bucket)
        .prefix(&loc.prefix)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| S3Error {
            operation: "ListObjectsV2",
            target: loc.uri(),
            detail: crate::aws_error::describe(&e),
        })?;
    let mut out = Vec::new();
    for page in &pages {
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            // "Directories" made by consoles are empty keys ending in '/'.
            if key.ends_with('/') {
                continue;
            }
            out.push(S3Object {
                key: key.to_owned(),
                etag: o.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Downloads one object (the version with `etag`) to `to`, streaming; returns its size.
///
/// # Errors
///
/// The object cannot be read after every retry (or changed since it was listed), or the file
/// cannot be written.
pub async fn download(
    client: &Client,
    loc: &S3Location,
    obj: &S3Object,
    to: &Path,
) -> Result<u64, S3Error> {
    let target = loc.object_uri(&obj.key);
    let fail = |detail: String| S3Error { operation: "GetObject", target: target.clone(), detail };
    // The SDK retries the request; a body cut off in the middle is fetched again here.
    let mut attempt = 0;
    loop {
        let mut req = client.get_object().bucket(&loc.bucket).key(&obj.key);
        if !obj.etag.is_empty() {
            req = req.if_match(format!("\"{}\"", obj.etag));
        }
        let resp = req.send().await.map_err(|e| fail(crate::aws_error::describe(&e)))?;
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(|e| fail(format!("{}: {e}", to.display())))?;
        let mut body = resp.body;
        let mut written = 0u64;
        let streamed: Result<(), String> = async {
            while let Some(chunk) = body.try_next().await.map_err(|e| e.to_string())? {
                file.write_all(&chunk).await.map_err(|e| format!("{}: {e}", to.display()))?;
                written += chunk.len() as u64;
            }
            file.flush().await.map_err(|e| format!("{}: {e}", to.display()))
        }
        .await;
        match streamed {
            Ok(()) => return Ok(written),
            Err(detail) => {
                attempt += 1;
                if attempt >= BODY_ATTEMPTS {
                    return Err(fail(detail));
                }
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(6))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_bad_buckets_are_refused() {
        let l = S3Location::parse("s3://usage-logs/firehose/2026/").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("usage-logs", "firehose/2026/"));
        assert_eq!(l.object_uri("firehose/2026/a.gz"), "s3://usage-logs/firehose/2026/a.gz");
        assert_eq!(S3Location::parse("s3://usage-logs").unwrap().prefix, "");
        assert!(
            S3Location::parse("s3://Bad_Bucket/x").unwrap_err().contains("not an S3 bucket name")
        );
        assert!(S3Location::parse("s3:///x").unwrap_err().contains("not an S3 bucket name"));
    }
}
