//! The Athena DDL matches what the lake's files really hold.

use crate::util::*;

#[test]
fn ddl_columns_match_the_parquet_files() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir.path().join("gen"), &["--tenants", "4", "--events", "500", "--noisy", "1"]);
    let lake = dir.path().join("lake");
    ingest(&lake, &[&dir.path().join("gen/input")], &[]);
    let out = ok(bin().args([
        "schema",
        "athena",
        "--location",
        "s3://acme-metering/lake",
        "--database",
        "metering",
    ]));
    let ddl = String::from_utf8(out.stdout).unwrap();
    for t in ["usage_events", "usage_hourly"] {
        let start =
            ddl.find(&format!("`metering`.`{t}` (\n")).unwrap_or_else(|| panic!("{t} in {ddl}"));
        let body = &ddl[start..];
        let cols: Vec<(String, String)> = body
            [body.find('\n').unwrap() + 1..body.find("\n)\n").unwrap()]
            .lines()
            .map(|l| {
                let l = l.trim().trim_end_matches(',');
                let (n, ty) = l.split_once(' ').unwrap();
                (n.trim_matches('`').to_owned(), ty.to_owned())
            })
            .collect();
        let file_cols: Vec<(String, String)> = duckdb(&format!(
            "DESCRIBE SELECT * FROM read_parquet('{}/{t}/*/*.parquet', hive_partitioning = false)",
            lake.display()
        ))
        .into_iter()
        .map(|r| {
            let athena = match r["column_type"].as_str().unwrap() {
                "BIGINT" => "bigint",
                "VARCHAR" => "string",
                "TIMESTAMP WITH TIME ZONE" => "timestamp",
                other => panic!("unexpected {other}"),
            };
            (r["column_name"].as_str().unwrap().to_owned(), athena.to_owned())
        })
        .collect();
        assert_eq!(cols, file_cols, "{t}");
        assert!(body.contains(&format!("LOCATION 's3://acme-metering/lake/{t}/'")));
        assert!(body.contains("'projection.dt.type'='date'"));
    }
}
