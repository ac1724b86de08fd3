//! The shapes of real agent telemetry (reused agents, calls without usage, price classes,
//! profile ARNs), each decoded to the generator's expectation.

use super::*;

#[test]
fn reused_agents_and_calls_without_usage_decode_to_their_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let plain = SynthConfig { tenants: 6, noisy: 2, events: 20_000, ..SynthConfig::default() };
    let cfg = SynthConfig { reused_agent_permille: 150, missing_usage_permille: 20, ..plain };
    let expected = generate(&cfg, dir.path()).unwrap();
    let got = ingest(dir.path());
    assert_matches(&expected, &got);
    let tenants = &expected.tenants;

    // Reused agents: sessions of every size, each line after the first billed as increment.
    let mut sizes: BTreeMap<usize, i64> = BTreeMap::new();
    for ((_, session, _), lines) in got.sessions() {
        if session.starts_with("agent-") {
            *sizes.entry(lines.len()).or_default() += 1;
        }
    }
    assert_eq!(sizes.keys().copied().collect::<Vec<_>>(), [2, 3, 4, 5], "{sizes:?}");
    let cumulative: i64 = tenants.values().map(|t| t.cumulative_lines.unwrap()).sum();
    assert_eq!(cumulative, sizes.iter().map(|(&k, n)| (k as i64 - 1) * n).sum::<i64>());
    let in_sessions: i64 = sizes.iter().map(|(&k, n)| k as i64 * n).sum();
    let share = in_sessions as f64 / cfg.events as f64;
    assert!((0.12..0.22).contains(&share), "share of events in sessions {share}");
    for (tenant, t) in tenants {
        let b = t.billed.unwrap();
        assert_eq!(b.invocations, t.totals.invocations, "{tenant}");
        assert!(b.input_tokens <= t.totals.input_tokens, "{tenant}");
        assert_eq!(b.input_tokens < t.totals.input_tokens, t.cumulative_lines > Some(0));
    }
    assert!(tenants.values().filter(|t| t.cumulative_lines > Some(0)).count() >= 4);

    // Missing usage: about 2% of the other calls, in the logs and on their chat spans.
    let unknown: i64 = tenants.values().map(|t| t.usage_unknown.unwrap()).sum();
    let chat: i64 = tenants.values().map(|t| t.chat_usage_unknown.unwrap()).sum();
    assert_eq!(unknown as u64, expected.accounting.usage_unknown);
    assert_eq!(chat as u64, expected.accounting.span_usage_unknown);
    let share = unknown as f64 / cfg.events as f64;
    assert!((0.01..0.03).contains(&share), "share of calls without usage {share}");
    assert!(chat > 0);
    for (tenant, t) in tenants {
        assert_eq!(
            t.chat_usage_unknown > Some(0),
            t.tier == "premium" && t.usage_unknown > Some(0)
        );
        if t.tier == "basic" {
            assert_eq!(t.chat_usage_unknown, Some(0), "{tenant}");
        }
    }

    // expected.json holds it all, and reads back.
    let text = std::fs::read_to_string(dir.path().join("expected.json")).unwrap();
    for key in ["reused_agent_permille", "missing_usage_permille", "billed", "cumulative_lines"] {
        assert!(text.contains(&format!("\"{key}\": ")), "{key}");
    }
    assert!(text.contains("\"chat_usage_unknown\": "));
    let written: Expected = serde_json::from_str(&text).unwrap();
    assert_eq!(written, expected);

    // The rest is the month without the shapes: the same records, deliveries and spans.
    let dir = tempfile::tempdir().unwrap();
    let without = generate(&plain, dir.path()).unwrap();
    let mut acc = expected.accounting.clone();
    (acc.usage_unknown, acc.span_usage_unknown) = (0, 0);
    assert_eq!(acc, without.accounting);
    assert_eq!(expected.files, without.files);
    let count = |e: &Expected| -> Vec<(String, i64)> {
        e.tenants.iter().map(|(t, x)| (t.clone(), x.totals.invocations)).collect()
    };
    assert_eq!(count(&expected), count(&without));
    assert_eq!(expected.runaway_invocations, without.runaway_invocations);
    // Off, nothing of them is written: expected.json is what it was before they existed.
    let off = std::fs::read_to_string(dir.path().join("expected.json")).unwrap();
    for key in ["reused_agent", "missing_usage", "billed", "cumulative_lines", "chat_usage"] {
        assert!(!off.contains(key), "{key}");
    }
    let off: serde_json::Value = serde_json::from_str(&off).unwrap();
    for t in off["tenants"].as_object().unwrap().values() {
        assert_eq!(t.as_object().unwrap().len(), 7, "the tier and the six sums alone: {t}");
    }
}

#[test]
fn price_classes_decode_to_their_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let plain = SynthConfig { tenants: 6, noisy: 2, events: 20_000, ..SynthConfig::default() };
    let cfg = SynthConfig {
        price_class_permille: 100,
        reused_agent_permille: 100,
        missing_usage_permille: 20,
        ..plain.clone()
    };
    let expected = generate(&cfg, dir.path()).unwrap();
    let got = ingest(dir.path());
    // Per tenant and class, and the usage_hourly rows they make.
    assert_matches(&expected, &got);
    let mut by_class: BTreeMap<String, Totals> = BTreeMap::new();
    for t in expected.tenants.values() {
        for (class, x) in t.classes.as_ref().unwrap() {
            let c = by_class.entry(class.clone()).or_default();
            c.invocations += x.invocations;
            c.input_tokens += x.input_tokens;
            c.cache_write_1h_tokens += x.cache_write_1h_tokens;
        }
        if t.tier == "premium" {
            assert_eq!(t.classes.as_ref().unwrap().keys().collect::<Vec<_>>(), ["standard/0"]);
        }
    }
    assert_eq!(
        by_class.keys().collect::<Vec<_>>(),
        ["batch/0", "flex/0", "priority/0", "standard/0", "standard/200000"]
    );
    let long = &by_class["standard/200000"];
    assert!(long.input_tokens > long.invocations * 200_000);
    assert!(by_class["standard/0"].cache_write_1h_tokens > 0);
    let classed: i64 =
        by_class.iter().filter(|(k, _)| *k != "standard/0").map(|(_, c)| c.invocations).sum();
    let basic: i64 =
        expected.tenants.values().filter(|t| t.tier == "basic").map(|t| t.totals.invocations).sum();
    let share = classed as f64 / basic as f64;
    // 10 % of the basic calls that are not a session's or missing their usage, 4/5 of them
    // in another class than standard/0 (1-hour writes stay in it).
    assert!((0.06..0.1).contains(&share), "share of basic calls with a class {share}");
    let text = std::fs::read_to_string(dir.path().join("expected.json")).unwrap();
    for key in ["price_class_permille", "classes", "cache_write_1h_tokens", "standard/200000"] {
        assert!(text.contains(&format!("\"{key}\"")), "{key}");
    }
    let written: Expected = serde_json::from_str(&text).unwrap();
    assert_eq!(written, expected);
    // The same files as the month without the classes (longer lines batch differently, so
    // the records within them may not be the same).
    let dir = tempfile::tempdir().unwrap();
    let without = generate(
        &SynthConfig { reused_agent_permille: 100, missing_usage_permille: 20, ..plain },
        dir.path(),
    )
    .unwrap();
    assert_eq!(expected.files, without.files);
    assert_eq!(expected.accounting.events_written, without.accounting.events_written);
}

#[test]
fn profile_arns_decode_to_their_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        tenants: 6,
        noisy: 2,
        events: 12_000,
        span_permille: 500,
        profile_arn_permille: 200,
        reused_agent_permille: 100,
        ..SynthConfig::default()
    };
    let expected = generate(&cfg, dir.path()).unwrap();
    // Per tenant and profile, the rows they make (spans under the ARN too), the agents.
    assert_matches(&expected, &ingest(dir.path()));
    let listing: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("inference-profiles.json")).unwrap(),
    )
    .unwrap();
    let listed: Vec<&str> = listing["inferenceProfileSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["inferenceProfileArn"].as_str().unwrap())
        .collect();
    let (mut calls, mut premium) = (0, 0);
    for t in expected.tenants.values() {
        let profiles = t.profiles.as_ref().unwrap();
        if t.tier == "basic" {
            assert!(profiles.is_empty());
            continue;
        }
        premium += t.totals.invocations;
        for (arn, x) in profiles {
            assert!(listed.contains(&arn.as_str()), "{arn}");
            calls += x.invocations;
        }
    }
    let share = calls as f64 / premium as f64;
    // 20 % of the premium calls that are not a reused agent's.
    assert!((0.14..0.22).contains(&share), "share of premium calls under a profile {share}");
    let text = std::fs::read_to_string(dir.path().join("expected.json")).unwrap();
    assert!(text.contains("\"profile_arn_permille\": 200"));
    assert_eq!(serde_json::from_str::<Expected>(&text).unwrap(), expected);
}
