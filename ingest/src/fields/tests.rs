//! Tests of the field reading: which fields are picked, what is borrowed, how strings,
//! messages and counts are read (as serde_json reads them), and how refusals are worded.

use super::*;

#[test]
fn picks_known_fields_and_skips_the_rest() {
    let text = r#"{"event":"inference_usage","nested":{"a":[1,2,{"b":3}]},"clinic_id":"c-1",
        "input_tokens":812,"inputTokens":812,"total_tokens":9.5,"messageType":"x"}"#;
    let f = parse_object(text, "clinic_id").unwrap();
    assert!(
        matches!(f.get(Key::Event), Got::One("event", Scalar::Str(s)) if s == "inference_usage")
    );
    assert!(matches!(f.get(Key::Tenant), Got::One(_, Scalar::Str(s)) if s == "c-1"));
    assert!(matches!(f.get(Key::Input), Got::One(_, Scalar::Int(812))));
    assert!(matches!(f.get(Key::Total), Got::One(_, Scalar::Number("9.5"))));
    assert!(matches!(f.get(Key::Output), Got::Absent));
    assert!(f.markers.message_type);
    assert!(!f.markers.events);
}

#[test]
fn keys_are_borrowed_unless_escaped() {
    let f = parse_object(r#"{"clinic_id":"c","tier\u0020":"x","model\u005fid":"m"}"#, "clinic_id")
        .unwrap();
    let name = |k: Key| f.entries.iter().find(|e| e.0 == k).map(|e| e.1.clone());
    assert!(matches!(name(Key::Tenant), Some(Cow::Borrowed("clinic_id"))));
    assert!(matches!(name(Key::ModelId), Some(Cow::Owned(n)) if n == "model_id"));
    assert!(name(Key::Tier).is_none());
}

#[test]
fn differing_spellings_conflict() {
    let f = parse_object(r#"{"input_tokens":1,"prompt_tokens":2}"#, "clinic_id").unwrap();
    assert!(matches!(f.get(Key::Input), Got::Conflict("input_tokens", "prompt_tokens")));
    let f = parse_object(r#"{"tier":"a","tier":"b"}"#, "clinic_id").unwrap();
    assert!(matches!(f.get(Key::Tier), Got::Conflict("tier", "tier")));
}

/// A key's later entries are compared with its first, past the other keys' entries.
#[test]
fn a_repeat_is_compared_with_the_first_across_other_fields() {
    let f = parse_object(
        r#"{"input_tokens":1,"tier":"a","inputTokens":1,"output_tokens":3,
            "prompt_tokens":2,"tier":"a"}"#,
        "clinic_id",
    )
    .unwrap();
    assert!(matches!(f.get(Key::Input), Got::Conflict("input_tokens", "prompt_tokens")));
    assert!(matches!(f.get(Key::Tier), Got::One("tier", Scalar::Str(s)) if s == "a"));
    assert!(matches!(f.get(Key::Output), Got::One("output_tokens", Scalar::Int(3))));
    assert!(f.has(Key::Output) && !f.has(Key::Total));
}

#[test]
fn configured_tenant_field() {
    let f = parse_object(r#"{"org":"o1","clinic_id":"c"}"#, "org").unwrap();
    assert!(matches!(f.get(Key::Tenant), Got::One("org", _)));
    assert!(!f.has(Key::TenantAlt));
}

#[test]
fn escaped_strings_are_owned_and_correct() {
    let f = parse_object(r#"{"message":"a\"b\n"}"#, "clinic_id").unwrap();
    assert!(matches!(f.get(Key::Message), Got::One(_, Scalar::Str(s)) if s == "a\"b\n"));
}

#[test]
fn non_objects_and_trailing_garbage() {
    assert!(matches!(parse_object("[1]", "c"), Err(ParseError::NotAnObject)));
    assert!(matches!(parse_object("{} x", "c"), Err(ParseError::Json(_))));
    assert!(parse_object_prefix("{} x", "c").is_ok());
    assert!(matches!(parse_object("{\"a\":", "c"), Err(ParseError::Json(_))));
}

#[test]
fn id_integers_are_kept_digit_for_digit() {
    let id = "36897046232316298063931829383442926153542430203385888768";
    let text = format!(r#"{{"id":{id},"event_id":"e\u0031"}}"#);
    let f = parse_object(&text, "c").unwrap();
    assert!(matches!(f.get(Key::CwId), Got::One(_, Scalar::Digits(d)) if *d == id));
    assert!(matches!(f.get(Key::EventId), Got::One(_, Scalar::Str(s)) if s == "e1"));
    let f = parse_object(r#"{"eventId":[1]}"#, "c").unwrap();
    assert!(matches!(f.get(Key::CwId), Got::One("eventId", Scalar::Compound)));
}

#[test]
fn messages_are_unescaped_as_serde_json_unescapes_them() {
    let cases = [
        r#""plain, no escape""#,
        r#""{\"event\":\"inference_usage\",\"tier\":\"basic\"}""#,
        r#""tab\there \\ back\/slash \b\f\n\r \"q\"""#,
        r#""\u00e9t\u00E9 \u0000 \u001f \u20ac \ud83d\ude00 end""#,
        r#""\\u0041 is not an escape""#,
        r#""""#,
        r#""\\""#,
        "\"caf\u{e9} \u{1f4a5}\"",
        // Escapes whose character is the byte after the backslash, one after another and
        // last before the closing quote.
        r#""\"\"\\\\\/\"x\\\"y\/""#,
        r#""\\\"""#,
    ];
    // Longer than the room first made, escapes up to its end, a multi-byte one astride it.
    let long = serde_json::json!(format!("{}\u{e9}{}", "a\"b".repeat(170), "\\x".repeat(300)));
    let long = long.to_string();
    for raw in cases.into_iter().chain([long.as_str()]) {
        let want: String = serde_json::from_str(raw).unwrap();
        let got = message_scalar(raw).unwrap();
        assert_eq!(got, Scalar::Str(Cow::Owned(want)), "{raw}");
        let borrowed = matches!(got, Scalar::Str(Cow::Borrowed(_)));
        assert_eq!(borrowed, !raw.contains('\\'), "{raw}: borrowed when it can be");
    }
    // A string whose last quote is escaped has no end, whatever escape came before it.
    for raw in [r#""abc\""#, r#""a\\\""#, r#""\"\""#, r#""\\"#, r#""\"#] {
        assert_eq!(message_string(raw, 0), None, "{raw}");
    }
    assert_eq!(message_string(r#""a\\" tail"#, 0), Some((5, Cow::Owned("a\\".into()))));
    // Not a string: as serde_json reads it.
    assert_eq!(message_scalar("12"), Some(Scalar::Int(12)));
    assert_eq!(message_scalar(r#"{"a":"\u0041"}"#), Some(Scalar::Compound));
    // Surrogates that are no character, and escapes serde_json would refuse: left to it.
    for raw in [r#""\ud800""#, r#""\udc00""#, r#""\ud800\u0041""#, r#""\ud800x""#, r#""\u+041""#] {
        assert_eq!(message_scalar(raw), None, "{raw}");
    }
}

#[test]
fn a_message_serde_json_refuses_is_refused_in_its_words() {
    for text in [
        r#"{"id":"1","timestamp":1,"message":"ok \ud800 then","x":1}"#,
        r#"{"id":"1","message":"\"a\" \udc00"}"#,
        r#"{"message":"\ud83d\u0041","timestamp":1}"#,
    ] {
        let Err(ParseError::Json(e)) = parse_object(text, "clinic_id") else {
            panic!("{text} parsed")
        };
        let want = serde_json::from_str::<serde_json::Value>(text).unwrap_err();
        assert_eq!(e.to_string(), want.to_string(), "{text}");
    }
    let text = r#"{"message":"{\"a\":\"\u00e9\"}","id":"2"}"#;
    let f = parse_object(text, "clinic_id").unwrap();
    assert!(
        matches!(f.get(Key::Message), Got::One("message", Scalar::Str(m)) if m == r#"{"a":"é"}"#)
    );
}

/// The short path for counts gives what `i128`'s parser gives, at every length it takes.
#[test]
fn counts_read_as_the_integer_parser_reads_them() {
    for raw in [
        "0",
        "-0",
        "7",
        "-7",
        "812",
        "999999999999999999",
        "-99999999999999999",
        "-999999999999999999",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "170141183460469231731687303715884105728",
    ] {
        let want = raw.parse::<i128>().map_or(Scalar::Digits(raw), Scalar::Int);
        assert_eq!(count_scalar(raw), want, "{raw}");
    }
    assert_eq!(count_scalar("10.0"), Scalar::Number("10.0"));
    assert_eq!(count_scalar("\"12\""), Scalar::Str(Cow::Borrowed("12")));
}

#[test]
fn string_ids_are_borrowed_unless_escaped() {
    assert!(matches!(id_scalar("\"req-1\""), Scalar::Str(Cow::Borrowed("req-1"))));
    assert!(matches!(id_scalar("\"\""), Scalar::Str(Cow::Borrowed(""))));
    assert!(matches!(id_scalar(r#""a\u0031""#), Scalar::Str(Cow::Owned(s)) if s == "a1"));
    assert!(matches!(id_scalar(r#""a\"b""#), Scalar::Str(Cow::Owned(s)) if s == "a\"b"));
    assert_eq!(id_scalar("null"), Scalar::Null);
    assert_eq!(id_scalar("1.5"), Scalar::Float(1.5));
    assert_eq!(id_scalar("{}"), Scalar::Compound);
}

/// A string without an escape, read by neither reading's raw functions again, is what they
/// make of it: for every field read from its raw text.
#[test]
fn a_plain_string_pushed_as_text_is_what_its_raw_reading_gives() {
    let slots = [
        RawSlot::Id(Key::EventId),
        RawSlot::Count(Key::Input),
        RawSlot::ServiceTier,
        RawSlot::Breakdown,
        RawSlot::Message,
    ];
    for body in ["", "flex", "123", "-4", "1h", "{}", "[]", "caf\u{e9} \u{1f600}", "null"] {
        let raw = format!("\"{body}\"");
        for slot in slots {
            let (mut by_text, mut by_raw) = (Fields::default(), Fields::default());
            by_text.push_raw_str(slot, Cow::Borrowed("k"), body);
            by_raw.push_raw(slot, Cow::Borrowed("k"), &raw).expect("a string is a message");
            assert_eq!(by_text, by_raw, "{slot:?} {raw}");
        }
    }
}
