//! Reading `GetCostAndUsage` responses: hand-written fixtures of the real shape, every rule and
//! every error message.

use chrono::NaiveDate;
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};

use super::*;

/// Page 1 of October 2026, as `aws ce get-cost-and-usage --granularity DAILY --metrics
/// UnblendedCost --group-by Type=TAG,Key=Tier` prints it: more pages follow.
pub(crate) const PAGE1: &str = r#"{
    "GroupDefinitions": [
        {
            "Type": "TAG",
            "Key": "Tier"
        }
    ],
    "ResultsByTime": [
        {
            "TimePeriod": {
                "Start": "2026-10-01",
                "End": "2026-10-02"
            },
            "Total": {},
            "Groups": [
                {
                    "Keys": ["Tier$basic"],
                    "Metrics": {"UnblendedCost": {"Amount": "1.2345678901", "Unit": "USD"}}
                },
                {
                    "Keys": ["Tier$premium"],
                    "Metrics": {"UnblendedCost": {"Amount": "10.50", "Unit": "USD"}}
                },
                {
                    "Keys": ["Tier$"],
                    "Metrics": {"UnblendedCost": {"Amount": "0.0200000000", "Unit": "USD"}}
                }
            ],
            "Estimated": false
        },
        {
            "TimePeriod": {
                "Start": "2026-10-02",
                "End": "2026-10-03"
            },
            "Total": {},
            "Groups": [
                {
                    "Keys": ["Tier$basic"],
                    "Metrics": {"UnblendedCost": {"Amount": "-0.75", "Unit": "USD"}}
                },
                {
                    "Keys": ["Tier$premium"],
                    "Metrics": {"UnblendedCost": {"Amount": "2.5E-7", "Unit": "USD"}}
                },
                {
                    "Keys": ["Tier$team$blue"],
                    "Metrics": {"UnblendedCost": {"Amount": "3", "Unit": "USD"}}
                }
            ],
            "Estimated": false
        }
    ],
    "DimensionValueAttributes": [],
    "NextPageToken": "AAMA-EFRSURBSGl6Y2FsaXR5"
}"#;

/// Page 2: the last one. The 3rd is estimated; on the 4th nothing carried the tag, so there
/// are no groups and only a Total; the 5th had no cost at all.
pub(super) const PAGE2: &str = r#"{
    "GroupDefinitions": [{"Type": "TAG", "Key": "Tier"}],
    "ResultsByTime": [
        {
            "TimePeriod": {"Start": "2026-10-03", "End": "2026-10-04"},
            "Total": {},
            "Groups": [
                {
                    "Keys": ["Tier$basic"],
                    "Metrics": {"UnblendedCost": {"Amount": "4.10", "Unit": "USD"}}
                },
                {
                    "Keys": ["Tier$Premium"],
                    "Metrics": {"UnblendedCost": {"Amount": "-1.4210854715202004E-14", "Unit": "USD"}}
                }
            ],
            "Estimated": true
        },
        {
            "TimePeriod": {"Start": "2026-10-04", "End": "2026-10-05"},
            "Total": {"UnblendedCost": {"Amount": "0.31", "Unit": "USD"}},
            "Groups": [],
            "Estimated": true
        },
        {
            "TimePeriod": {"Start": "2026-10-05", "End": "2026-10-06"},
            "Total": {},
            "Groups": [],
            "Estimated": true
        }
    ],
    "DimensionValueAttributes": []
}"#;

pub(super) fn october() -> CostQuery {
    CostQuery::month(day("2026-10-01"))
}

pub(super) fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn row(date: &str, group: Option<&str>, amount: Decimal, estimated: bool) -> DailyCost {
    DailyCost {
        date: day(date),
        group: group.map_or(CostGroup::Untagged, |g| CostGroup::Tagged(g.into())),
        amount,
        unit: "USD".into(),
        estimated,
    }
}

/// What PAGE1 then PAGE2 hold, sorted by day then group (tagged values first, untagged last).
pub(super) fn expected_rows() -> Vec<DailyCost> {
    vec![
        row("2026-10-01", Some("basic"), dec!(1.2345678901), false),
        row("2026-10-01", Some("premium"), dec!(10.50), false),
        row("2026-10-01", None, dec!(0.02), false),
        row("2026-10-02", Some("basic"), dec!(-0.75), false),
        row("2026-10-02", Some("premium"), dec!(0.00000025), false),
        row("2026-10-02", Some("team$blue"), dec!(3), false),
        row("2026-10-03", Some("Premium"), dec!(-0.000000000000014210854715202), true),
        row("2026-10-03", Some("basic"), dec!(4.10), true),
        row("2026-10-04", None, dec!(0.31), true),
    ]
}

pub(super) fn both_pages() -> String {
    format!("[{PAGE1},{PAGE2}]")
}

#[test]
fn two_pages_give_every_row_exactly() {
    let report = parse_file(&both_pages(), &october()).unwrap();
    assert_eq!(report.metric, "UnblendedCost");
    assert_eq!(report.tag_key, "Tier");
    assert_eq!(report.pages, 2);
    assert_eq!(report.days, expected_rows());
    assert_eq!(report.total(), dec!(18.4145681401) - dec!(0.000000000000014210854715202));
    assert_eq!(
        report.estimated_days().into_iter().collect::<Vec<_>>(),
        [day("2026-10-03"), day("2026-10-04")]
    );
    let by_group = report.totals_by_group().unwrap();
    assert_eq!(by_group[&CostGroup::Untagged], dec!(0.33));
    assert_eq!(by_group[&CostGroup::Tagged("basic".into())], dec!(4.5845678901));
    // The scale Cost Explorer wrote is kept.
    assert_eq!(report.days[2].amount.to_string(), "0.0200000000");
}

#[test]
fn a_single_response_object_is_one_page() {
    let report = parse_file(PAGE2, &october()).unwrap();
    assert_eq!(report.pages, 1);
    assert_eq!(report.days, expected_rows()[6..]);
}

/// The aws-cli documentation's example (`--group-by Type=TAG,Key=Environment`), daily and with
/// that one GroupBy: `Environment$` is untagged.
#[test]
fn aws_cli_style_environment_keys() {
    let text = r#"{
        "GroupDefinitions": [{"Type": "TAG", "Key": "Environment"}],
        "ResultsByTime": [{
            "TimePeriod": {"Start": "2017-09-01", "End": "2017-09-02"},
            "Total": {},
            "Groups": [
                {"Keys": ["Environment$"], "Metrics": {
                    "BlendedCost": {"Amount": "0.0123466541", "Unit": "USD"},
                    "UnblendedCost": {"Amount": "0.0123466541", "Unit": "USD"},
                    "UsageQuantity": {"Amount": "10493.0925777398", "Unit": "N/A"}}},
                {"Keys": ["Environment$Dev"], "Metrics": {
                    "BlendedCost": {"Amount": "0.0000000081", "Unit": "USD"},
                    "UnblendedCost": {"Amount": "0.0000000081", "Unit": "USD"},
                    "UsageQuantity": {"Amount": "0.0000093", "Unit": "N/A"}}}
            ],
            "Estimated": false
        }]
    }"#;
    let mut query = CostQuery::new(day("2017-09-01"), day("2017-10-01"));
    query.tag_key = "Environment".into();
    let report = parse_file(text, &query).unwrap();
    assert_eq!(report.days[0].group, CostGroup::Tagged("Dev".into()));
    assert_eq!(report.days[0].amount, dec!(0.0000000081));
    assert_eq!(report.days[1].group, CostGroup::Untagged);

    query.metric = "UsageQuantity".into();
    let report = parse_file(text, &query).unwrap();
    assert_eq!(report.total(), dec!(10493.0925870398));
    assert!(report.days.iter().all(|row| row.unit == "N/A"));

    // The example as printed, grouped by SERVICE and the tag, is refused: two GroupBys.
    let verbatim = text
        .replace(
            r#""GroupDefinitions": [{"Type": "TAG", "Key": "Environment"}]"#,
            r#""GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "TAG", "Key": "Environment"}]"#,
        )
        .replace(r#"["Environment$"#, r#"["Amazon Simple Storage Service", "Environment$"#);
    assert_eq!(
        parse_file(&verbatim, &query).unwrap_err().to_string(),
        r#"page 1: GroupDefinitions [DIMENSION "SERVICE", TAG "Environment"] are not the single GroupBy TAG "Environment""#
    );
    let without_definitions = verbatim.replacen("GroupDefinitions", "Ignored", 1);
    assert_eq!(
        parse_file(&without_definitions, &query).unwrap_err().to_string(),
        "page 1, ResultsByTime[0] (2017-09-01): a group has 2 Keys; expected one (GroupBy a single TAG)"
    );
}

#[test]
fn group_keys_split_at_the_first_dollar() {
    assert_eq!(
        CostGroup::from_key("Tier", "Tier$premium"),
        Some(CostGroup::Tagged("premium".into()))
    );
    assert_eq!(CostGroup::from_key("Tier", "Tier$a$b$"), Some(CostGroup::Tagged("a$b$".into())));
    assert_eq!(CostGroup::from_key("Tier", "Tier$"), Some(CostGroup::Untagged));
    assert_eq!(CostGroup::from_key("Tier", "Tier$$"), Some(CostGroup::Tagged("$".into())));
    for other in ["Tier", "Tiers$x", "tier$x", "Environment$Tier$x", "$Tier$x", ""] {
        assert_eq!(CostGroup::from_key("Tier", other), None, "{other}");
    }
    assert_eq!(CostGroup::Tagged("a$b".into()).key("Tier"), "Tier$a$b");
    assert_eq!(CostGroup::Untagged.key("Tier"), "Tier$");
    assert_eq!(CostGroup::Untagged.to_string(), "(untagged)");
}

#[test]
fn month_query_covers_the_calendar_month() {
    let q = CostQuery::month(day("2026-12-01"));
    assert_eq!((q.start, q.end), (day("2026-12-01"), day("2027-01-01")));
    let q = CostQuery::month(day("2028-02-17"));
    assert_eq!((q.start, q.end), (day("2028-02-01"), day("2028-03-01")));
    assert_eq!(
        (q.metric.as_str(), q.tag_key.as_str(), &q.filter),
        ("UnblendedCost", "Tier", &None)
    );
    q.validate().unwrap();
    for metric in METRICS {
        CostQuery { metric: metric.into(), ..october() }.validate().unwrap();
    }
}

#[test]
fn invalid_queries_name_the_field() {
    let cases = [
        (
            CostQuery { metric: "Unblended".into(), ..october() },
            "invalid cost query: metric \"Unblended\" is not a Cost Explorer metric (one of \
             AmortizedCost, BlendedCost, NetAmortizedCost, NetUnblendedCost, \
             NormalizedUsageAmount, UnblendedCost, UsageQuantity)",
        ),
        (
            CostQuery { end: day("2026-10-01"), ..october() },
            "invalid cost query: end \"2026-10-01\" is not after start 2026-10-01 (end is exclusive)",
        ),
        (
            CostQuery { tag_key: String::new(), ..october() },
            "invalid cost query: tag_key \"\" is empty",
        ),
        (
            CostQuery { tag_key: "Ti$er".into(), ..october() },
            "invalid cost query: tag_key \"Ti$er\" contains `$`, which Cost Explorer uses to join \
             the tag key and value",
        ),
        (
            october().with_filter("CostCenter", Vec::<String>::new()),
            "invalid cost query: filter.values \"\" is empty (give at least one tag value)",
        ),
        (october().with_filter("", ["x"]), "invalid cost query: filter.key \"\" is empty"),
    ];
    for (query, message) in cases {
        assert_eq!(query.validate().unwrap_err().to_string(), message);
        assert_eq!(parse_file(PAGE2, &query).unwrap_err().to_string(), message);
    }
}

/// A `ResultsByTime` entry for `day` with `(key, amount)` groups.
fn result(start: &str, groups: &[(&str, &str)], estimated: bool) -> Value {
    let next = day(start).succ_opt().unwrap().to_string();
    let groups: Vec<Value> = groups
        .iter()
        .map(|(key, amount)| {
            json!({"Keys": [key], "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}})
        })
        .collect();
    json!({"TimePeriod": {"Start": start, "End": next}, "Total": {}, "Groups": groups, "Estimated": estimated})
}

fn page(results: Vec<Value>, next: Option<&str>) -> Value {
    let mut page =
        json!({"GroupDefinitions": [{"Type": "TAG", "Key": "Tier"}], "ResultsByTime": results});
    if let Some(token) = next {
        page["NextPageToken"] = json!(token);
    }
    page
}

fn error_of(file: &Value) -> String {
    parse_file(&file.to_string(), &october()).unwrap_err().to_string()
}

#[test]
fn a_bad_amount_names_page_result_day_and_group() {
    let ok = |d: &str| result(d, &[("Tier$basic", "1")], false);
    let file = json!([
        page(vec![ok("2026-10-01")], Some("p2")),
        page(
            vec![
                ok("2026-10-02"),
                ok("2026-10-03"),
                result("2026-10-05", &[], false),
                result("2026-10-04", &[("Tier$basic", "1"), ("Tier$premium", "abc")], false),
            ],
            None
        ),
    ]);
    assert_eq!(
        error_of(&file),
        r#"page 2, ResultsByTime[3] (2026-10-04), group Tier$premium: Amount "abc" is not a decimal"#
    );
    let file = page(vec![result("2026-10-01", &[("Tier$x", "1e30")], false)], None);
    assert_eq!(
        error_of(&file),
        r#"page 1, ResultsByTime[0] (2026-10-01), group Tier$x: Amount "1e30" is out of range for a decimal"#
    );
    let file = page(
        vec![result(
            "2026-10-01",
            &[("Tier$x", "79228162514264337593543950335"), ("Tier$y", "1")],
            false,
        )],
        None,
    );
    assert_eq!(
        error_of(&file),
        "page 1, ResultsByTime[0] (2026-10-01), group Tier$y: the sum of the amounts so far \
         overflows a decimal"
    );
}

#[test]
fn metric_amount_and_unit_must_be_there() {
    let mut file = page(vec![result("2026-10-01", &[("Tier$basic", "1")], false)], None);
    let metrics = &mut file["ResultsByTime"][0]["Groups"][0]["Metrics"];
    *metrics = json!({"BlendedCost": {"Amount": "1", "Unit": "USD"}, "UsageQuantity": {}});
    assert_eq!(
        error_of(&file),
        "page 1, ResultsByTime[0] (2026-10-01), group Tier$basic: Metrics has no UnblendedCost \
         (it has: BlendedCost, UsageQuantity)"
    );
    file["ResultsByTime"][0]["Groups"][0]["Metrics"] = json!({"UnblendedCost": {"Unit": "USD"}});
    assert_eq!(
        error_of(&file),
        "page 1, ResultsByTime[0] (2026-10-01), group Tier$basic: UnblendedCost.Amount is missing"
    );
    file["ResultsByTime"][0]["Groups"][0]["Metrics"] = json!({"UnblendedCost": {"Amount": "1"}});
    assert_eq!(
        error_of(&file),
        "page 1, ResultsByTime[0] (2026-10-01), group Tier$basic: UnblendedCost.Unit is missing"
    );
}

#[test]
fn every_row_has_the_same_unit() {
    let mut file = page(
        vec![
            result("2026-10-01", &[("Tier$basic", "1")], false),
            result("2026-10-02", &[("Tier$premium", "2"), ("Tier$basic", "1")], false),
        ],
        None,
    );
    file["ResultsByTime"][1]["Groups"][1]["Metrics"]["UnblendedCost"]["Unit"] = json!("EUR");
    assert_eq!(
        error_of(&file),
        r#"page 1, ResultsByTime[1] (2026-10-02), group Tier$basic: Unit "EUR" differs from "USD" at page 1, ResultsByTime[0] (2026-10-01), group Tier$basic"#
    );
}

#[test]
fn a_key_of_another_tag_is_named() {
    for key in ["Environment$prod", "Tiers$basic", "Tier"] {
        let file =
            page(vec![result("2026-10-01", &[("Tier$basic", "1"), (key, "1")], false)], None);
        assert_eq!(
            error_of(&file),
            format!(
                r#"page 1, ResultsByTime[0] (2026-10-01), group {key}: the key is not of the tag "Tier" (expected "Tier$<value>")"#
            )
        );
    }
    // A key that cannot be printed safely is escaped.
    let file = page(vec![result("2026-10-01", &[("Other\n$x", "1")], false)], None);
    assert!(error_of(&file).contains(r#"group "Other\n$x": the key"#), "{}", error_of(&file));
}

#[test]
fn days_must_be_daily_and_inside_the_query() {
    for outside in ["2026-11-01", "2026-09-30"] {
        let file = page(vec![result(outside, &[("Tier$basic", "1")], false)], None);
        assert_eq!(
            error_of(&file),
            format!(
                "page 1, ResultsByTime[0] ({outside}): the day is outside the query's period \
                 2026-10-01 to 2026-11-01 (end exclusive)"
            )
        );
    }
    let mut file = page(vec![result("2026-10-01", &[], false)], None);
    file["ResultsByTime"][0]["TimePeriod"]["End"] = json!("2026-11-01");
    assert_eq!(
        error_of(&file),
        r#"page 1, ResultsByTime[0] (2026-10-01): TimePeriod.End "2026-11-01" is not the day after Start (DAILY results expected)"#
    );
    for bad in ["2026-10-1", "2026-13-01", "01/10/2026", "2026-10-01T00:00:00Z", ""] {
        file["ResultsByTime"][0]["TimePeriod"]["Start"] = json!(bad);
        assert_eq!(
            error_of(&file),
            format!(
                "page 1, ResultsByTime[0]: TimePeriod.Start {bad:?} is not a date (YYYY-MM-DD)"
            )
        );
    }
}

#[test]
fn a_day_and_group_given_twice_is_refused() {
    let file = json!([
        page(
            vec![result("2026-10-01", &[("Tier$basic", "1"), ("Tier$premium", "2")], false)],
            Some("t")
        ),
        page(vec![result("2026-10-01", &[("Tier$Basic", "1"), ("Tier$basic", "1")], false)], None),
    ]);
    assert_eq!(
        error_of(&file),
        "page 2, ResultsByTime[0] (2026-10-01), group Tier$basic: the same day and group as \
         page 1, ResultsByTime[0] (2026-10-01), group Tier$basic (a duplicate row)"
    );
    // A day whose groups continue on the next page is fine.
    let file = json!([
        page(vec![result("2026-10-01", &[("Tier$basic", "1")], true)], Some("t")),
        page(vec![result("2026-10-01", &[("Tier$premium", "2")], false)], None),
    ]);
    let report = parse_file(&file.to_string(), &october()).unwrap();
    assert_eq!(report.days.len(), 2);
    assert!(report.days.iter().all(|row| row.estimated), "the day is estimated as a whole");
    // The untagged row from a Total collides with an explicit `Tier$` group of the same day.
    let mut total_only = result("2026-10-01", &[], false);
    total_only["Total"] = json!({"UnblendedCost": {"Amount": "0.5", "Unit": "USD"}});
    let file = json!([
        page(vec![result("2026-10-01", &[("Tier$", "1")], false)], Some("t")),
        page(vec![total_only], None),
    ]);
    assert_eq!(
        error_of(&file),
        "page 2, ResultsByTime[0] (2026-10-01), Total: the same day and group as page 1, \
         ResultsByTime[0] (2026-10-01), group Tier$ (a duplicate row)"
    );
}

#[test]
fn a_total_without_groups_is_untagged_cost() {
    let mut r = result("2026-10-07", &[], false);
    r["Total"] = json!({"UnblendedCost": {"Amount": "0E-10", "Unit": "USD"}});
    let report = parse_file(&page(vec![r.clone()], None).to_string(), &october()).unwrap();
    assert!(report.days.is_empty(), "a zero Total adds no row");
    r["Total"] = json!({"UnblendedCost": {"Amount": "-0.5", "Unit": "USD"}});
    let report = parse_file(&page(vec![r.clone()], None).to_string(), &october()).unwrap();
    assert_eq!(report.days, [row("2026-10-07", None, dec!(-0.5), false)]);
    r["Total"] = json!({"UnblendedCost": {"Amount": "x", "Unit": "USD"}});
    assert_eq!(
        error_of(&page(vec![r.clone()], None)),
        r#"page 1, ResultsByTime[0] (2026-10-07), Total: Amount "x" is not a decimal"#
    );
    r["Total"] = json!({"BlendedCost": {"Amount": "1", "Unit": "USD"}});
    assert_eq!(
        error_of(&page(vec![r], None)),
        "page 1, ResultsByTime[0] (2026-10-07), Total: Total has no UnblendedCost (it has: \
         BlendedCost)"
    );
}

#[test]
fn an_incomplete_file_is_refused() {
    assert_eq!(
        parse_file(PAGE1, &october()).unwrap_err().to_string(),
        r#"page 1: NextPageToken "AAMA-EFRSURBSGl6Y2FsaXR5" is set but no page follows (the file is incomplete)"#
    );
    // An empty token means no more pages.
    let file = page(vec![result("2026-10-01", &[("Tier$basic", "1")], false)], Some(""));
    assert_eq!(parse_file(&file.to_string(), &october()).unwrap().days.len(), 1);
}

#[test]
fn text_that_is_not_a_response_is_a_json_error() {
    let query = october();
    let json_error = |text: &str| match parse_file(text, &query).unwrap_err() {
        CostError::Json { page, source } => (page, source.to_string()),
        other => panic!("not a JSON error: {other}"),
    };
    let err = parse_file("not json", &query).unwrap_err();
    assert_eq!(
        err.to_string(),
        "costs file: not JSON (one GetCostAndUsage response or an array of them)"
    );
    assert_eq!(json_error("not json"), (None, "expected ident at line 1 column 2".into()));
    assert_eq!(
        json_error(r#""text""#),
        (
            None,
            "invalid type: string \"text\", expected a GetCostAndUsage response object or an \
             array of them at line 1 column 6"
                .into()
        )
    );
    assert_eq!(
        json_error("[]"),
        (None, "an empty array holds no GetCostAndUsage response at line 1 column 2".into())
    );
    assert_eq!(json_error(&format!("{PAGE2} x")).0, None);

    let missing_estimated = PAGE2.replacen(r#""Estimated": true"#, r#""Other": true"#, 1);
    let err = parse_file(&format!("[{PAGE1},{missing_estimated}]"), &query).unwrap_err();
    assert_eq!(err.to_string(), "costs file, page 2: not a GetCostAndUsage response");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.starts_with("missing field `Estimated` at line 73 column 9"), "{source}");
    assert_eq!(json_error(r#"{"Groups": []}"#).0, Some(1));
    assert_eq!(json_error(r#"[{"ResultsByTime": []}, 7]"#).0, Some(2));
}

#[test]
fn a_report_written_back_reads_the_same() {
    let report = parse_file(&both_pages(), &october()).unwrap();
    let json = to_response_json(&report);
    assert_eq!(json["GroupDefinitions"], json!([{"Type": "TAG", "Key": "Tier"}]));
    assert_eq!(json["ResultsByTime"][1]["Groups"][2]["Keys"], json!(["Tier$team$blue"]));
    assert_eq!(
        json["ResultsByTime"][0]["Groups"][2]["Metrics"]["UnblendedCost"],
        json!({"Amount": "0.0200000000", "Unit": "USD"})
    );
    assert_eq!(json["ResultsByTime"][3]["Groups"][0]["Keys"], json!(["Tier$"]));
    let again = parse_file(&json.to_string(), &october()).unwrap();
    assert_eq!(again, CostReport { pages: 1, ..report });
}

fn arb_group() -> impl Strategy<Value = CostGroup> {
    prop_oneof![Just(CostGroup::Untagged), "[a-zA-Z0-9$_ -]{1,12}".prop_map(CostGroup::Tagged),]
}

fn arb_amount() -> impl Strategy<Value = Decimal> {
    (any::<i64>(), 0_u32..=12).prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale))
}

proptest! {
    #[test]
    fn any_report_round_trips_through_response_json(
        rows in prop::collection::btree_map((0_u64..31, arb_group()), arb_amount(), 0..40),
        estimated in prop::collection::btree_set(0_u64..31, 0..10),
        metric in prop::sample::select(METRICS.to_vec()),
    ) {
        let start = day("2026-10-01");
        let days = rows
            .into_iter()
            .map(|((offset, group), amount)| DailyCost {
                date: start + chrono::Days::new(offset),
                group,
                amount,
                unit: "USD".into(),
                estimated: estimated.contains(&offset),
            })
            .collect();
        let report = CostReport { metric: metric.into(), tag_key: "Tier".into(), days, pages: 1 };
        let query = CostQuery { metric: metric.into(), ..october() };
        let again = parse_file(&to_response_json(&report).to_string(), &query).unwrap();
        prop_assert_eq!(again, report);
    }
}
