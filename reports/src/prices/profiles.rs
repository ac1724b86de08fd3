//! Application inference profiles: which model each one routes to, read from what
//! `aws bedrock list-inference-profiles --type-equals APPLICATION` (or `get-inference-profile`)
//! prints.
//!
//! An application inference profile's id is opaque (`a1b2c3d4e5f6`), so a usage id that is
//! its ARN (or the bare id) is priced as the model the profile routes to, never by the id
//! itself. See [`InferenceProfiles::from_json_str`] for the file and the rules.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Largest profiles file [`InferenceProfiles::load`] reads (an account's listing is a few
/// kilobytes per profile).
pub const MAX_PROFILES_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The resource type of an application inference profile's ARN.
const APPLICATION_KIND: &str = "application-inference-profile";
/// The resource type of a cross-region (system-defined) inference profile's ARN.
const SYSTEM_KIND: &str = "inference-profile";
/// The resource type of a foundation model's ARN.
const FOUNDATION_KIND: &str = "foundation-model";

/// The parts of a Bedrock ARN: `arn:<partition>:bedrock:<region>:<account>:<kind>/<resource>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BedrockArn<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub kind: &'a str,
    pub resource: &'a str,
}

/// Splits a Bedrock ARN in any AWS partition (`aws`, `aws-us-gov`, `aws-cn`, ...); region
/// and account may be empty. `None` for anything else, or an empty resource.
pub(super) fn parse_arn(s: &str) -> Option<BedrockArn<'_>> {
    let mut parts = s.strip_prefix("arn:")?.splitn(5, ':');
    let partition = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let _account = parts.next()?;
    let (kind, resource) = parts.next()?.split_once('/')?;
    let ok = (partition == "aws" || partition.starts_with("aws-"))
        && service == "bedrock"
        && !resource.is_empty();
    ok.then_some(BedrockArn { partition, region, kind, resource })
}

/// The profile id of an application inference profile ARN
/// (`arn:<partition>:bedrock:<region>:<account>:application-inference-profile/<id>`, any
/// partition), `None` for any other id.
///
/// Such an id is priced only through [`InferenceProfiles`] (as the profile's model), never
/// by a declaration in the book, and never by its opaque id.
pub fn application_profile_id(id: &str) -> Option<&str> {
    parse_arn(id).filter(|a| a.kind == APPLICATION_KIND).map(|a| a.resource)
}

/// What an application inference profile is priced as.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// The id to resolve in the book, as any logged id is: the foundation model id (after
    /// `foundation-model/` of its model's ARN) of a profile in its own Region, or the
    /// cross-region profile's id (after `inference-profile/`, prefix kept: `us.`, `eu.`,
    /// `apac.`, `global.`, ...) of a profile whose model is that profile. In a partition other
    /// than `aws`, the whole model ARN (such ids are declared in full, see the book's rules).
    Model(String),
    /// The profile routes the model to other Regions than its own (it was copied from a
    /// cross-region profile, and the listing names only the foundation model in each
    /// Region): the cross-region profile, which sets the price, is unknown, so its usage is
    /// unpriced.
    CrossRegion {
        /// The foundation model id.
        model: String,
        /// The Regions of its models, in order, `""` for a Region-less (global) one.
        regions: Vec<String>,
    },
}

/// One application inference profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationProfile {
    /// Its id, the part of its ARN after `application-inference-profile/`.
    pub id: String,
    /// Its ARN, as listed.
    pub arn: String,
    /// Its name, if listed.
    pub name: Option<String>,
    /// What it is priced as.
    pub route: Route,
}

/// The application inference profiles of one or more listings, by ARN and by bare id.
#[derive(Debug, Clone, Default)]
pub struct InferenceProfiles {
    /// The first 12 hex digits of the BLAKE3 digest of the file's text (empty when none was
    /// read): invoices name it beside the book's own digest.
    digest: String,
    profiles: Vec<ApplicationProfile>,
    /// ARN and bare id → index into `profiles`.
    index: HashMap<String, usize>,
}

/// Why a profiles file was refused. Each message names the place in the JSON (array indices
/// from 0, the profile id in parentheses) and is complete on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceProfilesError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The file is larger than any plausible listing.
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// An error in a file, wrapped with the file's path.
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        error: Box<InferenceProfilesError>,
    },
    /// The lake's copy of the profiles, alone or with a fresh listing, is not a valid
    /// listing.
    #[error("the lake's copy of the inference profiles (_state/inference_profiles.json): {error}")]
    InLake {
        /// What is wrong.
        error: Box<InferenceProfilesError>,
    },
    /// Not JSON; serde_json's message, with line and column.
    #[error("not JSON: {0}")]
    Json(serde_json::Error),
    /// A value is missing, of the wrong type or unusable.
    #[error("{at}: {why}")]
    Invalid {
        /// The place, e.g. `inferenceProfileSummaries[2] (a1b2c3d4e5f6).models[0].modelArn`.
        at: String,
        /// What is wrong.
        why: String,
    },
    /// A profile's models have different ids: it cannot be priced as one model.
    #[error(
        "{at}: application inference profile {id} routes to several models ({}); it cannot be priced as one",
        models.join(", ")
    )]
    Ambiguous {
        /// The place of its `models`.
        at: String,
        /// The profile id.
        id: String,
        /// The distinct ids, in order.
        models: Vec<String>,
    },
}

/// An [`InferenceProfilesError::Invalid`] at `at` (`""`: the top level, shown as "the file").
fn invalid(at: &str, why: impl Into<String>) -> InferenceProfilesError {
    let at = if at.is_empty() { "the file" } else { at };
    InferenceProfilesError::Invalid { at: at.to_owned(), why: why.into() }
}

/// `prefix.name`, or `name` at the top level.
fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") }
}

/// A JSON value's type in words, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string<'v>(
    obj: &'v Map<String, Value>,
    at: &str,
    key: &str,
) -> Result<&'v str, InferenceProfilesError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => {
            Err(invalid(&join(at, key), format!("expected a string, found {}", kind(other))))
        }
        None => Err(invalid(at, format!("{key} is missing"))),
    }
}

fn optional_string<'v>(
    obj: &'v Map<String, Value>,
    at: &str,
    key: &str,
) -> Result<Option<&'v str>, InferenceProfilesError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => string(obj, at, key).map(Some),
    }
}

impl InferenceProfiles {
    /// Reads a listing: the JSON that `aws bedrock list-inference-profiles` prints
    /// (`{"inferenceProfileSummaries": [...], "nextToken"?}`), a JSON array of such pages (in
    /// order), or what `aws bedrock get-inference-profile` prints (one profile's fields at
    /// the top level); an array may mix pages and single profiles.
    ///
    /// For each profile, `inferenceProfileArn` and a non-empty `models` (objects with a
    /// `modelArn`) are required; `inferenceProfileId`, if given, must be the ARN's id; other
    /// fields are ignored. Profiles of `type` `SYSTEM_DEFINED` (or, without a `type`, with an
    /// `inference-profile/` ARN) are skipped: they are priced by their own ids. Every model
    /// ARN must be a Bedrock `foundation-model/` or `inference-profile/` ARN, and all of a
    /// profile's models must have the same id (else [`InferenceProfilesError::Ambiguous`]).
    /// The profile is then priced as ([`Route`]):
    ///
    /// - a cross-region profile's id if its model is one (`.../inference-profile/us.x`: `us.x`);
    /// - the foundation model id if every model is in the profile's own Region;
    /// - unpriced ([`Route::CrossRegion`]) if the foundation models are in other Regions.
    ///
    /// A profile listed twice must route the same way both times, and so must two profiles
    /// with the same bare id. The last page must not carry a `nextToken` (or the CLI's
    /// `NextToken`): the listing would be incomplete.
    ///
    /// # Errors
    ///
    /// [`InferenceProfilesError::Json`] (with line and column) for text that is not JSON;
    /// otherwise a variant naming the exact place.
    pub fn from_json_str(text: &str) -> Result<InferenceProfiles, InferenceProfilesError> {
        let root: Value = serde_json::from_str(text).map_err(InferenceProfilesError::Json)?;
        let mut out = InferenceProfiles::default();
        match &root {
            Value::Array(pages) => {
                for (n, page) in pages.iter().enumerate() {
                    let last = n + 1 == pages.len();
                    out.read_document(page, &format!("[{n}]"), last)?;
                }
            }
            other => out.read_document(other, "", true)?,
        }
        out.digest = blake3::hash(text.as_bytes()).to_hex().as_str()[..12].to_owned();
        Ok(out)
    }

    /// The digest of the file read (see the field), or `None` without a file.
    pub fn digest(&self) -> Option<&str> {
        (!self.digest.is_empty()).then_some(self.digest.as_str())
    }

    /// Reads, parses and checks the profiles file at `path`.
    ///
    /// # Errors
    ///
    /// [`InferenceProfilesError::Io`] or [`InferenceProfilesError::TooLarge`] if the file
    /// cannot be read (UTF-8, at most [`MAX_PROFILES_FILE_BYTES`]); otherwise the errors of
    /// [`InferenceProfiles::from_json_str`], wrapped in [`InferenceProfilesError::InFile`].
    pub fn load(path: &Path) -> Result<InferenceProfiles, InferenceProfilesError> {
        Self::load_text(path).map(|(p, _)| p)
    }

    /// [`InferenceProfiles::load`], with the file's text.
    ///
    /// # Errors
    ///
    /// As [`InferenceProfiles::load`].
    pub fn load_text(path: &Path) -> Result<(InferenceProfiles, String), InferenceProfilesError> {
        let io = |error| InferenceProfilesError::Io { path: path.to_owned(), error };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_PROFILES_FILE_BYTES + 1).read_to_string(&mut text).map_err(io)?;
        if text.len() as u64 > MAX_PROFILES_FILE_BYTES {
            return Err(InferenceProfilesError::TooLarge {
                path: path.to_owned(),
                limit: MAX_PROFILES_FILE_BYTES,
            });
        }
        let profiles = InferenceProfiles::from_json_str(&text).map_err(|e| {
            InferenceProfilesError::InFile { path: path.to_owned(), error: Box::new(e) }
        })?;
        Ok((profiles, text))
    }

    /// The profile whose ARN or bare id is `id`, exactly.
    pub fn get(&self, id: &str) -> Option<&ApplicationProfile> {
        self.index.get(id).and_then(|&i| self.profiles.get(i))
    }

    /// The profiles, in file order (each once).
    pub fn profiles(&self) -> &[ApplicationProfile] {
        &self.profiles
    }

    /// How many profiles were read.
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    /// Whether no profile was read.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// One list page or one profile, at `at` (`""` for the top level).
    fn read_document(
        &mut self,
        doc: &Value,
        at: &str,
        last: bool,
    ) -> Result<(), InferenceProfilesError> {
        let Value::Object(obj) = doc else {
            return Err(invalid(
                at,
                format!(
                    "expected an object (a list-inference-profiles page or one profile), found {}",
                    kind(doc)
                ),
            ));
        };
        if !obj.contains_key("inferenceProfileSummaries") && obj.contains_key("inferenceProfileArn")
        {
            return self.read_profile(obj, at);
        }
        let list_at = join(at, "inferenceProfileSummaries");
        match obj.get("inferenceProfileSummaries") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let item_at = format!("{list_at}[{i}]");
                    let Value::Object(p) = item else {
                        return Err(invalid(
                            &item_at,
                            format!("expected an object, found {}", kind(item)),
                        ));
                    };
                    self.read_profile(p, &item_at)?;
                }
            }
            Some(other) => {
                return Err(invalid(&list_at, format!("expected an array, found {}", kind(other))));
            }
            None => {
                return Err(invalid(
                    at,
                    "neither inferenceProfileSummaries (list-inference-profiles) nor inferenceProfileArn (get-inference-profile)",
                ));
            }
        }
        for key in ["nextToken", "NextToken"] {
            let token = optional_string(obj, at, key)?.filter(|t| !t.is_empty());
            if let Some(token) = token
                && last
            {
                return Err(invalid(
                    &join(at, key),
                    format!(
                        "{token:?} is set but no page follows (the listing is incomplete; give every page, as a JSON array of pages)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// One profile object at `at`.
    fn read_profile(
        &mut self,
        p: &Map<String, Value>,
        at: &str,
    ) -> Result<(), InferenceProfilesError> {
        let arn_text = string(p, at, "inferenceProfileArn")?;
        let arn_at = join(at, "inferenceProfileArn");
        let arn = parse_arn(arn_text);
        let typ = optional_string(p, at, "type")?;
        match (typ, arn) {
            (Some("SYSTEM_DEFINED"), _) | (None, Some(BedrockArn { kind: SYSTEM_KIND, .. })) => {
                return Ok(());
            }
            (Some("APPLICATION") | None, _) => {}
            (Some(other), _) => {
                return Err(invalid(
                    &join(at, "type"),
                    format!("{other:?} is not APPLICATION or SYSTEM_DEFINED"),
                ));
            }
        }
        let arn = arn.filter(|a| a.kind == APPLICATION_KIND && !a.region.is_empty()).ok_or_else(|| {
            invalid(
                &arn_at,
                format!(
                    "{arn_text:?} is not an application inference profile ARN (arn:aws:bedrock:<region>:<account>:application-inference-profile/<id>)"
                ),
            )
        })?;
        let id = arn.resource;
        if let Some(given) = optional_string(p, at, "inferenceProfileId")?
            && given != id
        {
            return Err(invalid(
                &join(at, "inferenceProfileId"),
                format!("{given:?} is not the id of its ARN {arn_text:?}"),
            ));
        }
        let at = if at.is_empty() { String::new() } else { format!("{at} ({id})") };
        let name = optional_string(p, &at, "inferenceProfileName")?.map(str::to_owned);
        let route = route(p, &at, id, arn.region)?;
        let profile =
            ApplicationProfile { id: id.to_owned(), arn: arn_text.to_owned(), name, route };
        self.insert(profile, &at)
    }

    /// Adds a profile under its ARN and its bare id; the same profile twice is fine.
    fn insert(
        &mut self,
        profile: ApplicationProfile,
        at: &str,
    ) -> Result<(), InferenceProfilesError> {
        for key in [&profile.arn, &profile.id] {
            let Some(first) = self.index.get(key.as_str()).and_then(|&i| self.profiles.get(i))
            else {
                continue;
            };
            if first.route != profile.route {
                let why = if first.arn == profile.arn {
                    format!("{key} is listed before with other models")
                } else {
                    format!(
                        "the id {key} is also that of {}, listed before with other models; a logged {key} could not be priced",
                        first.arn
                    )
                };
                return Err(invalid(at, why));
            }
        }
        if self.index.contains_key(&profile.arn) {
            return Ok(());
        }
        let n = self.profiles.len();
        self.index.insert(profile.arn.clone(), n);
        self.index.entry(profile.id.clone()).or_insert(n);
        self.profiles.push(profile);
        Ok(())
    }
}

/// What a profile's `models` route to; `region` is the profile's own.
fn route(
    p: &Map<String, Value>,
    at: &str,
    id: &str,
    region: &str,
) -> Result<Route, InferenceProfilesError> {
    let models_at = join(at, "models");
    let models = match p.get("models") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(invalid(&models_at, "is empty: the profile routes to no model"));
        }
        Some(other) => {
            return Err(invalid(&models_at, format!("expected an array, found {}", kind(other))));
        }
        None => return Err(invalid(at, "models is missing")),
    };
    let mut ids: Vec<String> = Vec::new();
    let mut regions: Vec<String> = Vec::new();
    let mut system = false;
    for (k, m) in models.iter().enumerate() {
        let m_at = format!("{models_at}[{k}]");
        let Value::Object(m) = m else {
            return Err(invalid(&m_at, format!("expected an object, found {}", kind(m))));
        };
        let text = string(m, &m_at, "modelArn")?;
        let arn = parse_arn(text).filter(|a| a.kind == FOUNDATION_KIND || a.kind == SYSTEM_KIND);
        let Some(arn) = arn else {
            return Err(invalid(
                &join(&m_at, "modelArn"),
                format!(
                    "{text:?} is not a Bedrock foundation-model or inference-profile ARN (arn:aws:bedrock:<region>:<account>:foundation-model/<id> or .../inference-profile/<id>)"
                ),
            ));
        };
        // In the aws partition the id as agents log it; elsewhere the whole ARN, which the
        // book must declare in full (its prices differ).
        let model = if arn.partition == "aws" { arn.resource } else { text };
        if !ids.iter().any(|i| i == model) {
            ids.push(model.to_owned());
        }
        if arn.kind == SYSTEM_KIND {
            system = true;
        } else if !regions.iter().any(|r| r == arn.region) {
            regions.push(arn.region.to_owned());
        }
    }
    if ids.len() > 1 {
        return Err(InferenceProfilesError::Ambiguous {
            at: models_at,
            id: id.to_owned(),
            models: ids,
        });
    }
    let model = ids.pop().unwrap_or_default();
    if system || regions.iter().all(|r| r == region) {
        Ok(Route::Model(model))
    } else {
        Ok(Route::CrossRegion { model, regions })
    }
}

/// The application profiles of a listing document as written: the objects of every page's
/// `inferenceProfileSummaries`, or a `get-inference-profile` document itself; system-defined
/// ones left out.
fn raw_profiles(doc: &Value) -> Vec<&Map<String, Value>> {
    let pages: Vec<&Value> = match doc {
        Value::Array(pages) => pages.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for page in pages {
        let Value::Object(obj) = page else { continue };
        let items: Vec<&Value> = match obj.get("inferenceProfileSummaries") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ if obj.contains_key("inferenceProfileArn") => vec![page],
            _ => Vec::new(),
        };
        for item in items {
            let Value::Object(p) = item else { continue };
            let system = p.get("type").and_then(Value::as_str) == Some("SYSTEM_DEFINED")
                || p.get("inferenceProfileArn")
                    .and_then(Value::as_str)
                    .and_then(parse_arn)
                    .is_some_and(|a| a.kind == SYSTEM_KIND);
            if !system && p.get("inferenceProfileArn").and_then(Value::as_str).is_some() {
                out.push(p);
            }
        }
    }
    out
}

/// The profiles of `listing` (a fresh listing, already checked by
/// [`InferenceProfiles::from_json_str`]) with those of `cached` (the lake's copy) that it no
/// longer lists, as one `list-inference-profiles` page sorted by ARN: what the lake keeps, so
/// that usage of a profile deleted since still prices as the model it routed to (an
/// application profile's models never change).
///
/// # Errors
///
/// Either text is not a valid listing, or the union is not (a profile of the copy and one of
/// the listing share a bare id but route to different models); the message says which.
pub fn merge_listings(
    listing: &str,
    cached: Option<&str>,
) -> Result<String, InferenceProfilesError> {
    let fresh: Value = serde_json::from_str(listing).map_err(InferenceProfilesError::Json)?;
    let mut by_arn: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(cached) = cached {
        InferenceProfiles::from_json_str(cached)
            .map_err(|e| InferenceProfilesError::InLake { error: Box::new(e) })?;
        let old: Value = serde_json::from_str(cached).map_err(InferenceProfilesError::Json)?;
        for p in raw_profiles(&old) {
            let arn = p.get("inferenceProfileArn").and_then(Value::as_str).unwrap_or_default();
            by_arn.insert(arn.to_owned(), Value::Object(p.clone()));
        }
    }
    for p in raw_profiles(&fresh) {
        let arn = p.get("inferenceProfileArn").and_then(Value::as_str).unwrap_or_default();
        by_arn.insert(arn.to_owned(), Value::Object(p.clone()));
    }
    let merged = serde_json::json!({ "inferenceProfileSummaries": by_arn.into_values().collect::<Vec<_>>() });
    let text = serde_json::to_string_pretty(&merged).map_err(InferenceProfilesError::Json)?;
    InferenceProfiles::from_json_str(&text)
        .map_err(|e| InferenceProfilesError::InLake { error: Box::new(e) })?;
    Ok(text + "\n")
}
