//! gen → ingest → DuckDB: exact totals, both tables agreeing, idempotent re-ingest.

use std::path::Path;

use crate::util::*;

const GEN: &[&str] = &["--tenants", "12", "--events", "30000", "--seed", "7"];

fn per_tenant(lake: &Path, table_name: &str, count: &str) -> Vec<(String, [i64; 6])> {
    let sql = format!(
        "SELECT tenant_id, {count} AS n, sum(input_tokens) AS i, sum(output_tokens) AS o, \
         sum(total_tokens) AS t, sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw \
         FROM {} GROUP BY tenant_id ORDER BY tenant_id",
        table(lake, table_name)
    );
    duckdb(&sql)
        .into_iter()
        .map(|r| {
            let g = |k: &str| r[k].as_i64().unwrap();
            (
                r["tenant_id"].as_str().unwrap().to_owned(),
                [g("n"), g("i"), g("o"), g("t"), g("cr"), g("cw")],
            )
        })
        .collect()
}

#[test]
fn generated_month_lands_exactly_and_duckdb_reads_both_tables() {
    let dir = tempfile::tempdir().unwrap();
    let expected = generate(&dir.path().join("gen"), GEN);
    let lake = dir.path().join("lake");
    let summary = ingest(&lake, &[&dir.path().join("gen/input")], &[]);
    assert_eq!(accounting(&summary), expected.accounting);
    assert_eq!(summary["balanced"], true);

    let want: Vec<(String, [i64; 6])> = expected
        .tenants
        .iter()
        .map(|(t, x)| {
            (
                t.clone(),
                [
                    x.totals.invocations,
                    x.totals.input_tokens,
                    x.totals.output_tokens,
                    x.totals.total_tokens,
                    x.totals.cache_read_tokens,
                    x.totals.cache_write_tokens,
                ],
            )
        })
        .collect();
    assert_eq!(per_tenant(&lake, "usage_events", "count(*)"), want);
    assert_eq!(per_tenant(&lake, "usage_hourly", "sum(invocations)"), want);

    let events = table(&lake, "usage_events");
    let hourly = table(&lake, "usage_hourly");
    assert_eq!(
        duckdb_int(&format!("SELECT count(*) FROM {events}")),
        expected.accounting.events_written as i64
    );
    assert_eq!(
        duckdb_int(&format!("SELECT count(DISTINCT event_id) FROM {events}")),
        expected.accounting.events_written as i64
    );
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {hourly}")), expected.hourly_rows as i64);

    // Per day, and every row in the partition of its own UTC date.
    let days = duckdb(&format!(
        "SELECT dt::VARCHAR AS dt, count(*) AS n, sum(total_tokens) AS t FROM {events} GROUP BY 1 ORDER BY 1"
    ));
    let want_days: Vec<_> =
        expected.days.iter().map(|(d, x)| (d.clone(), x.invocations, x.total_tokens)).collect();
    let got_days: Vec<_> = days
        .iter()
        .map(|r| {
            (
                r["dt"].as_str().unwrap().to_owned(),
                r["n"].as_i64().unwrap(),
                r["t"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got_days, want_days);
    let misplaced = format!(
        "SELECT count(*) FROM {events} WHERE strftime(make_timestamp(epoch_ms(event_time) * 1000), '%Y-%m-%d') <> dt::VARCHAR"
    );
    assert_eq!(duckdb_int(&misplaced), 0);

    // usage_hourly is exactly the rollup of usage_events, both ways.
    let rollup = format!(
        "SELECT epoch_ms(time_bucket(INTERVAL 1 HOUR, make_timestamp(epoch_ms(event_time) * 1000))) AS h, tier, tenant_id, user_id, model_id, \
         count(*) AS n, sum(input_tokens) AS i, sum(output_tokens) AS o, sum(total_tokens) AS t, sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw \
         FROM {events} GROUP BY ALL"
    );
    // Rows without invocations hold only span counts: a tool or model call that ran in the
    // hour after its invocation started.
    let rows = format!(
        "SELECT epoch_ms(hour) AS h, tier, tenant_id, user_id, model_id, invocations AS n, input_tokens AS i, output_tokens AS o, \
         total_tokens AS t, cache_read_tokens AS cr, cache_write_tokens AS cw FROM {hourly} WHERE invocations > 0"
    );
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM (({rollup}) EXCEPT ({rows}))")), 0);
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM (({rows}) EXCEPT ({rollup}))")), 0);
    let span_only = duckdb_int(&format!(
        "SELECT count(*) FROM {hourly} WHERE invocations = 0 AND total_tokens = 0 \
         AND (tool_calls > 0 OR chat_calls > 0) AND agent_invocations = 0"
    ));
    let zero = duckdb_int(&format!("SELECT count(*) FROM {hourly} WHERE invocations = 0"));
    assert!(span_only > 0, "the generated month has tool calls that spill into the next hour");
    assert_eq!(zero, span_only);

    // The spans: per tenant, the rollup's agent columns and the span table equal what the
    // generator made, and the invocations table holds one row per invocation.
    let agents = duckdb(&format!(
        "SELECT tenant_id, sum(tool_calls) AS tc, sum(tool_errors) AS te, sum(agent_invocations) AS ai, \
         sum(agent_duration_ms) AS d, max(max_agent_duration_ms) AS md FROM {hourly} \
         GROUP BY 1 HAVING sum(agent_invocations) + sum(tool_calls) > 0 ORDER BY 1"
    ));
    let got: Vec<(String, [i64; 5])> = agents
        .iter()
        .map(|r| {
            let g = |k: &str| r[k].as_i64().unwrap();
            (
                r["tenant_id"].as_str().unwrap().to_owned(),
                [g("tc"), g("te"), g("ai"), g("d"), g("md")],
            )
        })
        .collect();
    let want: Vec<(String, [i64; 5])> = expected
        .agents
        .iter()
        .map(|(t, a)| {
            let v = [
                a.tool_calls,
                a.tool_errors,
                a.agent_invocations,
                a.agent_duration_ms,
                a.max_agent_duration_ms,
            ];
            (t.clone(), v)
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // The chat columns: one call per chat span, the tokens the traced calls used.
    let chat = duckdb(&format!(
        "SELECT tenant_id, sum(chat_calls) AS n, sum(chat_usage_unknown) AS u, sum(chat_input_tokens) AS i, \
         sum(chat_output_tokens) AS o, sum(chat_total_tokens) AS t, sum(chat_cache_read_tokens) AS cr, \
         sum(chat_cache_write_tokens) AS cw FROM {hourly} GROUP BY 1 HAVING sum(chat_calls) > 0 ORDER BY 1"
    ));
    let got: Vec<(String, [i64; 7])> = chat
        .iter()
        .map(|r| {
            let g = |k: &str| r[k].as_i64().unwrap();
            (
                r["tenant_id"].as_str().unwrap().to_owned(),
                ["n", "u", "i", "o", "t", "cr", "cw"].map(g),
            )
        })
        .collect();
    let want: Vec<(String, [i64; 7])> = expected
        .agents
        .iter()
        .map(|(t, a)| {
            let c = &a.chat_tokens;
            let v = [
                a.model_calls,
                0,
                c.input_tokens,
                c.output_tokens,
                c.total_tokens,
                c.cache_read_tokens,
                c.cache_write_tokens,
            ];
            (t.clone(), v)
        })
        .collect();
    assert_eq!(got, want);
    let spans = duckdb(&format!(
        "SELECT tenant_id, count(*) AS n, count(DISTINCT (trace_id, span_id)) AS d FROM {} GROUP BY 1 ORDER BY 1",
        table(&lake, "agent_spans")
    ));
    let got: Vec<(String, i64, i64)> = spans
        .iter()
        .map(|r| {
            (
                r["tenant_id"].as_str().unwrap().to_owned(),
                r["n"].as_i64().unwrap(),
                r["d"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64, i64)> =
        expected.agents.iter().map(|(t, a)| (t.clone(), a.spans, a.spans)).collect();
    assert_eq!(got, want);
    let invocations = duckdb(&format!(
        "SELECT tenant_id, count(*) AS n, sum(tool_calls) AS tc FROM {} GROUP BY 1 ORDER BY 1",
        table(&lake, "agent_invocations")
    ));
    let got: Vec<(String, i64, i64)> = invocations
        .iter()
        .map(|r| {
            (
                r["tenant_id"].as_str().unwrap().to_owned(),
                r["n"].as_i64().unwrap(),
                r["tc"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64, i64)> = expected
        .agents
        .iter()
        .map(|(t, a)| (t.clone(), a.agent_invocations, a.tool_calls))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn files_are_sorted_zstd_and_athena_typed() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir.path().join("gen"), &["--tenants", "6", "--events", "5000", "--noisy", "2"]);
    let lake = dir.path().join("lake");
    ingest(&lake, &[&dir.path().join("gen/input")], &["--batch-rows", "1000"]);
    for t in ["usage_events", "usage_hourly"] {
        let time = if t == "usage_events" { "event_time" } else { "hour" };
        let unsorted = format!(
            "SELECT count(*) FROM (SELECT tenant_id, {time} AS ts, lag(tenant_id) OVER w AS pt, lag({time}) OVER w AS pts \
             FROM read_parquet('{}/{t}/*/*.parquet', filename = true, file_row_number = true) \
             WINDOW w AS (PARTITION BY filename ORDER BY file_row_number)) \
             WHERE pt > tenant_id OR (pt = tenant_id AND pts > ts)",
            lake.display()
        );
        assert_eq!(duckdb_int(&unsorted), 0, "{t} rows sorted by tenant then time");
        // ZSTD but for the columns written as packed deltas, which zstd cannot shrink.
        let uncompressed = duckdb(&format!(
            "SELECT DISTINCT path_in_schema AS c, compression, encodings \
             FROM parquet_metadata('{}/{t}/*/*.parquet') WHERE compression <> 'ZSTD' ORDER BY c",
            lake.display()
        ));
        let columns: Vec<&str> = uncompressed
            .iter()
            .inspect(|r| {
                assert_eq!(r["compression"], "UNCOMPRESSED", "{r:?}");
                assert!(r["encodings"].as_str().unwrap().contains("DELTA_BINARY_PACKED"), "{r:?}");
            })
            .map(|r| r["c"].as_str().unwrap())
            .collect();
        let want: &[&str] = if t == "usage_events" {
            &["event_time", "input_tokens", "output_tokens", "total_tokens"]
        } else {
            &[]
        };
        assert_eq!(columns, want, "{t}");
        let types = duckdb(&format!(
            "DESCRIBE SELECT * FROM read_parquet('{}/{t}/*/*.parquet', hive_partitioning = false)",
            lake.display()
        ));
        for r in types {
            let ty = r["column_type"].as_str().unwrap();
            assert!(
                matches!(ty, "BIGINT" | "VARCHAR" | "TIMESTAMP WITH TIME ZONE"),
                "{t}.{} is {ty}",
                r["column_name"]
            );
        }
    }
    let unsigned = duckdb_int(&format!(
        "SELECT count(*) FROM parquet_schema('{}/usage_events/*/*.parquet') WHERE type = 'INT64' AND logical_type LIKE '%isSigned=false%'",
        lake.display()
    ));
    assert_eq!(unsigned, 0);
}

#[test]
fn reingesting_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let expected = generate(
        &dir.path().join("gen"),
        &["--tenants", "6", "--events", "8000", "--noisy", "2", "--dirty"],
    );
    let lake = dir.path().join("lake");
    let input = dir.path().join("gen/input");
    ingest(&lake, &[&input], &[]);
    let before: Vec<_> = files_under(&lake)
        .into_iter()
        .filter(|f| !f.starts_with("_state/lock"))
        .map(|f| (std::fs::read(lake.join(&f)).unwrap(), f))
        .collect();
    for _ in 0..2 {
        let s = ingest(&lake, &[&input], &[]);
        let a = accounting(&s);
        assert_eq!(a.events_written, 0);
        assert_eq!(
            a.duplicates,
            expected.accounting.events_written + expected.accounting.duplicates
        );
        assert_eq!(a.quarantined, expected.accounting.quarantined);
        assert_eq!(a.records_read, expected.accounting.records_read);
    }
    let after: Vec<_> = files_under(&lake)
        .into_iter()
        .filter(|f| !f.starts_with("_state/lock"))
        .map(|f| (std::fs::read(lake.join(&f)).unwrap(), f))
        .collect();
    assert!(before == after, "the lake's files are byte for byte the same");
}

#[test]
fn duplicates_with_other_spacing_or_another_route_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let a = r#"{"event":"inference_usage","event_id":"req-1","timestamp":"2026-10-02T10:00:00Z","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"m","input_tokens":10,"output_tokens":5,"total_tokens":15}"#;
    let a_spaced = r#"{ "total_tokens" : 15, "output_tokens": 5, "input_tokens": 10, "model_id": "m",
"user_id": "u1", "clinic_id": "clinic-a", "tier": "basic", "timestamp": "2026-10-02T10:00:00Z", "event_id": "req-1", "event": "inference_usage" }"#
        .replace('\n', " ");
    let no_id = r#"{"event":"inference_usage","timestamp":"2026-10-02T11:00:00Z","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"m","input_tokens":1,"output_tokens":1,"total_tokens":2}"#;
    let no_id_spaced = r#"{"model_id":"m", "user_id":"u1" ,"tier":"basic","clinic_id":"clinic-a","timestamp":"2026-10-02T11:00:00Z","event":"inference_usage","input_tokens":1,"output_tokens":1,"total_tokens":2 }"#;
    std::fs::write(input.join("a.ndjson"), format!("{a}\n{no_id}\n")).unwrap();
    std::fs::write(input.join("b.ndjson"), format!("{a_spaced}\n{no_id_spaced}\n")).unwrap();
    // The same CloudWatch event through an export line and a subscription payload.
    let msg = r#"{"event":"inference_usage","tier":"premium","clinic_id":"hospital-a","user_id":"u2","model_id":"m","input_tokens":100,"output_tokens":50,"total_tokens":150}"#;
    let cw_id = "36897046232316298063931829383442926153542430203385888768";
    let event = serde_json::json!({"id": cw_id, "timestamp": 1_790_935_200_000_i64, "message": format!("[INFO]\t2026-10-02T10:00:00Z\tr\t{msg}\n")});
    std::fs::write(input.join("c.ndjson"), format!("{event}\n")).unwrap();
    let payload = serde_json::json!({"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[event]});
    let mut gz = flate2_gzip(payload.to_string().as_bytes());
    gz.extend(flate2_gzip(payload.to_string().as_bytes()));
    std::fs::write(input.join("d.gz"), gz).unwrap();

    let lake = dir.path().join("lake");
    let a = accounting(&ingest(&lake, &[&input], &[]));
    assert_eq!(
        (a.records_read, a.events_written, a.duplicates, a.conflicting_duplicates),
        (7, 3, 4, 0)
    );
    let ev = table(&lake, "usage_events");
    assert_eq!(duckdb_int(&format!("SELECT sum(total_tokens) FROM {ev}")), 15 + 2 + 150);
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {ev} WHERE event_id = '{cw_id}'")), 1);
}

/// Gzip without pulling flate2 into the test's dependencies: `gzip -c`.
pub fn flate2_gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(data).unwrap();
    child.wait_with_output().unwrap().stdout
}

/// A Python agent's own log file: usage lines behind logging prefixes (Python's and the
/// Lambda runtime's), other log lines and a traceback between them. Ingested twice (the second run finds every line a duplicate), with
/// asctime read in the zone given.
#[test]
fn an_agents_python_log_file_ingests_like_ndjson() {
    let dir = tempfile::tempdir().unwrap();
    let usage = |n: u32| {
        format!(
            r#"{{"event":"inference_usage","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"mistral.ministral-3-8b-instruct","input_tokens":{n},"output_tokens":1,"total_tokens":{}}}"#,
            n + 1
        )
    };
    let log = format!(
        "2026-10-01 10:00:00,123 - strands.usage - INFO - {}\n\
         2026-10-01 10:00:01,000 - httpx - INFO - HTTP Request: POST https://bedrock-runtime \"HTTP/1.1 200 OK\"\n\
         2026-10-01 10:00:02 INFO strands.usage {}\n\
         Traceback (most recent call last):\n\
         INFO:strands.usage:{}\n\
         [INFO]\t2026-10-01T09:30:00.000Z\t1c8df7d3-2f4b-4c5e-9a3d-518e6eca8125\t{}\n",
        usage(100),
        usage(200),
        usage(300),
        usage(400)
    );
    let input = dir.path().join("agent.log");
    std::fs::write(&input, log).unwrap();
    let lake = dir.path().join("lake");
    let args = ["--log-timezone", "Europe/Berlin", "--default-time", "2026-10-01T12:00:00Z"];
    let a = accounting(&ingest(&lake, &[&input], &args));
    assert_eq!((a.events_written, a.skipped_total(), a.quarantined_total()), (4, 1, 1));
    let a = accounting(&ingest(&lake, &[&input], &args));
    assert_eq!((a.events_written, a.duplicates), (0, 4));
    let rows = duckdb(&format!(
        "SELECT strftime(event_time, '%Y-%m-%dT%H:%M:%S.%g') AS t, input_tokens AS n FROM {} ORDER BY 1",
        table(&lake, "usage_events")
    ));
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r["t"].as_str().unwrap().to_owned(), r["n"].as_i64().unwrap()))
        .collect();
    // Berlin is UTC+2 in October; the line without a time got --default-time.
    let want = [
        ("2026-10-01T08:00:00.123", 100),
        ("2026-10-01T08:00:02.000", 200),
        ("2026-10-01T09:30:00.000", 400),
        ("2026-10-01T12:00:00.000", 300),
    ];
    assert_eq!(got, want.map(|(t, n)| (t.to_owned(), n)));
}
