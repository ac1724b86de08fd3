//! Tests of application inference profiles: reading `list-inference-profiles` output,
//! resolution through the book, ambiguity, cross-region profiles and refusal messages.

use agentmeter_schemas::Tier;
use rust_decimal_macros::dec;
use serde_json::{Value, json};

use super::tests::t;
use super::*;

const EXAMPLE: &str = include_str!("../../../examples/prices.toml");

const HAIKU: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";
const US_HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";

/// An application profile's ARN in us-east-1 of account 123456789012.
fn arn(id: &str) -> String {
    format!("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/{id}")
}

fn foundation(region: &str, model: &str) -> Value {
    json!({"modelArn": format!("arn:aws:bedrock:{region}::foundation-model/{model}")})
}

fn profile(id: &str, models: Vec<Value>) -> Value {
    json!({
        "inferenceProfileName": format!("app-{id}"),
        "description": "tracks a team's usage",
        "createdAt": "2026-09-01T10:00:00.000000+00:00",
        "updatedAt": "2026-09-01T10:00:00.000000+00:00",
        "inferenceProfileArn": arn(id),
        "models": models,
        "inferenceProfileId": id,
        "status": "ACTIVE",
        "type": "APPLICATION",
    })
}

/// A listing as `aws bedrock list-inference-profiles` prints it: a profile in its own Region
/// (Claude Haiku 4.5), one copied from the US cross-region profile and named by it, one
/// copied from it as AWS lists it (the foundation model in each Region), and a system profile.
fn listing() -> Value {
    json!({"inferenceProfileSummaries": [
        profile("a1b2c3d4e5f6", vec![foundation("us-east-1", HAIKU)]),
        profile("b2c3d4e5f6a7", vec![json!({"modelArn": format!(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/{US_HAIKU}")})]),
        profile("c3d4e5f6a7b8", vec![
            foundation("us-east-1", HAIKU),
            foundation("us-east-2", HAIKU),
            foundation("us-west-2", HAIKU),
        ]),
        {
            "inferenceProfileName": "US Anthropic Claude Haiku 4.5",
            "inferenceProfileArn": format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{US_HAIKU}"),
            "models": [foundation("us-east-1", HAIKU), foundation("us-west-2", HAIKU)],
            "inferenceProfileId": US_HAIKU,
            "status": "ACTIVE",
            "type": "SYSTEM_DEFINED",
        },
    ]})
}

fn profiles(v: &Value) -> InferenceProfiles {
    InferenceProfiles::from_json_str(&v.to_string()).unwrap()
}

fn err(v: &Value) -> String {
    InferenceProfiles::from_json_str(&v.to_string()).unwrap_err().to_string()
}

fn book() -> PriceBook {
    PriceBook::from_toml_str(EXAMPLE).unwrap().with_inference_profiles(profiles(&listing()))
}

fn tier(s: &str) -> Tier {
    Tier::new(s).unwrap()
}

fn resolved(book: &PriceBook, id: &str) -> Option<String> {
    book.resolve(id).map(|m| m.id().as_str().to_owned())
}

// ---- resolution ----------------------------------------------------------------------------

#[test]
fn a_profile_resolves_to_its_model_by_arn_or_bare_id() {
    let p = profiles(&listing());
    assert_eq!(p.len(), 3, "the system profile is skipped");
    let a = p.get(&arn("a1b2c3d4e5f6")).unwrap();
    assert_eq!(a.id, "a1b2c3d4e5f6");
    assert_eq!(a.name.as_deref(), Some("app-a1b2c3d4e5f6"));
    assert_eq!(a.route, Route::Model(HAIKU.into()));
    assert_eq!(p.get("a1b2c3d4e5f6"), Some(a));
    assert!(p.get(US_HAIKU).is_none());

    let book = book();
    assert_eq!(resolved(&book, &arn("a1b2c3d4e5f6")).as_deref(), Some(HAIKU));
    assert_eq!(resolved(&book, "a1b2c3d4e5f6").as_deref(), Some(HAIKU));
    let at = t("2026-10-15");
    // basic: list × 1.25.
    let basic = book.billed_prices(&tier("basic"), &arn("a1b2c3d4e5f6"), at).unwrap();
    assert_eq!((basic.input_per_million, basic.output_per_million), (dec!(1.25), dec!(6.25)));
    let s = book
        .billed_segments(&tier("basic"), &arn("a1b2c3d4e5f6"), t("2026-10-01"), t("2026-11-01"))
        .unwrap();
    assert_eq!(s.model.as_str(), HAIKU);
    assert_eq!(s.list_model.as_ref().map(|m| m.as_str()), Some(HAIKU));
    assert_eq!(s.list[0].prices.input_per_million, dec!(1.00));
    // premium bills from its rate card, which does not price the in-Region model: unpriced,
    // naming the model and the profile.
    let e = book.billed_prices(&tier("premium"), &arn("a1b2c3d4e5f6"), at).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "model \"{HAIKU}\" (application inference profile a1b2c3d4e5f6) is not on rate card \"premium\" of tier premium"
        )
    );
}

#[test]
fn a_profile_copied_from_a_cross_region_profile_is_priced_as_that_profile() {
    let book = book();
    let b = arn("b2c3d4e5f6a7");
    // The geo prefix is kept: the US profile's price, not the in-Region one.
    assert_eq!(resolved(&book, &b).as_deref(), Some(US_HAIKU));
    let at = t("2026-10-15");
    assert_eq!(book.billed_prices(&tier("basic"), &b, at).unwrap().input_per_million, dec!(1.375));
    // The rate card resolves the profile's model by its own declarations.
    assert_eq!(book.billed_prices(&tier("premium"), &b, at).unwrap().input_per_million, dec!(1.32));
    assert_eq!(
        book.billed_prices(&tier("premium"), "b2c3d4e5f6a7", at).unwrap().input_per_million,
        dec!(1.32)
    );
}

#[test]
fn foundation_models_in_other_regions_are_unpriced_since_the_cross_region_profile_is_unnamed() {
    let book = book();
    let c = arn("c3d4e5f6a7b8");
    assert_eq!(
        profiles(&listing()).get(&c).unwrap().route,
        Route::CrossRegion {
            model: HAIKU.into(),
            regions: vec!["us-east-1".into(), "us-east-2".into(), "us-west-2".into()],
        }
    );
    assert!(book.resolve(&c).is_none());
    let e = book.billed_prices(&tier("basic"), &c, t("2026-10-15")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "application inference profile c3d4e5f6a7b8 routes {HAIKU} to us-east-1, us-east-2 and us-west-2 without naming the cross-region profile (us., eu., global., ...) it was copied from, which sets the price; in --inference-profiles, give that profile's ARN as its modelArn"
        )
    );
    // A global profile lists a model without a Region; one model in another Region alone is
    // cross-region too.
    let global = json!({"inferenceProfileSummaries": [
        profile("d4e5f6a7b8c9", vec![
            json!({"modelArn": format!("arn:aws:bedrock:::foundation-model/{HAIKU}")}),
            foundation("us-east-1", HAIKU),
        ]),
        profile("e5f6a7b8c9d0", vec![foundation("us-west-2", HAIKU)]),
    ]});
    let book =
        PriceBook::from_toml_str(EXAMPLE).unwrap().with_inference_profiles(profiles(&global));
    let e = book.billed_prices(&tier("basic"), &arn("d4e5f6a7b8c9"), t("2026-10-15"));
    assert!(
        e.unwrap_err()
            .to_string()
            .contains(&format!("routes {HAIKU} to (no Region) and us-east-1 without"))
    );
    let e = book.billed_prices(&tier("basic"), &arn("e5f6a7b8c9d0"), t("2026-10-15"));
    assert!(e.unwrap_err().to_string().contains(&format!("routes {HAIKU} to us-west-2 without")));
}

#[test]
fn unknown_profiles_are_problems_never_priced_by_their_id() {
    // A model of the profile's id exists, as an alias: the ARN is still not priced by it.
    let text = EXAMPLE.replace(
        "aliases = [\"openai.gpt-oss-120b\"]\n[[models.prices]]",
        "aliases = [\"openai.gpt-oss-120b\", \"f6a7b8c9d0e1\", \"a1b2c3d4e5f6\"]\n[[models.prices]]",
    );
    let plain = PriceBook::from_toml_str(&text).unwrap();
    let with = plain.clone().with_inference_profiles(profiles(&listing()));
    let (from, to) = (t("2026-10-01"), t("2026-11-01"));
    let unknown = |id: &str| Unpriced::UnknownApplicationProfile { profile_id: id.into() };
    for book in [&plain, &with] {
        let e = book.billed_segments(&tier("basic"), &arn("f6a7b8c9d0e1"), from, to).unwrap_err();
        assert_eq!(e, unknown("f6a7b8c9d0e1"));
        assert_eq!(
            e.to_string(),
            "application inference profile f6a7b8c9d0e1 is not in --inference-profiles"
        );
        assert!(book.resolve(&arn("f6a7b8c9d0e1")).is_none());
        // The same id in another account or Region is another profile.
        let other =
            "arn:aws:bedrock:eu-west-1:210987654321:application-inference-profile/a1b2c3d4e5f6";
        assert_eq!(
            book.billed_segments(&tier("basic"), other, from, to).unwrap_err(),
            unknown("a1b2c3d4e5f6")
        );
        // Any partition; the plan is checked first.
        let gov = "arn:aws-us-gov:bedrock:us-gov-west-1:1:application-inference-profile/x1";
        assert_eq!(book.billed_segments(&tier("basic"), gov, from, to).unwrap_err(), unknown("x1"));
        assert_eq!(
            book.billed_segments(&tier("gold"), gov, from, to).unwrap_err(),
            Unpriced::NoPlan { tier: tier("gold") }
        );
    }
    // Without profiles the listed ARN is unknown too; with them, the profile wins over the
    // alias for the bare id.
    assert_eq!(
        plain.billed_segments(&tier("basic"), &arn("a1b2c3d4e5f6"), from, to).unwrap_err(),
        unknown("a1b2c3d4e5f6")
    );
    assert_eq!(resolved(&plain, "a1b2c3d4e5f6").as_deref(), Some("openai.gpt-oss-120b-1:0"));
    assert_eq!(resolved(&with, "a1b2c3d4e5f6").as_deref(), Some(HAIKU));
    assert_eq!(resolved(&with, "f6a7b8c9d0e1").as_deref(), Some("openai.gpt-oss-120b-1:0"));
}

#[test]
fn a_profile_whose_model_the_book_lacks_names_both() {
    let v = json!({"inferenceProfileSummaries": [
        profile("a1b2c3d4e5f6", vec![foundation("us-east-1", "anthropic.claude-3-haiku-20240307-v1:0")]),
    ]});
    let book = PriceBook::from_toml_str(EXAMPLE).unwrap().with_inference_profiles(profiles(&v));
    let e = book
        .billed_segments(&tier("basic"), &arn("a1b2c3d4e5f6"), t("2026-10-01"), t("2026-11-01"))
        .unwrap_err();
    assert_eq!(
        e,
        Unpriced::UnknownModel {
            model_id: "anthropic.claude-3-haiku-20240307-v1:0".into(),
            profile: Some("a1b2c3d4e5f6".into()),
        }
    );
    assert_eq!(
        e.to_string(),
        "model \"anthropic.claude-3-haiku-20240307-v1:0\" (application inference profile a1b2c3d4e5f6) is not in the price book (declare it, or add it as an alias)"
    );
    // Before the model's first price.
    let v = json!([profile("a1b2c3d4e5f6", vec![foundation("us-east-1", "m.small-v1:0")])]);
    let small = super::tests::small().with_inference_profiles(profiles(&v));
    assert_eq!(small.inference_profiles().len(), 1);
    assert_eq!(
        small
            .billed_prices(&tier("list"), "a1b2c3d4e5f6", t("2026-10-02"))
            .unwrap_err()
            .to_string(),
        "model \"m.small-v1:0\" (application inference profile a1b2c3d4e5f6) has no price at 2026-10-02 00:00:00 UTC"
    );
}

#[test]
fn other_partitions_resolve_to_the_whole_model_arn() {
    let model = "arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/amazon.nova-lite-v1:0";
    let profile_arn = "arn:aws-us-gov:bedrock:us-gov-west-1:1:application-inference-profile/g1";
    let v = json!({"inferenceProfileArn": profile_arn, "models": [{"modelArn": model}]});
    let p = profiles(&v);
    assert_eq!(p.get(profile_arn).unwrap().route, Route::Model(model.into()));
    let book = PriceBook::from_toml_str(EXAMPLE).unwrap().with_inference_profiles(p);
    // The book prices amazon.nova-lite-v1:0, but not its GovCloud ARN.
    assert!(book.resolve(profile_arn).is_none());
}

// ---- the file --------------------------------------------------------------------------------

#[test]
fn pages_and_single_profiles_are_read() {
    let one = profile("a1b2c3d4e5f6", vec![foundation("us-east-1", HAIKU)]);
    // get-inference-profile: one profile at the top level.
    assert_eq!(profiles(&one).len(), 1);
    // An array of pages; earlier pages carry their nextToken; a page may repeat a profile.
    let mut first = listing();
    first["nextToken"] = json!("page-2");
    let second = json!({"inferenceProfileSummaries": [
        profile("0a1b2c3d4e5f", vec![foundation("us-east-1", US_HAIKU)]),
        one.clone(),
    ]});
    let p = profiles(&json!([first, second, one]));
    assert_eq!(p.len(), 4);
    let ids: Vec<&str> = p.profiles().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a1b2c3d4e5f6", "b2c3d4e5f6a7", "c3d4e5f6a7b8", "0a1b2c3d4e5f"]);
    // An empty listing, and a null or empty nextToken on the last page.
    assert!(profiles(&json!({"inferenceProfileSummaries": [], "nextToken": null})).is_empty());
    assert!(profiles(&json!({"inferenceProfileSummaries": [], "nextToken": ""})).is_empty());
    assert!(profiles(&json!([])).is_empty());
    // Without a type, the ARN says which kind a profile is.
    let mut untyped = one.clone();
    untyped.as_object_mut().unwrap().remove("type");
    assert_eq!(profiles(&untyped).len(), 1);
    let mut system = listing()["inferenceProfileSummaries"][3].clone();
    system.as_object_mut().unwrap().remove("type");
    assert!(profiles(&system).is_empty());
}

#[test]
fn a_profile_with_models_of_different_ids_is_refused_naming_it() {
    let v = json!({"inferenceProfileSummaries": [
        profile("a1b2c3d4e5f6", vec![foundation("us-east-1", HAIKU)]),
        profile("b2c3d4e5f6a7", vec![
            foundation("us-east-1", HAIKU),
            json!({"modelArn": format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{US_HAIKU}")}),
            foundation("us-east-1", HAIKU),
        ]),
    ]});
    let e = InferenceProfiles::from_json_str(&v.to_string()).unwrap_err();
    assert!(
        matches!(&e, InferenceProfilesError::Ambiguous { id, .. } if id == "b2c3d4e5f6a7"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "inferenceProfileSummaries[1] (b2c3d4e5f6a7).models: application inference profile b2c3d4e5f6a7 routes to several models ({HAIKU}, {US_HAIKU}); it cannot be priced as one"
        )
    );
}

#[test]
fn malformed_files_are_refused_at_the_exact_place() {
    let at = "inferenceProfileSummaries[0] (a1b2c3d4e5f6)";
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut v = listing();
        edit(&mut v["inferenceProfileSummaries"][0]);
        err(&v)
    };
    assert_eq!(
        with(&|p| p["models"][0]["modelArn"] = json!("anthropic.claude-haiku-4-5-20251001-v1:0")),
        format!(
            "{at}.models[0].modelArn: \"{HAIKU}\" is not a Bedrock foundation-model or inference-profile ARN (arn:aws:bedrock:<region>:<account>:foundation-model/<id> or .../inference-profile/<id>)"
        )
    );
    assert!(
        with(&|p| p["models"][0]["modelArn"] = json!("arn:aws:bedrock:us-east-1:1:custom-model/x"))
            .starts_with(&format!("{at}.models[0].modelArn: \"arn:aws:bedrock:us-east-1:1:custom-model/x\" is not a Bedrock"))
    );
    assert!(
        with(&|p| p["models"][0]["modelArn"] = json!(arn("b2c3d4e5f6a7")))
            .starts_with(&format!("{at}.models[0].modelArn: ")),
    );
    assert_eq!(
        with(&|p| p["models"][0]["modelArn"] = json!(7)),
        format!("{at}.models[0].modelArn: expected a string, found a number")
    );
    assert_eq!(
        with(&|p| p["models"][0] = json!("x")),
        format!("{at}.models[0]: expected an object, found a string")
    );
    assert_eq!(
        with(&|p| p["models"][0] = json!({})),
        format!("{at}.models[0]: modelArn is missing")
    );
    assert_eq!(
        with(&|p| p["models"] = json!([])),
        format!("{at}.models: is empty: the profile routes to no model")
    );
    assert_eq!(
        with(&|p| p["models"] = json!({"modelArn": "x"})),
        format!("{at}.models: expected an array, found an object")
    );
    assert_eq!(
        with(&|p| {
            p.as_object_mut().unwrap().remove("models");
        }),
        format!("{at}: models is missing")
    );
    assert_eq!(
        with(&|p| p["inferenceProfileId"] = json!("zzz")),
        format!(
            "inferenceProfileSummaries[0].inferenceProfileId: \"zzz\" is not the id of its ARN \"{}\"",
            arn("a1b2c3d4e5f6")
        )
    );
    assert_eq!(
        with(&|p| p["type"] = json!("CUSTOM")),
        "inferenceProfileSummaries[0].type: \"CUSTOM\" is not APPLICATION or SYSTEM_DEFINED"
    );
    assert_eq!(
        with(&|p| p["inferenceProfileArn"] =
            json!(format!("arn:aws:bedrock:us-east-1:1:inference-profile/{US_HAIKU}"))),
        format!(
            "inferenceProfileSummaries[0].inferenceProfileArn: \"arn:aws:bedrock:us-east-1:1:inference-profile/{US_HAIKU}\" is not an application inference profile ARN (arn:aws:bedrock:<region>:<account>:application-inference-profile/<id>)"
        )
    );
    assert_eq!(
        with(&|p| {
            p.as_object_mut().unwrap().remove("inferenceProfileArn");
        }),
        "inferenceProfileSummaries[0]: inferenceProfileArn is missing"
    );
    assert_eq!(
        with(&|p| *p = json!(null)),
        "inferenceProfileSummaries[0]: expected an object, found null"
    );
    assert_eq!(
        err(&json!({"inferenceProfileSummaries": {}})),
        "inferenceProfileSummaries: expected an array, found an object"
    );
    assert_eq!(
        err(&json!({"profiles": []})),
        "the file: neither inferenceProfileSummaries (list-inference-profiles) nor inferenceProfileArn (get-inference-profile)"
    );
    assert_eq!(
        err(&json!([listing(), 3])),
        "[1]: expected an object (a list-inference-profiles page or one profile), found a number"
    );
    // The last page must not promise another.
    let mut page = listing();
    page["nextToken"] = json!("eyJ0b2tlbiI6IDJ9");
    assert_eq!(
        err(&page),
        "nextToken: \"eyJ0b2tlbiI6IDJ9\" is set but no page follows (the listing is incomplete; give every page, as a JSON array of pages)"
    );
    assert!(err(&json!([listing(), page])).starts_with("[1].nextToken: "));
    let mut cli = listing();
    cli["NextToken"] = json!("abc");
    assert!(err(&cli).starts_with("NextToken: \"abc\" is set"));
    // A profile listed twice, or two profiles of one id, with other models.
    let again = profile("a1b2c3d4e5f6", vec![foundation("us-east-1", US_HAIKU)]);
    assert_eq!(
        err(&json!([listing(), again])),
        format!("[1] (a1b2c3d4e5f6): {} is listed before with other models", arn("a1b2c3d4e5f6"))
    );
    let mut elsewhere = profile("a1b2c3d4e5f6", vec![foundation("eu-west-1", US_HAIKU)]);
    let eu_arn =
        "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6";
    elsewhere["inferenceProfileArn"] = json!(eu_arn);
    assert_eq!(
        err(&json!([listing(), elsewhere])),
        format!(
            "[1] (a1b2c3d4e5f6): the id a1b2c3d4e5f6 is also that of {}, listed before with other models; a logged a1b2c3d4e5f6 could not be priced",
            arn("a1b2c3d4e5f6")
        )
    );
    // One profile at the top level (get-inference-profile).
    assert_eq!(
        err(&json!({"inferenceProfileArn": arn("a1b2c3d4e5f6")})),
        "the file: models is missing"
    );
    assert_eq!(
        err(&json!({"inferenceProfileArn": arn("a1b2c3d4e5f6"), "models": [{"modelArn": 1}]})),
        "models[0].modelArn: expected a string, found a number"
    );
    assert_eq!(
        err(&json!("x")),
        "the file: expected an object (a list-inference-profiles page or one profile), found a string"
    );
    // Not JSON: serde_json's place.
    let e =
        InferenceProfiles::from_json_str("{\"inferenceProfileSummaries\": [\n  {,]}").unwrap_err();
    assert_eq!(e.to_string(), "not JSON: key must be a string at line 2 column 4");
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.json");
    std::fs::write(&path, listing().to_string()).unwrap();
    assert_eq!(InferenceProfiles::load(&path).unwrap().len(), 3);
    std::fs::write(&path, "[1]").unwrap();
    assert_eq!(
        InferenceProfiles::load(&path).unwrap_err().to_string(),
        format!(
            "{}: [0]: expected an object (a list-inference-profiles page or one profile), found a number",
            path.display()
        )
    );
    let missing = dir.path().join("missing.json");
    let e = InferenceProfiles::load(&missing).unwrap_err();
    assert!(matches!(e, InferenceProfilesError::Io { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!("cannot read {}: ", missing.display())));
}

#[test]
fn the_book_refuses_application_profile_arns_as_ids_or_aliases() {
    let text = EXAMPLE.replace(
        "aliases = [\"openai.gpt-oss-120b\"]\n[[models.prices]]",
        &format!(
            "aliases = [\"openai.gpt-oss-120b\", \"{}\"]\n[[models.prices]]",
            arn("a1b2c3d4e5f6")
        ),
    );
    let e = PriceBook::from_toml_str(&text).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "models[3] (openai.gpt-oss-120b-1:0).aliases[1]: \"{}\" is an application inference profile ARN; its usage is priced as the profile's model, given by --inference-profiles, never by a declaration in the book",
            arn("a1b2c3d4e5f6")
        )
    );
}

#[test]
fn application_profile_ids_are_read_from_arns_only() {
    let id = application_profile_id;
    assert_eq!(id(&arn("a1b2c3d4e5f6")), Some("a1b2c3d4e5f6"));
    assert_eq!(id("arn:aws-cn:bedrock:cn-north-1:1:application-inference-profile/x"), Some("x"));
    assert_eq!(id("arn:aws:bedrock:us-east-1:1:application-inference-profile/"), None);
    assert_eq!(id(&format!("arn:aws:bedrock:us-east-1:1:inference-profile/{US_HAIKU}")), None);
    assert_eq!(id("arn:aws:sagemaker:us-east-1:1:application-inference-profile/x"), None);
    assert_eq!(id("a1b2c3d4e5f6"), None);
}

#[test]
fn an_invoices_book_version_names_the_profiles_file_too() {
    let book = PriceBook::from_toml_str(EXAMPLE).unwrap();
    let plain = book.version();
    assert!(!plain.contains("profiles"), "{plain}");
    let text = listing().to_string();
    let profiles = InferenceProfiles::from_json_str(&text).unwrap();
    let hex = blake3::hash(text.as_bytes()).to_hex();
    let with = book.with_inference_profiles(profiles).version();
    assert_eq!(with, format!("{plain}+profiles-{}", &hex.as_str()[..12]));
}

#[test]
fn the_lakes_copy_keeps_profiles_a_fresh_listing_no_longer_has() {
    // The copy knows a profile deleted since; the fresh listing has the other two.
    let old = json!({"inferenceProfileSummaries": [
        profile("a1b2c3d4e5f6", vec![foundation("us-east-1", HAIKU)]),
        profile("d4e5f6a7b8c9", vec![foundation("us-east-1", HAIKU)]),
    ]});
    let fresh = json!([{"inferenceProfileSummaries": [
        profile("b2c3d4e5f6a7", vec![json!({"modelArn": format!(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/{US_HAIKU}")})]),
        profile("a1b2c3d4e5f6", vec![foundation("us-east-1", HAIKU)]),
    ]}]);
    let merged = merge_listings(&fresh.to_string(), Some(&old.to_string())).unwrap();
    let p = InferenceProfiles::from_json_str(&merged).unwrap();
    let ids: Vec<&str> = p.profiles().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a1b2c3d4e5f6", "b2c3d4e5f6a7", "d4e5f6a7b8c9"]);
    // The same inputs give the same bytes (so the same digest on invoices); without a copy,
    // the listing's application profiles alone.
    assert_eq!(merge_listings(&fresh.to_string(), Some(&old.to_string())).unwrap(), merged);
    let alone = merge_listings(&listing().to_string(), None).unwrap();
    assert_eq!(InferenceProfiles::from_json_str(&alone).unwrap().len(), 3);
    assert!(!alone.contains("SYSTEM_DEFINED"));
    // A copy whose profile shares a bare id with a listed one routed elsewhere is refused.
    let mut other = old.clone();
    other["inferenceProfileSummaries"][0]["inferenceProfileArn"] =
        json!("arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/b2c3d4e5f6a7");
    other["inferenceProfileSummaries"][0]["inferenceProfileId"] = json!("b2c3d4e5f6a7");
    other["inferenceProfileSummaries"][0]["models"] = json!([foundation("eu-west-1", HAIKU)]);
    let e = merge_listings(&fresh.to_string(), Some(&other.to_string())).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "the lake's copy of the inference profiles (_state/inference_profiles.json): "
        ),
        "{e}"
    );
}
