//! OTLP decoding over the fixtures (see `fixtures`) and small hand-written requests.

use agentmeter_schemas::{AgentSpan, Position, QuarantineEntry, RawFormat, Reason, SourceUri};
use agentmeter_schemas::{SpanStatus, SpanTokens};
use opentelemetry_proto::tonic::trace::v1::Status;
use prost::Message as _;
use serde_json::{Value, json};

use super::fixtures::{PRIVATE, STRANDS, strands_proto};
use super::*;
use crate::{DecodeConfig, Decoded, Decoder, Outcome};

fn src() -> SourceUri {
    SourceUri::new("http://127.0.0.1:4318/v1/traces")
}

fn json(body: &str) -> Decoded {
    decode_json(body.as_bytes(), &src(), &DecodeConfig::default()).unwrap()
}

fn spans(d: &Decoded) -> Vec<&AgentSpan> {
    d.outcomes
        .iter()
        .map(|o| match o {
            Outcome::Span(s) => &**s,
            other => panic!("not a span: {other:?}"),
        })
        .collect()
}

fn only_reject(d: &Decoded) -> &QuarantineEntry {
    match d.outcomes.as_slice() {
        [Outcome::Reject(q)] => q,
        other => panic!("not one reject: {other:?}"),
    }
}

fn assert_private(d: &Decoded) {
    let text = format!("{:?}", d.outcomes);
    for p in PRIVATE {
        assert!(!text.contains(p), "{p:?} leaked: {text}");
    }
}

#[test]
fn a_strands_trace_decodes_the_same_from_protobuf_and_json() {
    let from_json = json(STRANDS);
    let body = strands_proto().encode_to_vec();
    let from_proto = decode_proto(&body, &src(), &DecodeConfig::default()).unwrap();
    assert_eq!(from_json.outcomes, from_proto.outcomes);
    assert_private(&from_json);
    assert_private(&from_proto);

    let s = spans(&from_json);
    let ops: Vec<_> = s.iter().map(|s| s.operation.as_deref().unwrap()).collect();
    assert_eq!(
        ops,
        [
            "chat",
            "execute_tool",
            "execute_tool",
            "execute_event_loop_cycle",
            "chat",
            "execute_event_loop_cycle",
            "invoke_agent"
        ]
    );
    for sp in &s {
        assert_eq!((sp.tier.as_str(), sp.tenant_id.as_str()), ("basic", "clinic-a-north"));
        assert_eq!(sp.user_id.as_ref().map(|u| u.as_str()), Some("dr.lee@clinic-a.example"));
        assert_eq!(sp.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(sp.scope, "strands.telemetry.tracer");
        assert_eq!(sp.service.as_deref(), Some("clinic-assistant"));
        assert_eq!(sp.source, src());
    }
    // Times are floored to the millisecond.
    assert_eq!((s[0].start_ms, s[0].end_ms), (1_790_841_600_100, 1_790_841_601_350));
    assert_eq!(s[0].duration_ms(), 1250);
    // Upper-case ids are lower-cased.
    assert_eq!(s[1].span_id, "eee19b7ec3c1b177");
    assert_eq!(s[1].parent_span_id.as_deref(), Some("eee19b7ec3c1b175"));
    assert_eq!(s[6].parent_span_id, None);
    // Tools, the failing one with status error.
    assert_eq!(s[1].tool_name.as_deref(), Some("lookup_patient"));
    assert_eq!(
        (s[2].tool_name.as_deref(), s[2].status),
        (Some("send_referral"), SpanStatus::Error)
    );
    assert_eq!((s[1].status, s[4].status), (SpanStatus::Ok, SpanStatus::Unset));
    assert_eq!(s[0].model_id.as_ref().map(|m| m.as_str()), Some("mistral.ministral-3-8b-instruct"));
    assert_eq!(s[3].model_id, None);
    // Both spellings present: the first counts once, never summed.
    assert_eq!(
        s[0].tokens,
        SpanTokens {
            input: Some(812),
            output: Some(97),
            total: Some(909),
            cache_read: Some(128),
            cache_write: Some(0)
        }
    );
    // Only the deprecated and Strands spellings.
    assert_eq!(
        s[4].tokens,
        SpanTokens {
            input: Some(1020),
            output: Some(64),
            total: Some(1084),
            cache_read: Some(512),
            cache_write: None
        }
    );
    // The agent span's lifetime totals are kept as reported (reconciliation only).
    assert_eq!(s[6].tokens.input, Some(9664));
    assert_eq!(s[3].tokens, SpanTokens::default());
}

// --- small requests -----------------------------------------------------------------------------

fn attr(key: &str, v: &str) -> Value {
    json!({"key": key, "value": {"stringValue": v}})
}

fn base_span() -> Value {
    json!({
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "execute_tool lookup_patient",
        "kind": 1,
        "startTimeUnixNano": "1790841600000000000",
        "endTimeUnixNano": "1790841600250000000",
        "attributes": [
            attr("tier", "basic"), attr("clinic_id", "clinic-a"), attr("user_id", "dr.lee@clinic-a.example"),
            attr("gen_ai.operation.name", "execute_tool"), attr("gen_ai.tool.name", "lookup_patient"),
        ],
        "events": [{"timeUnixNano": "1790841600100000000", "name": "exception",
                    "attributes": [attr("exception.message", "Jane Doe")]}],
        "status": {"code": 1}
    })
}

fn request(resource_attrs: Value, span: Value) -> String {
    json!({"resourceSpans": [{"resource": {"attributes": resource_attrs},
        "scopeSpans": [{"scope": {"name": "strands.telemetry.tracer"}, "spans": [span]}]}]})
    .to_string()
}

/// The base span with `f` applied to its attributes.
fn with_attrs(f: impl FnOnce(&mut Vec<Value>)) -> Value {
    let mut sp = base_span();
    f(sp["attributes"].as_array_mut().unwrap());
    sp
}

fn reject_of(span: Value) -> QuarantineEntry {
    only_reject(&json(&request(json!([]), span))).clone()
}

fn remove(list: &mut Vec<Value>, key: &str) {
    list.retain(|a| a["key"] != key);
}

#[test]
fn the_official_example_shape_with_the_tenant_only_on_the_resource() {
    // opentelemetry-proto examples/trace.json: upper-case ids, times as JSON numbers.
    let example = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"my.service"}},
        {"key":"tier","value":{"stringValue":"premium"}},
        {"key":"clinic_id","value":{"stringValue":"clinic-b"}}]},
      "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[
        {"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}]},
        "spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
          "parentSpanId":"EEE19B7EC3C1B173","name":"I'm a server span",
          "startTimeUnixNano":1544712660000000000,"endTimeUnixNano":1544712661000000000,"kind":2,
          "attributes":[{"key":"my.span.attr","value":{"stringValue":"some value"}}]}]}]}]}"#;
    let d = json(example);
    let s = spans(&d)[0];
    assert_eq!(
        (s.tier.as_str(), s.tenant_id.as_str(), s.user_id.as_ref()),
        ("premium", "clinic-b", None)
    );
    assert_eq!(
        (s.trace_id.as_str(), s.span_id.as_str()),
        ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    );
    assert_eq!(
        (s.start_ms, s.end_ms, s.status),
        (1_544_712_660_000, 1_544_712_661_000, SpanStatus::Unset)
    );
    assert_eq!(
        (s.scope.as_str(), s.service.as_deref(), s.operation.as_ref()),
        ("my.library", Some("my.service"), None)
    );
}

#[test]
fn span_attributes_win_over_resource_attributes() {
    let sp = with_attrs(|a| remove(a, "user_id"));
    let d = json(&request(json!([attr("tier", "premium"), attr("user_id", "resource-user")]), sp));
    let s = spans(&d)[0];
    assert_eq!((s.tier.as_str(), s.user_id.as_ref().unwrap().as_str()), ("basic", "resource-user"));
}

#[test]
fn the_user_from_actor_id_removes_the_known_prefix() {
    let sp = with_attrs(|a| {
        remove(a, "user_id");
        *a =
            a.iter()
                .map(|x| {
                    if x["key"] == "clinic_id" {
                        attr("clinic_id", "st-mary-s-2")
                    } else {
                        x.clone()
                    }
                })
                .collect();
        a.push(attr("actor_id", "basic-st-mary-s-2-night-nurse-7"));
    });
    let d = json(&request(json!([]), sp.clone()));
    assert_eq!(spans(&d)[0].user_id.as_ref().unwrap().as_str(), "night-nurse-7");
    // user.id and enduser.id are user ids too, and come before actor_id.
    for key in ["user.id", "enduser.id"] {
        let mut other = sp.clone();
        other["attributes"].as_array_mut().unwrap().push(attr(key, "u-9"));
        assert_eq!(
            spans(&json(&request(json!([]), other)))[0].user_id.as_ref().unwrap().as_str(),
            "u-9"
        );
    }
    let q = reject_of(with_attrs(|a| {
        remove(a, "user_id");
        a.push(attr("actor_id", "premium-clinic-a-dr.lee"));
    }));
    assert_eq!(q.reason, Reason::InvalidUserId);
    assert_eq!(
        q.detail,
        r#"actor_id "premium-clinic-a-dr.lee" does not start with "basic-clinic-a-""#
    );
    // No user at all is fine on a span.
    let d = json(&request(json!([]), with_attrs(|a| remove(a, "user_id"))));
    assert_eq!(spans(&d)[0].user_id, None);
}

/// A change to a span's attributes.
type Edit = dyn Fn(&mut Vec<Value>);

#[test]
fn tenant_context_refusals_use_the_log_reason_codes() {
    let cases: Vec<(Box<Edit>, Reason, &str)> = vec![
        (Box::new(|a| remove(a, "tier")), Reason::MissingField, "tier is missing"),
        (
            Box::new(|a| remove(a, "clinic_id")),
            Reason::MissingField,
            "clinic_id (or tenant_id) is missing",
        ),
        (
            Box::new(|a| a.push(attr("tenant_id", "clinic-b"))),
            Reason::ConflictingField,
            r#"clinic_id "clinic-a" and tenant_id "clinic-b" differ"#,
        ),
        (
            Box::new(|a| a.push(attr("tier", "premium"))),
            Reason::ConflictingField,
            r#"span attribute "tier" is repeated with different values"#,
        ),
        (
            Box::new(|a| {
                remove(a, "tier");
                a.push(attr("tier", "a b"));
            }),
            Reason::InvalidTier,
            "",
        ),
        (
            Box::new(|a| {
                remove(a, "clinic_id");
                a.push(attr("clinic_id", "../etc"));
            }),
            Reason::InvalidTenantId,
            "",
        ),
        (
            Box::new(|a| {
                remove(a, "clinic_id");
                a.push(json!({"key":"clinic_id","value":{"intValue":"7"}}));
            }),
            Reason::InvalidTenantId,
            "clinic_id must be a string, got 7",
        ),
        (
            Box::new(|a| {
                remove(a, "user_id");
                a.push(attr("user_id", "a/b"));
            }),
            Reason::InvalidUserId,
            "",
        ),
        (Box::new(|a| a.push(attr("gen_ai.request.model", "a model"))), Reason::InvalidModelId, ""),
        (
            Box::new(|a| {
                remove(a, "gen_ai.tool.name");
                a.push(attr("gen_ai.tool.name", &"t".repeat(257)));
            }),
            Reason::InvalidField,
            "",
        ),
        (
            Box::new(|a| {
                remove(a, "gen_ai.tool.name");
                a.push(attr("gen_ai.tool.name", "a\nb"));
            }),
            Reason::InvalidField,
            "",
        ),
    ];
    for (i, (f, reason, detail)) in cases.into_iter().enumerate() {
        let q = reject_of(with_attrs(f));
        assert_eq!(q.reason, reason, "case {i}: {}", q.detail);
        if !detail.is_empty() {
            assert_eq!(q.detail, detail, "case {i}");
        }
        assert_eq!(q.format, RawFormat::OtlpJson);
        assert_eq!(q.position, Position { event: Some(1), ..Default::default() });
    }
    // tenant_id alone, or agreeing with clinic_id, is the tenant; so is a configured field.
    let d = json(&request(
        json!([]),
        with_attrs(|a| {
            remove(a, "clinic_id");
            a.push(attr("tenant_id", "clinic-z"));
        }),
    ));
    assert_eq!(spans(&d)[0].tenant_id.as_str(), "clinic-z");
    let cfg = DecodeConfig::new("org_id", 1 << 20, 1 << 20).unwrap();
    let body = request(json!([attr("org_id", "org-1")]), with_attrs(|a| remove(a, "clinic_id")));
    let d = decode_json(body.as_bytes(), &src(), &cfg).unwrap();
    assert_eq!(spans(&d)[0].tenant_id.as_str(), "org-1");
}

#[test]
fn ids_times_and_status_refusals() {
    let set = |k: &str, v: Value| {
        let mut sp = base_span();
        sp[k] = v;
        reject_of(sp)
    };
    for (k, v, reason) in [
        ("traceId", json!("00000000000000000000000000000000"), Reason::InvalidEventId),
        ("traceId", json!("0af7651916cd43dd8448eb211c80319"), Reason::InvalidEventId),
        ("traceId", json!("CvdlGRbNQ92ESOshHIAxnA=="), Reason::InvalidEventId),
        ("spanId", json!("0000000000000000"), Reason::InvalidEventId),
        ("spanId", json!(""), Reason::InvalidEventId),
        ("parentSpanId", json!("xyz"), Reason::InvalidEventId),
        ("startTimeUnixNano", json!("0"), Reason::InvalidTimestamp),
        ("endTimeUnixNano", json!("1790841599999999999"), Reason::InvalidTimestamp),
        ("status", json!({"code": 7}), Reason::InvalidField),
    ] {
        assert_eq!(set(k, v.clone()).reason, reason, "{k} {v}");
    }
    assert_eq!(
        set("traceId", json!("00000000000000000000000000000000")).detail,
        "trace id \"00000000000000000000000000000000\" is all zero (invalid): 32 hex digits expected"
    );
    // An all-zero parent is the invalid id: a root span.
    let mut sp = base_span();
    sp["parentSpanId"] = json!("0000000000000000");
    assert_eq!(spans(&json(&request(json!([]), sp)))[0].parent_span_id, None);
}

#[test]
fn implausible_token_counts_and_durations_are_refused() {
    let mut sp = base_span();
    sp["endTimeUnixNano"] = json!("2399999999000000000");
    let r = reject_of(sp);
    assert_eq!(r.reason, Reason::ImplausibleValue);
    assert_eq!(r.detail, "span lasts 609158399000 ms, over the plausible maximum of 604800000 ms");
    let sp = with_attrs(|a| {
        a.push(json!({"key": "gen_ai.usage.input_tokens", "value": {"intValue": "5000000000000000000"}}));
    });
    let r = reject_of(sp);
    assert_eq!(r.reason, Reason::ImplausibleValue);
    assert_eq!(
        r.detail,
        "gen_ai.usage.input_tokens 5000000000000000000 is over the plausible maximum of \
         100000000 tokens per call"
    );
    // At the maximum, the span is kept with its count.
    let sp = with_attrs(|a| {
        a.push(json!({"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100000000"}}));
    });
    assert_eq!(spans(&json(&request(json!([]), sp)))[0].tokens.input, Some(100_000_000));
}

#[test]
fn what_the_json_decoder_accepts() {
    let mut sp = base_span();
    sp["startTimeUnixNano"] = json!(1_790_841_600_000_000_000_u64);
    sp["kind"] = json!("SPAN_KIND_INTERNAL");
    sp["status"] = json!({"code": "STATUS_CODE_ERROR", "message": null});
    sp["droppedAttributesCount"] = json!("3");
    sp["traceState"] = Value::Null;
    sp["somethingNew"] = json!({"nested": [1, 2, {"x": null}]});
    let attrs = sp["attributes"].as_array_mut().unwrap();
    attrs.extend([
        json!({"key": "gen_ai.usage.input_tokens", "value": {"intValue": 812}}),
        json!({"key": "gen_ai.usage.output_tokens", "value": {"intValue": "97"}}),
        json!({"key": "gen_ai.usage.total_tokens", "value": {"intValue": 9.09e2}}),
        json!({"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": "-1"}}),
        json!({"key": "gen_ai.usage.cache_read_input_tokens", "value": {"intValue": "5"}}),
        json!({"key": "gen_ai.usage.cache_creation.input_tokens", "value": {"stringValue": "5"}}),
        json!({"key": "d", "value": {"doubleValue": "NaN"}}),
        json!({"key": "d2", "value": {"doubleValue": 1.5}}),
        json!({"key": "b", "value": {"boolValue": true}}),
        json!({"key": "bytes", "value": {"bytesValue": "AQID"}}),
        json!({"key": "arr", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 1}, {}]}}}),
        json!({"key": "kv", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": false}}]}}}),
        json!({"key": "empty", "value": {}}),
        json!({"key": "no value"}),
        json!({"key": "null value", "value": null}),
    ]);
    let d = json(&request(json!(null), sp));
    let s = spans(&d)[0];
    assert_eq!(s.status, SpanStatus::Error);
    // Negative and string counts are no count, without falling back to the alias.
    assert_eq!(
        s.tokens,
        SpanTokens {
            input: Some(812),
            output: Some(97),
            total: Some(909),
            cache_read: None,
            cache_write: None
        }
    );
    // A span's attributes `null` are none (its context from the resource); a name longer than
    // can be held in place reads the same.
    let mut sp = base_span();
    sp["attributes"] = Value::Null;
    let long = format!("execute_tool {}", "x".repeat(60));
    sp["name"] = json!(long);
    let d = json(&request(json!([attr("tier", "basic"), attr("clinic_id", "clinic-a")]), sp));
    let s = spans(&d)[0];
    assert_eq!(
        (s.tenant_id.as_str(), s.name.as_str(), s.user_id.as_ref()),
        ("clinic-a", long.as_str(), None)
    );
    assert_eq!(json("{}").outcomes, []);
    assert_eq!(json(r#"{"resourceSpans":null}"#).outcomes, []);
    assert_eq!(json(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[]}]}]}"#).outcomes, []);
}

#[test]
fn bodies_that_are_not_requests_are_errors() {
    let cfg = DecodeConfig::default();
    for body in [&b"not json"[..], b"[1]", br#"{"resourceSpans":"x"}"#, b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"startTimeUnixNano\":-5}]}]}]}",
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"a","value":{"intValue":"1.5"}}]}]}]}]}"#,
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"a","value":{"stringValue":"x","intValue":1}}]}]}]}]}"#,
        b"\xff\xfe"] {
        let e = decode_json(body, &src(), &cfg).unwrap_err();
        assert!(matches!(e, OtlpError::Json(_)), "{e:?}");
        assert!(e.detail().starts_with("body is not an OTLP JSON ExportTraceServiceRequest: "), "{}", e.detail());
    }
    for body in [&b"\x0a\xff\xff\xff\xff\x0f"[..], b"\xff\xff", b"{\"resourceSpans\":[]}"] {
        let e = decode_proto(body, &src(), &cfg).unwrap_err();
        assert!(matches!(e, OtlpError::Protobuf(_)), "{e:?}");
        assert_eq!(e.to_string(), "body is not a protobuf ExportTraceServiceRequest");
    }
    assert!(decode_proto(b"", &src(), &cfg).unwrap().outcomes.is_empty());
}

#[test]
fn a_span_without_a_tenant_is_quarantined_without_its_events_and_replays_once_fixed() {
    let unfixed = STRANDS
        .replace(r#"{ "key": "clinic_id", "value": { "stringValue": "clinic-a-north" } },"#, "");
    let d = json(&unfixed);
    assert_eq!(d.outcomes.len(), 7);
    assert_private(&d);
    let Outcome::Reject(q) = &d.outcomes[2] else { panic!("{:?}", d.outcomes[2]) };
    assert_eq!(
        (q.reason, q.detail.as_str()),
        (Reason::MissingField, "clinic_id (or tenant_id) is missing")
    );
    assert_eq!(
        (q.format, q.position),
        (RawFormat::OtlpJson, Position { event: Some(3), ..Default::default() })
    );
    let mut raw: Value = serde_json::from_str(q.raw.as_deref().unwrap()).unwrap();
    let rs = &raw["resourceSpans"][0];
    assert_eq!(rs["resource"]["attributes"][0], attr("service.name", "clinic-assistant"));
    assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "strands.telemetry.tracer");
    let one = &rs["scopeSpans"][0]["spans"];
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["spanId"], "eee19b7ec3c1b178");
    assert_eq!(one[0]["startTimeUnixNano"], "1790841601700000000");
    assert!(one[0].get("events").is_none() && one[0].get("links").is_none());

    // Fix the attribute in place and replay the entry as a quarantine file line.
    raw["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
        .as_array_mut()
        .unwrap()
        .push(attr("clinic_id", "clinic-a-north"));
    let mut entry = q.as_ref().clone();
    entry.raw = Some(raw.to_string());
    let line = serde_json::to_string(&entry).unwrap();
    let mut out = Decoded::default();
    let qsrc = SourceUri::new("file:///quarantine/part-0.ndjson");
    Decoder::default().line(
        line.as_bytes(),
        &qsrc,
        Position { line: Some(1), ..Default::default() },
        &mut out,
    );
    assert_eq!(out.lineage, [src()]);
    let expected = spans(&json(STRANDS))[2].clone();
    assert_eq!(spans(&out), [&expected]);

    // Unfixed, it goes back to the quarantine as it was, position included.
    let mut out = Decoded::default();
    Decoder::default().line(
        serde_json::to_string(&**q).unwrap().as_bytes(),
        &qsrc,
        Position::default(),
        &mut out,
    );
    assert_eq!(only_reject(&out), &**q);
}

/// Patient-like text in every place a span can carry free text that the decoder does not
/// read: the status message, events, unknown span, resource and scope attributes, the trace
/// state. A refused span's quarantine entry keeps none of it, and still replays to the span.
#[test]
fn a_quarantined_span_keeps_no_free_text() {
    const TEXT: &str = "patient Jane Doe (1980-01-01) not found for clinic-a-north";
    let mut req: Value = serde_json::from_str(STRANDS).unwrap();
    let rs = &mut req["resourceSpans"][0];
    let res = rs["resource"]["attributes"].as_array_mut().unwrap();
    res.push(attr("host.note", TEXT));
    res.push(attr("process.command_line", TEXT));
    rs["scopeSpans"][0]["scope"]["attributes"] = json!([attr("scope.note", TEXT)]);
    let sp = &mut rs["scopeSpans"][0]["spans"][2];
    sp["status"] = json!({"code": 2, "message": TEXT});
    sp["traceState"] = json!(format!("vendor={}", TEXT.replace(' ', "_")));
    let attrs = sp["attributes"].as_array_mut().unwrap();
    attrs.retain(|a| a["key"] != "clinic_id");
    attrs.push(attr("app.note", TEXT));
    attrs.push(attr("gen_ai.tool.call.result", TEXT));
    attrs.push(attr("exception.message", TEXT));
    let d = json(&req.to_string());
    let Outcome::Reject(q) = &d.outcomes[2] else { panic!("{:?}", d.outcomes[2]) };
    assert_eq!(q.reason, Reason::MissingField);
    let entry = serde_json::to_string(&**q).unwrap();
    for p in ["Jane", "1980-01-01", "patient", "ReferralError", "note", "command_line"] {
        assert!(!entry.contains(p), "{p:?} kept: {entry}");
    }
    // Kept: what replaying needs, the tenant context on the resource and span included.
    let raw: Value = serde_json::from_str(q.raw.as_deref().unwrap()).unwrap();
    let rs = &raw["resourceSpans"][0];
    assert_eq!(rs["resource"]["attributes"], json!([attr("service.name", "clinic-assistant")]));
    assert_eq!(rs["scopeSpans"][0]["scope"], json!({"name": "strands.telemetry.tracer"}));
    let one = &rs["scopeSpans"][0]["spans"][0];
    assert_eq!(one["status"], json!({"code": 2}));
    let keys: Vec<&str> =
        one["attributes"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["tier", "actor_id", "gen_ai.operation.name", "gen_ai.tool.name"]);
    let mut fixed = raw.clone();
    fixed["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
        .as_array_mut()
        .unwrap()
        .push(attr("clinic_id", "clinic-a-north"));
    let replayed = json(&fixed.to_string());
    assert_eq!(spans(&replayed), [&spans(&json(STRANDS))[2].clone()]);
}

#[test]
fn protobuf_requests_keep_unknown_enum_values_and_bad_ids_per_span() {
    let mut req = strands_proto();
    let spans_ = &mut req.resource_spans[0].scope_spans[0].spans;
    spans_[0].trace_id = vec![0; 16];
    spans_[1].span_id = vec![1, 2, 3];
    spans_[2].status = Some(Status { code: 9, message: String::new() });
    let d = decode_proto(&req.encode_to_vec(), &src(), &DecodeConfig::default()).unwrap();
    let reasons: Vec<_> = d
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Reject(q) => Some(q.reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        &reasons[..4],
        [
            Some(Reason::InvalidEventId),
            Some(Reason::InvalidEventId),
            Some(Reason::InvalidField),
            None
        ]
    );
    assert_private(&d);
    let Outcome::Reject(q) = &d.outcomes[1] else { unreachable!() };
    assert!(
        q.detail.starts_with("span id \"010203\" is not hex of the right length"),
        "{}",
        q.detail
    );
    // The raw of a protobuf span is OTLP JSON too, and decodes to the same refusal.
    let again = json(q.raw.as_deref().unwrap());
    assert_eq!(only_reject(&again).detail, q.detail);
}

#[test]
fn spans_or_resources_over_the_attribute_limit_are_over_limit_and_deep_bodies_refused() {
    let cfg = DecodeConfig::default()
        .with_limits(crate::RecordLimits { attributes: 6, ..Default::default() })
        .unwrap();
    let decode = |body: &str| decode_json(body.as_bytes(), &src(), &cfg).unwrap();
    // Five attributes of its own and six on the resource: inside the limit.
    let six: Vec<Value> = (0..6).map(|i| attr(&format!("r{i}"), "x")).collect();
    assert_eq!(spans(&decode(&request(json!(six), base_span()))).len(), 1);
    let seven: Vec<Value> = (0..7).map(|i| attr(&format!("r{i}"), "x")).collect();
    let d = decode(&request(json!(seven), base_span()));
    let q = only_reject(&d);
    assert_eq!(q.reason, Reason::OverLimit);
    assert_eq!(q.detail, "the resource has 7 attributes, over the limit of 6");
    let sp = with_attrs(|a| a.extend((0..2).map(|i| attr(&format!("s{i}"), "x"))));
    let d = decode(&request(json!([]), sp));
    assert_eq!(only_reject(&d).detail, "the span has 7 attributes, over the limit of 6");
    // Trace requests are bounded by the parser's own 128 levels (not --max-json-depth, which
    // would scan every span line again): about 115 levels of JSON pass, 300 do not.
    let nested = |levels: usize| {
        let mut sp = base_span();
        sp["attributes"][0]["value"] = (0..levels)
            .fold(json!({"intValue": "1"}), |v, _| json!({"arrayValue": {"values": [v]}}));
        request(json!([]), sp)
    };
    assert!(decode_json(nested(35).as_bytes(), &src(), &DecodeConfig::default()).is_ok());
    let e = decode_json(nested(100).as_bytes(), &src(), &DecodeConfig::default()).unwrap_err();
    assert!(matches!(e, OtlpError::Json(_)), "{e:?}");
}
