"""The peers bench/run measures `agentmeter ingest` against, one run per invocation.

    python bench/peers.py MODE INPUT.ndjson OUTPUT_DIR

MODE:
  duckdb-hourly  read_ndjson -> event = 'inference_usage' -> per (hour, tier, tenant, user,
                 model) the count and token sums -> COPY to Parquet (zstd)
  duckdb-raw     the same filter -> every usage column -> COPY to Parquet (zstd)
  polars-hourly  scan_ndjson -> the same filter and group_by -> sink_parquet (zstd)
  duckdb-count   count(*) of the lines parsed with the same columns: the engine's read floor

Every mode reads the file with a declared schema (the columns of a usage event), as
agentmeter knows its own, and prints one JSON line with the rows it wrote or counted.
The peers neither validate, deduplicate, nor map `actor_id` to a user: they are the
query engines' cost of the same bytes, not a second implementation of the ingest.
"""

import json
import os
import sys

# The columns of a usage line (and of the other lines, whose extra fields are ignored).
COLUMNS = {
    "event": "VARCHAR",
    "tier": "VARCHAR",
    "clinic_id": "VARCHAR",
    "user_id": "VARCHAR",
    "actor_id": "VARCHAR",
    "model_id": "VARCHAR",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "total_tokens": "BIGINT",
    "cache_read_tokens": "BIGINT",
    "cache_write_tokens": "BIGINT",
    "timestamp": "VARCHAR",
    "event_id": "VARCHAR",
    "request_id": "VARCHAR",
    "session_id": "VARCHAR",
}

HOURLY_SQL = """
SELECT date_trunc('hour', strptime("timestamp", '%Y-%m-%dT%H:%M:%S.%gZ')) AS hour,
       tier, clinic_id AS tenant_id, user_id, model_id,
       count(*) AS invocations,
       sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
       sum(total_tokens)::BIGINT AS total_tokens,
       sum(cache_read_tokens)::BIGINT AS cache_read_tokens,
       sum(cache_write_tokens)::BIGINT AS cache_write_tokens
FROM src WHERE event = 'inference_usage'
GROUP BY ALL
"""

RAW_SQL = """
SELECT strptime("timestamp", '%Y-%m-%dT%H:%M:%S.%gZ') AS event_time, * EXCLUDE ("timestamp")
FROM src WHERE event = 'inference_usage'
"""


def duckdb_src(con, path):
    cols = ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items())
    con.execute(
        f"CREATE VIEW src AS SELECT * FROM read_ndjson('{path}', columns = {{{cols}}}, "
        "format = 'newline_delimited', ignore_errors = false)"
    )


def duckdb_copy(path, out, sql):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    duckdb_src(con, path)
    target = os.path.join(out, "out.parquet")
    con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
    return con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0]


def duckdb_count(path, _out):
    import duckdb

    con = duckdb.connect()
    duckdb_src(con, path)
    # Every column is read (max over each) so that no column is skipped unparsed.
    aggs = ", ".join(f'max("{k}")' for k in COLUMNS)
    return con.execute(f"SELECT count(*), {aggs} FROM src").fetchone()[0]


def polars_hourly(path, out):
    import polars as pl

    schema = {
        k: (pl.Int64 if v == "BIGINT" else pl.String) for k, v in COLUMNS.items()
    }
    q = (
        pl.scan_ndjson(path, schema=schema)
        .filter(pl.col("event") == "inference_usage")
        .with_columns(
            pl.col("timestamp")
            .str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ms", time_zone="UTC")
            .dt.truncate("1h")
            .alias("hour")
        )
        .group_by("hour", "tier", pl.col("clinic_id").alias("tenant_id"), "user_id", "model_id")
        .agg(
            pl.len().alias("invocations"),
            pl.col("input_tokens").sum(),
            pl.col("output_tokens").sum(),
            pl.col("total_tokens").sum(),
            pl.col("cache_read_tokens").sum(),
            pl.col("cache_write_tokens").sum(),
        )
    )
    target = os.path.join(out, "out.parquet")
    q.sink_parquet(target, compression="zstd")
    return pl.scan_parquet(target).select(pl.len()).collect().item()


MODES = {
    "duckdb-hourly": lambda p, o: duckdb_copy(p, o, HOURLY_SQL),
    "duckdb-raw": lambda p, o: duckdb_copy(p, o, RAW_SQL),
    "polars-hourly": polars_hourly,
    "duckdb-count": duckdb_count,
}


def versions():
    import duckdb
    import polars

    return {"duckdb": duckdb.__version__, "polars": polars.__version__}


def main(argv):
    if len(argv) == 2 and argv[1] == "versions":
        print(json.dumps(versions()))
        return 0
    if len(argv) != 4 or argv[1] not in MODES:
        print(__doc__, file=sys.stderr)
        return 2
    mode, path, out = argv[1:]
    os.makedirs(out, exist_ok=True)
    rows = MODES[mode](path, out)
    print(json.dumps({"mode": mode, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
