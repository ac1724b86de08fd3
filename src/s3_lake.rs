//! `--lake s3://BUCKET/PREFIX`: a lake kept in S3, worked on through a local mirror.
//!
//! A command on an S3 lake takes the lake's lease (`PREFIX/_state/lease.json`, created with
//! `If-None-Match: *`, so two writers never hold it), brings the mirror up to date (objects
//! whose ETag changed), runs on the mirror exactly as on a local lake, then puts every file it
//! added or changed as a whole object (multipart above 64 MiB) under the same relative key,
//! deletes the objects of files it removed, and releases the lease. Keys are the local paths,
//! so they are deterministic: a retried push writes the same keys. Read-only commands skip the
//! lease and the push.
//!
//! The mirror is `$AGENTMETER_LAKE_CACHE/<bucket>-<digest>` (default
//! `~/.cache/agentmeter/lakes`); `.s3-manifest.json` in it records, per key, the ETag and the
//! content digest last seen in S3.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentmeter_ingest::s3::{self, S3Location};
use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::UsageError;

const MANIFEST: &str = ".s3-manifest.json";
const MIRROR_LOCK: &str = ".s3-mirror.lock";
const LEASE: &str = "_state/lease.json";
/// Files that stay local: the mirror's own lock and scratch space.
const LOCAL_ONLY: [&str; 3] = ["_state/lock", "_state/download", "_state/compact"];
const MULTIPART_ABOVE: u64 = 64 << 20;
const PART_SIZE: usize = 16 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Relative key to (ETag, blake3 of the content).
    objects: BTreeMap<String, (String, String)>,
}

/// An S3 lake being worked on.
pub struct S3Lake {
    loc: S3Location,
    client: aws_sdk_s3::Client,
    rt: tokio::runtime::Runtime,
    /// The local mirror.
    pub dir: PathBuf,
    leased: bool,
    /// Files larger than this go up in parts of `part_size` bytes.
    multipart_above: u64,
    part_size: usize,
}

fn key_of(loc: &S3Location, rel: &str) -> String {
    let prefix = loc.prefix.trim_end_matches('/');
    if prefix.is_empty() { rel.to_owned() } else { format!("{prefix}/{rel}") }
}

fn digest_file(path: &Path) -> anyhow::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(h.finalize().to_hex().to_string())
}

fn local_only(rel: &str) -> bool {
    rel == MANIFEST
        || rel == LEASE
        || LOCAL_ONLY.iter().any(|p| rel == *p || rel.starts_with(&format!("{p}/")))
        || rel.rsplit('/').next().is_some_and(|n| n.starts_with('.'))
}

/// Every file under `dir`, as relative `/`-separated paths.
fn files(dir: &Path) -> anyhow::Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                walk(root, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out).with_context(|| format!("listing {}", dir.display()))?;
    }
    out.sort();
    Ok(out)
}

impl S3Lake {
    /// Opens `uri` (`s3://bucket/prefix`): the client the standard way, and the mirror.
    ///
    /// # Errors
    ///
    /// A bad URI or no region (exit 2).
    pub fn open(uri: &str) -> anyhow::Result<S3Lake> {
        let loc = S3Location::parse(uri).map_err(UsageError)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let config = rt.block_on(crate::aws_ingest::sdk_config())?;
        let client = s3::client(&config);
        let cache =
            std::env::var_os("AGENTMETER_LAKE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
                let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
                home.join(".cache/agentmeter/lakes")
            });
        let digest =
            agentmeter_schemas::content_digest_hex(loc.uri().trim_end_matches('/').as_bytes());
        let dir = cache.join(format!("{}-{}", loc.bucket, &digest[..16]));
        Ok(S3Lake {
            loc,
            client,
            rt,
            dir,
            leased: false,
            multipart_above: MULTIPART_ABOVE,
            part_size: PART_SIZE,
        })
    }

    /// Takes the lease, or fails naming who holds it (exit 2).
    ///
    /// # Errors
    ///
    /// The lease is held, or S3 refuses.
    pub fn lease(&mut self) -> anyhow::Result<()> {
        let key = key_of(&self.loc, LEASE);
        let body = serde_json::json!({
            "pid": std::process::id(),
            "host": std::env::var("HOSTNAME").unwrap_or_default(),
            "since": chrono::Utc::now().to_rfc3339(),
        })
        .to_string();
        let put = self
            .client
            .put_object()
            .bucket(&self.loc.bucket)
            .key(&key)
            .if_none_match("*")
            .body(ByteStream::from(body.into_bytes()));
        match self.rt.block_on(put.send()) {
            Ok(_) => {
                self.leased = true;
                Ok(())
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                Err(UsageError(format!(
                    "lake {} is in use by another writer (lease s3://{}/{key}); wait for it, or delete the lease if its holder is gone",
                    self.loc.uri(),
                    self.loc.bucket
                ))
                .into())
            }
            Err(e) => Err(anyhow::anyhow!(
                "taking the lease s3://{}/{key}: {}",
                self.loc.bucket,
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )),
        }
    }

    /// Releases the lease (if taken).
    pub fn release(&mut self) {
        if !self.leased {
            return;
        }
        let key = key_of(&self.loc, LEASE);
        let del = self.client.delete_object().bucket(&self.loc.bucket).key(&key);
        if let Err(e) = self.rt.block_on(del.send()) {
            tracing::error!(error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "Could not release the lake's lease; delete it by hand.");
        }
        self.leased = false;
    }

    fn manifest(&self) -> anyhow::Result<Manifest> {
        match std::fs::read(self.dir.join(MANIFEST)) {
            Ok(b) => serde_json::from_slice(&b).context("reading the mirror's manifest"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).context("reading the mirror's manifest"),
        }
    }

    fn save_manifest(&self, m: &Manifest) -> anyhow::Result<()> {
        let body = serde_json::to_vec(m).context("encoding the manifest")?;
        agentmeter_aggregate::fsio::write_atomic(&self.dir.join(MANIFEST), &body)
            .context("writing the mirror's manifest")
    }

    /// Brings the mirror up to date; returns the objects downloaded.
    ///
    /// # Errors
    ///
    /// S3 or the local disk fails.
    pub fn pull(&self) -> anyhow::Result<usize> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut manifest = self.manifest()?;
        let listed = self.rt.block_on(s3::list(&self.client, &self.loc))?;
        let prefix = key_of(&self.loc, "");
        let mut remote = BTreeMap::new();
        let mut downloaded = 0;
        for o in &listed {
            let rel = o.key.strip_prefix(&prefix).unwrap_or(&o.key).to_owned();
            if local_only(&rel) || rel.split('/').any(|p| p == ".." || p.is_empty()) {
                continue;
            }
            remote.insert(rel.clone(), ());
            let path = self.dir.join(&rel);
            let known = manifest.objects.get(&rel).is_some_and(|(etag, _)| *etag == o.etag);
            if known && path.exists() {
                continue;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            self.rt.block_on(s3::download(&self.client, &self.loc, o, &path))?;
            manifest.objects.insert(rel, (o.etag.clone(), digest_file(&path)?));
            downloaded += 1;
        }
        // Gone from S3 (compacted, replaced by another writer): gone here too.
        for rel in files(&self.dir)? {
            if !local_only(&rel) && !remote.contains_key(&rel) {
                let _ = std::fs::remove_file(self.dir.join(&rel));
                manifest.objects.remove(&rel);
            }
        }
        manifest.objects.retain(|k, _| remote.contains_key(k));
        self.save_manifest(&manifest)?;
        Ok(downloaded)
    }

    /// Puts what the command added or changed, deletes what it removed; returns (put, deleted).
    ///
    /// # Errors
    ///
    /// S3 or the local disk fails; the next push on this mirror finishes the job.
    pub fn push(&self) -> anyhow::Result<(usize, usize)> {
        let mut manifest = self.manifest()?;
        let local: Vec<String> = files(&self.dir)?.into_iter().filter(|r| !local_only(r)).collect();
        let (mut put, mut deleted) = (0, 0);
        for rel in &local {
            let path = self.dir.join(rel);
            let digest = digest_file(&path)?;
            if manifest.objects.get(rel).is_some_and(|(_, d)| *d == digest) {
                continue;
            }
            let etag = self.put(&key_of(&self.loc, rel), &path)?;
            manifest.objects.insert(rel.clone(), (etag, digest));
            put += 1;
        }
        let gone: Vec<String> =
            manifest.objects.keys().filter(|k| !local.contains(k)).cloned().collect();
        for rel in gone {
            let del =
                self.client.delete_object().bucket(&self.loc.bucket).key(key_of(&self.loc, &rel));
            self.rt.block_on(del.send()).map_err(|e| {
                anyhow::anyhow!(
                    "deleting {rel}: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                )
            })?;
            manifest.objects.remove(&rel);
            deleted += 1;
        }
        self.save_manifest(&manifest)?;
        Ok((put, deleted))
    }

    /// One whole-object put (multipart when large); returns the ETag.
    fn put(&self, key: &str, path: &Path) -> anyhow::Result<String> {
        let len =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        let ctx = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!("putting s3://{}/{key}: {e}", self.loc.bucket)
        };
        if len <= self.multipart_above {
            let body =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let out = self
                .rt
                .block_on(
                    self.client
                        .put_object()
                        .bucket(&self.loc.bucket)
                        .key(key)
                        .body(ByteStream::from(body))
                        .send(),
                )
                .map_err(|e| ctx(&aws_smithy_types::error::display::DisplayErrorContext(&e)))?;
            return Ok(out.e_tag().unwrap_or_default().trim_matches('"').to_owned());
        }
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        use std::io::Read;
        let bucket = &self.loc.bucket;
        let created = self
            .rt
            .block_on(self.client.create_multipart_upload().bucket(bucket).key(key).send())
            .map_err(|e| ctx(&aws_smithy_types::error::display::DisplayErrorContext(&e)))?;
        let id = created.upload_id().unwrap_or_default().to_owned();
        let mut file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut parts = Vec::new();
        let mut n = 0;
        loop {
            let mut buf = Vec::with_capacity(self.part_size);
            (&mut file)
                .take(self.part_size as u64)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if buf.is_empty() {
                break;
            }
            n += 1;
            let up = self.rt.block_on(
                self.client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&id)
                    .part_number(n)
                    .body(ByteStream::from(buf))
                    .send(),
            );
            match up {
                Ok(p) => parts.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(p.e_tag().map(str::to_owned))
                        .build(),
                ),
                Err(e) => {
                    let _ = self.rt.block_on(
                        self.client
                            .abort_multipart_upload()
                            .bucket(bucket)
                            .key(key)
                            .upload_id(&id)
                            .send(),
                    );
                    return Err(ctx(&aws_smithy_types::error::display::DisplayErrorContext(&e)));
                }
            }
        }
        let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let out = self
            .rt
            .block_on(
                self.client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&id)
                    .multipart_upload(done)
                    .send(),
            )
            .map_err(|e| ctx(&aws_smithy_types::error::display::DisplayErrorContext(&e)))?;
        Ok(out.e_tag().unwrap_or_default().trim_matches('"').to_owned())
    }
}

impl Drop for S3Lake {
    fn drop(&mut self) {
        self.release();
    }
}

/// Runs `f` on `lake`: a directory as it is, or `s3://...` through its mirror (`f` gets the
/// directory to use). `writes`: the command changes the lake, so it takes the lease and pushes
/// afterwards (also after a failure: what the command made durable in the mirror is complete).
///
/// # Errors
///
/// `f`'s error, or S3's.
pub fn with_lake<T>(
    lake: &Path,
    writes: bool,
    f: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let text = lake.to_string_lossy().into_owned();
    if !text.starts_with("s3://") {
        return f(lake);
    }
    let mut s3 = S3Lake::open(&text)?;
    // One command at a time on a mirror: a pull must never remove files a writer on this
    // machine has not pushed yet.
    std::fs::create_dir_all(&s3.dir).with_context(|| format!("creating {}", s3.dir.display()))?;
    let guard_path = s3.dir.join(MIRROR_LOCK);
    let guard = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&guard_path)
        .with_context(|| format!("opening {}", guard_path.display()))?;
    guard.lock().with_context(|| format!("locking {}", guard_path.display()))?;
    if writes {
        s3.lease()?;
    }
    let pulled = s3.pull().with_context(|| format!("bringing {text} down"))?;
    tracing::info!(lake = %text, mirror = %s3.dir.display(), downloaded = pulled, "Lake mirror up to date.");
    let result = f(&s3.dir);
    if writes {
        let (put, deleted) = s3.push().with_context(|| format!("putting the changes of {text}"))?;
        tracing::info!(lake = %text, put, deleted, "Lake pushed to S3.");
    }
    s3.release();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_go_up_in_parts_and_come_back_identical() {
        use aws_config::{BehaviorVersion, Region};
        let moto = agentmeter_testkit::moto::MotoServer::start();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let config = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(moto.endpoint())
                .region(Region::new("us-east-1"))
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .load(),
        );
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
        );
        rt.block_on(client.create_bucket().bucket("lakes").send()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lake = S3Lake {
            loc: S3Location::parse("s3://lakes/big").unwrap(),
            client: client.clone(),
            rt,
            dir: dir.path().to_owned(),
            leased: false,
            // moto, like S3, wants parts of at least 5 MiB except the last.
            multipart_above: 8 << 20,
            part_size: 5 << 20,
        };
        let rel = "usage_events/dt=2026-10-01/part-0123.parquet";
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let data: Vec<u8> =
            (0..(12u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        std::fs::write(dir.path().join("small.json"), b"{}").unwrap();
        assert_eq!(lake.push().unwrap(), (2, 0));
        let get = |key: &str| {
            let o = lake.rt.block_on(client.get_object().bucket("lakes").key(key).send()).unwrap();
            let etag = o.e_tag().unwrap_or_default().to_owned();
            (etag, lake.rt.block_on(o.body.collect()).unwrap().into_bytes().to_vec())
        };
        let (etag, body) = get("big/usage_events/dt=2026-10-01/part-0123.parquet");
        assert!(etag.trim_matches('"').ends_with("-3"), "three parts: {etag}");
        assert!(body == data, "the object is the file");
        assert_eq!(get("big/small.json").1, b"{}");
        // Nothing changed: nothing put. A removed file: its object deleted.
        assert_eq!(lake.push().unwrap(), (0, 0));
        std::fs::remove_file(dir.path().join("small.json")).unwrap();
        assert_eq!(lake.push().unwrap(), (0, 1));
        let left = lake.rt.block_on(client.list_objects_v2().bucket("lakes").send()).unwrap();
        assert_eq!(left.contents().len(), 1);
    }

    #[test]
    fn keys_and_local_files() {
        let loc = S3Location::parse("s3://lakes/acme/").unwrap();
        assert_eq!(
            key_of(&loc, "usage_events/dt=2026-10-01/part-1.parquet"),
            "acme/usage_events/dt=2026-10-01/part-1.parquet"
        );
        let root = S3Location::parse("s3://lakes").unwrap();
        assert_eq!(key_of(&root, "_state/lake.json"), "_state/lake.json");
        for rel in [
            MANIFEST,
            LEASE,
            "_state/lock",
            "_state/download/x",
            "usage_events/dt=2026-10-01/.tmp-1",
        ] {
            assert!(local_only(rel), "{rel}");
        }
        for rel in ["_state/lake.json", "_state/checkpoints/kinesis-a.json", "_quarantine/a.jsonl"]
        {
            assert!(!local_only(rel), "{rel}");
        }
    }
}
