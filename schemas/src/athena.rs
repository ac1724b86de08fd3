//! Athena DDL for the lake's tables, derived from their Arrow schemas.
//!
//! Every table is a Hive-partitioned Parquet table with partition projection on `dt`, so no
//! `MSCK REPAIR` or Glue partition management is needed as days are added.

use arrow_schema::{DataType, TimeUnit};

use crate::tables::{TABLES, TableDef};

/// What the DDL needs to know.
#[derive(Debug, Clone)]
pub struct DdlOptions {
    /// `s3://bucket/prefix` of the lake, without a trailing slash.
    location: String,
    /// Database to qualify table names with, if any.
    database: Option<String>,
    /// First day of the partition projection ranges.
    range_start: chrono::NaiveDate,
}

/// A refused DDL option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DdlError {
    /// The location is not an `s3://bucket[/prefix]` URI Athena can use.
    #[error(
        "location {0:?} is not of the form s3://bucket/prefix (lowercase bucket, no quotes or spaces)"
    )]
    Location(String),
    /// The database name is not a valid Athena identifier.
    #[error("database {0:?} must be lowercase letters, digits and underscores")]
    Database(String),
    /// The projection start is not a `YYYY-MM-DD` date.
    #[error("projection start {0:?} is not a YYYY-MM-DD date")]
    RangeStart(String),
    /// A column type has no Athena equivalent (a bug in a table definition).
    #[error("column {table}.{column} has type {ty} which Athena cannot read")]
    Type {
        /// Table name.
        table: &'static str,
        /// Column name.
        column: String,
        /// The Arrow type.
        ty: String,
    },
}

impl DdlOptions {
    /// Validates the options.
    ///
    /// # Errors
    ///
    /// [`DdlError`] naming the option at fault.
    pub fn new(
        location: &str,
        database: Option<&str>,
        range_start: &str,
    ) -> Result<Self, DdlError> {
        let loc = location.trim_end_matches('/');
        let rest = loc.strip_prefix("s3://").ok_or_else(|| DdlError::Location(location.into()))?;
        let bucket = rest.split('/').next().unwrap_or_default();
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let rest_ok =
            rest.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'\'' | b'"' | b'\\' | b'`'));
        if !bucket_ok || !rest_ok || rest.contains("//") {
            return Err(DdlError::Location(location.into()));
        }
        if let Some(db) = database {
            let ok = !db.is_empty()
                && db.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(DdlError::Database(db.into()));
            }
        }
        let start = chrono::NaiveDate::parse_from_str(range_start, "%Y-%m-%d")
            .map_err(|_| DdlError::RangeStart(range_start.into()))?;
        Ok(Self {
            location: loc.to_owned(),
            database: database.map(str::to_owned),
            range_start: start,
        })
    }
}

/// The Athena column type of an Arrow type, if Athena reads it correctly.
pub fn athena_type(ty: &DataType) -> Option<String> {
    Some(match ty {
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Utf8 => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Float64 => "double".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(TimeUnit::Millisecond, Some(tz)) if tz.as_ref() == "UTC" => {
            "timestamp".into()
        }
        DataType::Decimal128(p, s) if *p <= 38 && *s >= 0 => format!("decimal({p},{s})"),
        _ => return None,
    })
}

/// `CREATE EXTERNAL TABLE` for one table.
///
/// # Errors
///
/// [`DdlError::Type`] if a column has no Athena type.
pub fn create_table(table: &TableDef, opts: &DdlOptions) -> Result<String, DdlError> {
    let schema = (table.schema)();
    let mut cols = Vec::new();
    for f in schema.fields() {
        let ty = athena_type(f.data_type()).ok_or_else(|| DdlError::Type {
            table: table.name,
            column: f.name().clone(),
            ty: f.data_type().to_string(),
        })?;
        cols.push(format!("  `{}` {}", f.name(), ty));
    }
    let name = match &opts.database {
        Some(db) => format!("`{db}`.`{}`", table.name),
        None => format!("`{}`", table.name),
    };
    let base = format!("{}/{}/", opts.location, table.name);
    let part = table.partitioning;
    let p = part.column;
    let start = opts.range_start.format(part.chrono_format);
    Ok(format!(
        "-- {desc}\n\
         CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{cols}\n)\n\
         PARTITIONED BY (`{p}` string)\n\
         STORED AS PARQUET\n\
         LOCATION '{base}'\n\
         TBLPROPERTIES (\n\
         \x20 'parquet.compression'='ZSTD',\n\
         \x20 'projection.enabled'='true',\n\
         \x20 'projection.{p}.type'='date',\n\
         \x20 'projection.{p}.format'='{java}',\n\
         \x20 'projection.{p}.range'='{start},NOW',\n\
         \x20 'projection.{p}.interval'='1',\n\
         \x20 'projection.{p}.interval.unit'='{unit}',\n\
         \x20 'storage.location.template'='{base}{p}=${{{p}}}/'\n\
         );\n",
        desc = table.description,
        cols = cols.join(",\n"),
        java = part.java_format,
        unit = part.unit,
    ))
}

/// The views over the raw tables that show each record once: until compaction merges them,
/// a record two writers stored at the same moment is in two files. The copy kept is the one
/// every agentmeter reader counts: the first file by name (`"$path"` order within a day).
pub fn dedup_views(opts: &DdlOptions) -> String {
    let q = |name: &str| match &opts.database {
        Some(db) => format!("`{db}`.`{name}`"),
        None => format!("`{name}`"),
    };
    let view = |name: &str, table: &str, key: &str| {
        format!(
            "-- {table}, each record once (a copy stored by two writers at once counted once, as every agentmeter reader counts it)\n\
             CREATE OR REPLACE VIEW {view} AS\n\
             SELECT * FROM (\n\
             \x20 SELECT *, row_number() OVER (PARTITION BY dt, {key} ORDER BY \"$path\") AS copy_rank\n\
             \x20 FROM {src}\n\
             ) WHERE copy_rank = 1;\n",
            view = q(name),
            src = q(table),
        )
    };
    [
        view("usage_events_unique", "usage_events", "event_id"),
        view("agent_spans_unique", "agent_spans", "trace_id, span_id"),
    ]
    .join("\n")
}

/// The DDL of every table, separated by blank lines, then the views of [`dedup_views`].
///
/// # Errors
///
/// [`DdlError::Type`] if a column has no Athena type.
pub fn all_tables(opts: &DdlOptions) -> Result<String, DdlError> {
    let parts: Result<Vec<_>, _> = TABLES.iter().map(|t| create_table(t, opts)).collect();
    Ok(format!("{}\n{}", parts?.join("\n"), dedup_views(opts)))
}

/// Parses the column list back out of DDL produced by [`create_table`]: `(name, type)` pairs
/// in order. Used by tests to keep DDL and schemas in step.
pub fn parse_columns(ddl: &str) -> Vec<(String, String)> {
    let Some(start) = ddl.find(" (\n") else { return Vec::new() };
    let body = &ddl[start + 3..];
    let Some(end) = body.find("\n)\n") else { return Vec::new() };
    body[..end]
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_end_matches(',');
            let (name, ty) = l.split_once(' ')?;
            Some((name.trim_matches('`').to_owned(), ty.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> DdlOptions {
        DdlOptions::new("s3://acme-lake/agentmeter/", Some("metering"), "2025-01-01").unwrap()
    }

    #[test]
    fn ddl_columns_match_arrow_schemas() {
        for t in TABLES {
            let ddl = create_table(t, &opts()).unwrap();
            let cols = parse_columns(&ddl);
            let schema = (t.schema)();
            assert_eq!(cols.len(), schema.fields().len(), "{ddl}");
            for ((name, ty), f) in cols.iter().zip(schema.fields()) {
                assert_eq!(name, f.name());
                assert_eq!(Some(ty.clone()), athena_type(f.data_type()));
            }
        }
    }

    #[test]
    fn ddl_has_projection_and_location() {
        let ddl = create_table(&TABLES[0], &opts()).unwrap();
        assert!(ddl.contains("CREATE EXTERNAL TABLE IF NOT EXISTS `metering`.`usage_events` ("));
        assert!(ddl.contains("PARTITIONED BY (`dt` string)"));
        assert!(ddl.contains("LOCATION 's3://acme-lake/agentmeter/usage_events/'"));
        assert!(ddl.contains("'projection.dt.range'='2025-01-01,NOW'"));
        assert!(ddl.contains(
            "'storage.location.template'='s3://acme-lake/agentmeter/usage_events/dt=${dt}/'"
        ));
        assert!(ddl.contains("  `event_time` timestamp,\n"));
        assert!(ddl.contains(
            "  `cache_write_1h_tokens` bigint,\n  `session_id` string,\n  `service_tier` string\n)"
        ));
        let lines =
            create_table(TABLES.iter().find(|t| t.name == "invoice_lines").unwrap(), &opts())
                .unwrap();
        assert!(lines.contains("PARTITIONED BY (`period` string)"));
        assert!(lines.contains("'projection.period.format'='yyyy-MM'"));
        assert!(lines.contains("'projection.period.range'='2025-01,NOW'"));
        assert!(lines.contains("'projection.period.interval.unit'='MONTHS'"));
        assert!(lines.contains("  `amount` decimal(38,2),\n"));
        assert!(lines.contains(
            "  `service_tier` string,\n  `long_context` boolean,\n  `adjusts_period` string,\n  `status` string\n)"
        ));
    }

    #[test]
    fn views_keep_the_first_copy_by_file_of_each_record() {
        let views = dedup_views(&opts());
        assert!(views.contains("CREATE OR REPLACE VIEW `metering`.`usage_events_unique` AS"));
        assert!(views.contains("PARTITION BY dt, event_id ORDER BY \"$path\""));
        assert!(views.contains("PARTITION BY dt, trace_id, span_id ORDER BY \"$path\""));
        assert!(all_tables(&opts()).unwrap().ends_with(&views));
    }

    #[test]
    fn bad_options_are_refused_with_the_value() {
        for bad in [
            "/local/dir",
            "s3://",
            "s3://B",
            "s3://ok-bucket/it's",
            "s3://ok-bucket//x",
            "s3://a b",
        ] {
            let e = DdlOptions::new(bad, None, "2025-01-01").unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(matches!(
            DdlOptions::new("s3://acme", Some("Bad-Name"), "2025-01-01"),
            Err(DdlError::Database(_))
        ));
        assert!(matches!(
            DdlOptions::new("s3://acme", None, "2025-13-01"),
            Err(DdlError::RangeStart(_))
        ));
    }
}
