//! `usage_hourly`: usage per hour, tier, tenant, user and model, from both sources.
//!
//! The log columns (`invocations`, the token sums, `usage_unknown`) come from
//! `usage_events`; the agent columns and the `chat_*` columns from `agent_spans`. The two
//! token sets are never added together: a plan bills one of them (`usage_source`), and
//! `reconcile` compares them.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, SchemaRef};

use super::{
    TOKEN_COLUMNS, TokenBuilders, column, ints, invalid, strings, token_columns, tokens_at,
    utc_millis, with_version,
};
use crate::{ModelId, ServiceTier, TenantId, Tier, Tokens, UserId};

/// The span-derived agent columns of `usage_hourly`, in order.
pub const AGENT_COLUMNS: [&str; 5] = [
    "tool_calls",
    "tool_errors",
    "agent_invocations",
    "agent_duration_ms",
    "max_agent_duration_ms",
];

/// The columns added in schema version 3, in order: unknown usage in the logs, the chat
/// spans' calls and tokens, then the log lines billed as increments of a lifetime series.
/// (`chat_cache_write_1h_tokens` came with version 4.)
pub const CHAT_COLUMNS: [&str; 10] = [
    "usage_unknown",
    "chat_calls",
    "chat_usage_unknown",
    "chat_input_tokens",
    "chat_output_tokens",
    "chat_total_tokens",
    "chat_cache_read_tokens",
    "chat_cache_write_tokens",
    "chat_cache_write_1h_tokens",
    "cumulative_lines",
];

/// The pricing keys added in schema version 4: the service tier the calls ran in, and the
/// prompt band of each call ([`crate::prompt_band`]), which decides long-context prices.
pub const PRICE_KEY_COLUMNS: [&str; 2] = ["service_tier", "prompt_band"];

static USAGE_HOURLY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("hour", utc_millis(), false),
        Field::new("tier", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("model_id", DataType::Utf8, false),
        Field::new("invocations", DataType::Int64, false),
    ];
    fields.extend(TOKEN_COLUMNS.iter().map(|c| Field::new(*c, DataType::Int64, false)));
    fields.extend(AGENT_COLUMNS.iter().map(|c| Field::new(*c, DataType::Int64, false)));
    // Appended, so that readers by position of older files and Athena by name both work.
    fields.extend(CHAT_COLUMNS.iter().map(|c| Field::new(*c, DataType::Int64, false)));
    fields.push(Field::new(PRICE_KEY_COLUMNS[0], DataType::Utf8, false));
    fields.push(Field::new(PRICE_KEY_COLUMNS[1], DataType::Int64, false));
    with_version(fields, "4")
});

/// Schema of `usage_hourly`.
pub fn usage_hourly_schema() -> SchemaRef {
    USAGE_HOURLY_SCHEMA.clone()
}

/// The grouping key of `usage_hourly`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourlyKey {
    /// Start of the hour, milliseconds since the epoch, UTC.
    pub hour_ms: i64,
    /// Tier.
    pub tier: Tier,
    /// Tenant.
    pub tenant_id: TenantId,
    /// User.
    pub user_id: UserId,
    /// Model.
    pub model_id: ModelId,
    /// The Bedrock service tier the calls ran in (span measures: standard).
    pub service_tier: ServiceTier,
    /// The calls' prompt band ([`crate::prompt_band`]; tool and agent measures: 0).
    pub prompt_band: i64,
}

/// The measures of one `usage_hourly` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourlyMeasures {
    /// Number of inference calls (from the `inference_usage` logs).
    pub invocations: i64,
    /// Of those, the calls that reported no usage (input and total tokens 0): usage unknown,
    /// never free.
    pub usage_unknown: i64,
    /// Token sums (from the logs; a line of a session's lifetime series counts as its
    /// increment over the line before).
    pub tokens: Tokens,
    /// Log lines counted as increments of a lifetime series (an Agent object reused across
    /// requests, logging its accumulated usage).
    pub cumulative_lines: i64,
    /// What the spans add about agents and tools.
    pub agent: AgentMeasures,
    /// What the `chat` spans (one per model call) say about the same usage.
    pub chat: ChatMeasures,
}

/// The span-derived agent measures of a `usage_hourly` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentMeasures {
    /// `execute_tool` spans started in the hour.
    pub tool_calls: i64,
    /// Of those, the ones that failed (status error).
    pub tool_errors: i64,
    /// `invoke_agent` spans started in the hour.
    pub agent_invocations: i64,
    /// Their summed duration, milliseconds.
    pub agent_duration_ms: i64,
    /// The longest of them, milliseconds.
    pub max_agent_duration_ms: i64,
}

impl AgentMeasures {
    /// Adds `other`, or `None` on overflow.
    pub fn checked_add(&self, other: &AgentMeasures) -> Option<AgentMeasures> {
        Some(AgentMeasures {
            tool_calls: self.tool_calls.checked_add(other.tool_calls)?,
            tool_errors: self.tool_errors.checked_add(other.tool_errors)?,
            agent_invocations: self.agent_invocations.checked_add(other.agent_invocations)?,
            agent_duration_ms: self.agent_duration_ms.checked_add(other.agent_duration_ms)?,
            max_agent_duration_ms: self.max_agent_duration_ms.max(other.max_agent_duration_ms),
        })
    }
}

/// The `chat` spans of a `usage_hourly` row: model calls as the traces saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatMeasures {
    /// `chat` spans started in the hour.
    pub calls: i64,
    /// Of those, the ones that reported no usage (input and total tokens 0 or absent).
    pub usage_unknown: i64,
    /// Their token sums (absent counts as 0; a missing total is input + output + cache).
    pub tokens: Tokens,
}

impl ChatMeasures {
    /// Adds `other`, or `None` on overflow.
    pub fn checked_add(&self, other: &ChatMeasures) -> Option<ChatMeasures> {
        Some(ChatMeasures {
            calls: self.calls.checked_add(other.calls)?,
            usage_unknown: self.usage_unknown.checked_add(other.usage_unknown)?,
            tokens: self.tokens.checked_add(&other.tokens)?,
        })
    }
}

/// Builds a `usage_hourly` record batch from (key, measures) rows.
///
/// # Errors
///
/// Only if the columns disagree with the schema, which would be a bug here.
pub fn hourly_batch<'a>(
    rows: impl ExactSizeIterator<Item = (&'a HourlyKey, &'a HourlyMeasures)>,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut hour = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut strings: [StringBuilder; 4] =
        std::array::from_fn(|_| StringBuilder::with_capacity(n, n * 16));
    let mut invocations = Int64Builder::with_capacity(n);
    let mut tokens = TokenBuilders::with_capacity(n);
    let mut agent: [Int64Builder; 5] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    let mut unknown: [Int64Builder; 3] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    let mut chat_tokens = TokenBuilders::with_capacity(n);
    let mut cumulative = Int64Builder::with_capacity(n);
    let mut service_tier = StringBuilder::with_capacity(n, n * 8);
    let mut prompt_band = Int64Builder::with_capacity(n);
    for (k, m) in rows {
        hour.append_value(k.hour_ms);
        let values =
            [k.tier.as_str(), k.tenant_id.as_str(), k.user_id.as_str(), k.model_id.as_str()];
        for (b, v) in strings.iter_mut().zip(values) {
            b.append_value(v);
        }
        invocations.append_value(m.invocations);
        tokens.append(&m.tokens);
        let a = &m.agent;
        let values = [
            a.tool_calls,
            a.tool_errors,
            a.agent_invocations,
            a.agent_duration_ms,
            a.max_agent_duration_ms,
        ];
        for (b, v) in agent.iter_mut().zip(values) {
            b.append_value(v);
        }
        for (b, v) in unknown.iter_mut().zip([m.usage_unknown, m.chat.calls, m.chat.usage_unknown])
        {
            b.append_value(v);
        }
        chat_tokens.append(&m.chat.tokens);
        cumulative.append_value(m.cumulative_lines);
        service_tier.append_value(k.service_tier.code());
        prompt_band.append_value(k.prompt_band);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(hour.finish())];
    for b in &mut strings {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(invocations.finish()));
    tokens.finish(&mut columns);
    for b in agent.iter_mut().chain(unknown.iter_mut()) {
        columns.push(Arc::new(b.finish()));
    }
    chat_tokens.finish(&mut columns);
    columns.push(Arc::new(cumulative.finish()));
    columns.push(Arc::new(service_tier.finish()));
    columns.push(Arc::new(prompt_band.finish()));
    RecordBatch::try_new(usage_hourly_schema(), columns)
}

/// Reads `usage_hourly` rows back. Columns a file of an older schema version lacks (the agent
/// columns before spans existed, the chat columns before version 3) read as zero.
///
/// # Errors
///
/// A missing or mistyped column, a null, or an identifier that fails validation.
pub fn hourly_from_batch(
    batch: &RecordBatch,
) -> Result<Vec<(HourlyKey, HourlyMeasures)>, ArrowError> {
    let hour = column(batch, "hour")?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| ArrowError::SchemaError("column hour is not timestamp(ms)".into()))?;
    let names = ["tier", "tenant_id", "user_id", "model_id"];
    let s: Vec<_> = names.iter().map(|n| strings(batch, n)).collect::<Result<_, _>>()?;
    let inv = ints(batch, "invocations")?;
    let t = token_columns(batch)?;
    let tiers =
        batch.column_by_name("service_tier").map(|_| strings(batch, "service_tier")).transpose()?;
    let bands =
        batch.column_by_name("prompt_band").map(|_| ints(batch, "prompt_band")).transpose()?;
    let optional = |n: &&str| {
        if batch.column_by_name(n).is_some() { ints(batch, n).map(Some) } else { Ok(None) }
    };
    let a: Vec<_> = AGENT_COLUMNS.iter().map(optional).collect::<Result<_, _>>()?;
    let c: Vec<_> = CHAT_COLUMNS.iter().map(optional).collect::<Result<_, _>>()?;
    let agent = |k: usize, i: usize| a[k].map_or(0, |col| col.value(i));
    let chat = |k: usize, i: usize| c[k].map_or(0, |col| col.value(i));
    (0..batch.num_rows())
        .map(|i| {
            let key = HourlyKey {
                hour_ms: hour.value(i),
                tier: Tier::new(s[0].value(i)).map_err(|e| invalid(names[0], i, e))?,
                tenant_id: TenantId::new(s[1].value(i)).map_err(|e| invalid(names[1], i, e))?,
                user_id: UserId::new(s[2].value(i)).map_err(|e| invalid(names[2], i, e))?,
                model_id: ModelId::new(s[3].value(i)).map_err(|e| invalid(names[3], i, e))?,
                service_tier: match tiers {
                    None => ServiceTier::Standard,
                    Some(a) => ServiceTier::from_code(a.value(i)).ok_or_else(|| {
                        invalid("service_tier", i, format!("unknown tier {:?}", a.value(i)))
                    })?,
                },
                prompt_band: bands.map_or(0, |a| a.value(i)),
            };
            let m = HourlyMeasures {
                invocations: inv.value(i),
                usage_unknown: chat(0, i),
                tokens: tokens_at(&t, i),
                cumulative_lines: chat(9, i),
                agent: AgentMeasures {
                    tool_calls: agent(0, i),
                    tool_errors: agent(1, i),
                    agent_invocations: agent(2, i),
                    agent_duration_ms: agent(3, i),
                    max_agent_duration_ms: agent(4, i),
                },
                chat: ChatMeasures {
                    calls: chat(1, i),
                    usage_unknown: chat(2, i),
                    tokens: Tokens {
                        input: chat(3, i),
                        output: chat(4, i),
                        total: chat(5, i),
                        cache_read: chat(6, i),
                        cache_write: chat(7, i),
                        cache_write_1h: chat(8, i),
                    },
                },
            };
            Ok((key, m))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{SCHEMA_VERSION_KEY, hour_start_ms};

    fn row() -> (HourlyKey, HourlyMeasures) {
        let key = HourlyKey {
            hour_ms: hour_start_ms(1_760_000_123_456),
            tier: Tier::new("basic").unwrap(),
            tenant_id: TenantId::new("clinic-a").unwrap(),
            user_id: UserId::new("dr.lee@clinic-a.example").unwrap(),
            model_id: ModelId::new("mistral.ministral-3-8b-instruct").unwrap(),
            service_tier: ServiceTier::Flex,
            prompt_band: 200_000,
        };
        let m = HourlyMeasures {
            invocations: 2,
            usage_unknown: 1,
            tokens: Tokens {
                input: 812,
                output: 97,
                total: 939,
                cache_read: 5,
                cache_write: 25,
                cache_write_1h: 20,
            },
            cumulative_lines: 1,
            agent: AgentMeasures {
                tool_calls: 3,
                tool_errors: 1,
                agent_invocations: 1,
                agent_duration_ms: 900,
                max_agent_duration_ms: 900,
            },
            chat: ChatMeasures {
                calls: 3,
                usage_unknown: 1,
                tokens: Tokens {
                    input: 700,
                    output: 90,
                    total: 790,
                    cache_read: 0,
                    cache_write: 2,
                    cache_write_1h: 1,
                },
            },
        };
        (key, m)
    }

    #[test]
    fn hourly_round_trip() {
        let (key, m) = row();
        let batch = hourly_batch([(&key, &m)].into_iter()).unwrap();
        assert_eq!(batch.schema().metadata()[SCHEMA_VERSION_KEY], "4");
        assert_eq!(hourly_from_batch(&batch).unwrap(), vec![(key, m)]);
    }

    #[test]
    fn a_file_of_version_2_reads_the_new_columns_as_zero() {
        let (mut key, mut m) = row();
        let batch = hourly_batch([(&key, &m)].into_iter()).unwrap();
        let late = |n: &str| {
            CHAT_COLUMNS.contains(&n)
                || PRICE_KEY_COLUMNS.contains(&n)
                || n == "cache_write_1h_tokens"
        };
        let keep: Vec<usize> =
            (0..batch.num_columns()).filter(|&i| !late(batch.schema().field(i).name())).collect();
        let old = batch.project(&keep).unwrap();
        m.tokens.cache_write_1h = 0;
        key.service_tier = ServiceTier::Standard;
        key.prompt_band = 0;
        let want = HourlyMeasures {
            usage_unknown: 0,
            cumulative_lines: 0,
            chat: ChatMeasures::default(),
            ..m
        };
        assert_eq!(hourly_from_batch(&old).unwrap(), vec![(key, want)]);
    }
}
