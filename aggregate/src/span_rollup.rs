//! What spans add to the rollups: agent invocations with their duration and tool calls, per
//! hour, tier, tenant, user and model, and the `agent_invocations` table.
//!
//! Strands exports children before their `invoke_agent` root, and only the root (or a `chat`
//! span) names the model: tool spans are attributed to the user and model of the invocation
//! they ran in, found by walking parent ids within the trace. Tokens are taken from `chat`
//! spans only (one per model call, under the model it called), into columns of their own:
//! `invoke_agent` spans repeat their children's sum, or an Agent object's lifetime total.
//!
//! A day's spans are all held while it is rolled up (a parent may sit in any file of the
//! day), so each is held small: the columns the rollup needs, ids as keyed 128-bit hashes,
//! strings as the partition's integer codes; only `invoke_agent` spans keep their id text.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch, StringArray};
use rustc_hash::FxHashMap as HashMap;

use agentmeter_schemas::tables::{AGENT_SPANS, AgentMeasures, ChatMeasures, hour_start_ms};
use agentmeter_schemas::{SpanStatus, SpanTokens, Tokens, is_operation};

use crate::record::Identity;
use crate::rollup::{ColumnCodes, GROUPED, Interner, NULL_CODE};

/// User or model id of spans that carry none.
pub const UNKNOWN: &str = "_unknown";

/// The columns of `agent_spans` a rollup reads.
pub(crate) const COLUMNS: [&str; 17] = [
    "start_time",
    "end_time",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "operation",
    "tier",
    "tenant_id",
    "user_id",
    "model_id",
    "status",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
];

/// The codes of the four interned strings: tier, tenant, user, model.
pub(crate) type Strings = [Interner; 4];

/// The agent measures of one (hour, tier, tenant, user, model, prompt band), as codes.
pub(crate) struct AgentRow {
    pub hour_ms: i64,
    pub tier: u32,
    pub tenant: u32,
    pub user: u32,
    pub model: u32,
    pub measures: AgentMeasures,
    pub chat: ChatMeasures,
    /// The prompt band of a chat span's call; 0 for other spans.
    pub prompt_band: i64,
}

/// (hour, tier, tenant, user, model codes, prompt band).
type RowKey = (i64, u32, u32, u32, u32, i64);

/// One agent invocation, as codes; [`Spans::into_ids`] gives its trace and span id.
pub(crate) struct Invocation {
    pub start_ms: i64,
    /// Index into [`Spans::into_ids`].
    pub ids: u32,
    pub tier: u32,
    pub tenant: u32,
    pub user: Option<u32>,
    pub model: Option<u32>,
    pub duration_ms: i64,
    pub tool_calls: i64,
    pub tool_errors: i64,
    pub model_calls: i64,
    pub status: SpanStatus,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Agent,
    Tool,
    Chat,
    Other,
}

/// What the rollup keeps of one span (80 bytes).
struct Span {
    /// The identity key of `trace_id:parent_span_id`, when `has_parent`.
    parent: u128,
    start_ms: i64,
    end_ms: i64,
    tier: u32,
    tenant: u32,
    /// `NONE` when the span names no user.
    user: u32,
    /// `NONE` when the span names no model.
    model: u32,
    /// A chat span's index into [`Spans::chats`]; an `invoke_agent` span's into
    /// [`Spans::ids`].
    extra: u32,
    op: Op,
    status: SpanStatus,
    has_parent: bool,
}

// A day of a busy month holds a few hundred thousand spans: keep each small.
const _: () = assert!(std::mem::size_of::<Span>() <= 80);

/// No user or model.
const NONE: u32 = NULL_CODE;

fn some(code: u32) -> Option<u32> {
    (code != NONE).then_some(code)
}

impl Span {
    fn duration_ms(&self) -> i64 {
        (self.end_ms - self.start_ms).max(0)
    }
}

/// The spans of one day, each once (its first copy in file order), as the rollup needs them.
#[derive(Default)]
pub(crate) struct Spans {
    spans: Vec<Span>,
    /// Each span's place in `spans`, by the key of `trace_id:span_id` (its identity).
    index: HashMap<u128, u32>,
    /// The tokens of each chat span.
    chats: Vec<Tokens>,
    /// Trace and span id of each `invoke_agent` span.
    ids: Vec<(Box<str>, Box<str>)>,
    /// Tier, tenant, user and model of each batch as codes.
    columns: [ColumnCodes; 4],
}

/// The operation of a span, as `AgentSpan::is_operation` reads it.
fn operation(operation: Option<&str>, name: &str) -> Op {
    let is = |op: &str| is_operation(operation, name, op);
    if is("invoke_agent") {
        Op::Agent
    } else if is("execute_tool") {
        Op::Tool
    } else if is("chat") {
        Op::Chat
    } else {
        Op::Other
    }
}

impl Spans {
    /// The trace and span id of each `invoke_agent` span, by [`Invocation::ids`].
    pub(crate) fn into_ids(self) -> Vec<(Box<str>, Box<str>)> {
        self.ids
    }

    /// The identity key of `trace_id:span_id`, as the writer keys a span.
    fn key(trace: &str, span: &str) -> u128 {
        Identity::joined(trace, span).key()
    }

    /// Adds a batch of `agent_spans` read with [`COLUMNS`]; a span already held is skipped.
    pub(crate) fn add_batch(
        &mut self,
        b: &RecordBatch,
        strings: &mut Strings,
    ) -> std::result::Result<(), String> {
        let text = |name: &str| -> std::result::Result<&StringArray, String> {
            b.column_by_name(name)
                .ok_or(format!("column {name} is missing"))?
                .as_string_opt::<i32>()
                .ok_or(format!("{name} is not utf8"))
        };
        let time = |name: &str| {
            b.column_by_name(name)
                .ok_or(format!("column {name} is missing"))?
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or(format!("{name} is not timestamp(ms)"))
        };
        let (start, end) = (time("start_time")?, time("end_time")?);
        let [trace, span, parent, name, op, st] =
            ["trace_id", "span_id", "parent_span_id", "name", "operation", "status"].map(text);
        let (trace, span, parent, name, op, st) = (trace?, span?, parent?, name?, op?, st?);
        let [tiers, tenants, users, models] = &mut self.columns;
        let [s0, s1, s2, s3] = strings;
        let (required, optional) = ((AGENT_SPANS, false), (AGENT_SPANS, true));
        let tier = tiers.read(b, GROUPED[0], required, s0)?;
        let tenant = tenants.read(b, GROUPED[1], required, s1)?;
        let user = users.read(b, GROUPED[2], optional, s2)?;
        let model = models.read(b, GROUPED[3], optional, s3)?;
        let mut tokens = Vec::with_capacity(5);
        for n in &COLUMNS[12..] {
            tokens.push(
                b.column_by_name(n)
                    .ok_or(format!("column {n} is missing"))?
                    .as_primitive_opt::<Int64Type>()
                    .ok_or(format!("{n} is not int64"))?,
            );
        }
        let int = |c: usize, i: usize| tokens[c].is_valid(i).then(|| tokens[c].value(i));
        for i in 0..b.num_rows() {
            if [trace, span, name, st].iter().any(|a| a.is_null(i))
                || start.is_null(i)
                || end.is_null(i)
            {
                return Err("agent_spans has nulls".into());
            }
            let key = Self::key(trace.value(i), span.value(i));
            let at = u32::try_from(self.spans.len()).map_err(|_| "too many spans in a day")?;
            match self.index.entry(key) {
                std::collections::hash_map::Entry::Occupied(_) => continue,
                std::collections::hash_map::Entry::Vacant(v) => v.insert(at),
            };
            let has_parent = parent.is_valid(i);
            let parent = if has_parent { Self::key(trace.value(i), parent.value(i)) } else { 0 };
            let kind = operation(op.is_valid(i).then(|| op.value(i)), name.value(i));
            let extra = match kind {
                Op::Chat => {
                    self.chats.push(
                        SpanTokens {
                            input: int(0, i),
                            output: int(1, i),
                            total: int(2, i),
                            cache_read: int(3, i),
                            cache_write: int(4, i),
                        }
                        .as_chat(),
                    );
                    self.chats.len() - 1
                }
                Op::Agent => {
                    self.ids.push((trace.value(i).into(), span.value(i).into()));
                    self.ids.len() - 1
                }
                Op::Tool | Op::Other => 0,
            } as u32;
            self.spans.push(Span {
                parent,
                start_ms: start.value(i),
                end_ms: end.value(i),
                tier: tier[i],
                tenant: tenant[i],
                user: user[i],
                model: model[i],
                extra,
                op: kind,
                status: SpanStatus::from_code(st.value(i)),
                has_parent,
            });
        }
        Ok(())
    }

    /// The agent measures and invocations of the day's spans; `None` when a sum overflows.
    /// Measures are summed per row key as the spans are read (one entry per key, not per
    /// span).
    pub(crate) fn rollup(&self, strings: &mut Strings) -> Option<(Vec<AgentRow>, Vec<Invocation>)> {
        let (spans, index) = (&self.spans, &self.index);
        // The invocation a span ran in: the nearest invoke_agent ancestor (or itself).
        let root = |i: usize| -> Option<usize> {
            let mut at = i;
            for _ in 0..64 {
                let s = &spans[at];
                if s.op == Op::Agent {
                    return Some(at);
                }
                if !s.has_parent {
                    return None;
                }
                at = *index.get(&s.parent)? as usize;
            }
            None
        };
        let unknown_user = strings[2].code(UNKNOWN);
        let unknown_model = strings[3].code(UNKNOWN);
        let mut invocations: HashMap<usize, Invocation> = HashMap::default();
        let mut rows: HashMap<RowKey, (AgentMeasures, ChatMeasures)> = HashMap::default();
        for (i, s) in spans.iter().enumerate() {
            if s.op == Op::Other {
                continue;
            }
            let (agent, tool, chat) = (s.op == Op::Agent, s.op == Op::Tool, s.op == Op::Chat);
            let r = root(i);
            if let Some(r) = r {
                let a = &spans[r];
                let inv = invocations.entry(r).or_insert_with(|| Invocation {
                    start_ms: a.start_ms,
                    ids: a.extra,
                    tier: a.tier,
                    tenant: a.tenant,
                    user: some(a.user),
                    model: some(a.model),
                    duration_ms: a.duration_ms(),
                    tool_calls: 0,
                    tool_errors: 0,
                    model_calls: 0,
                    status: a.status,
                });
                if tool {
                    inv.tool_calls += 1;
                    inv.tool_errors += i64::from(s.status == SpanStatus::Error);
                }
                if chat {
                    inv.model_calls += 1;
                    if inv.model.is_none() {
                        inv.model = some(s.model);
                    }
                }
            }
            let a = r.map(|r| &spans[r]);
            let user = some(s.user).or(a.and_then(|a| some(a.user))).unwrap_or(unknown_user);
            // A chat span names the model it called; other spans take their invocation's.
            let model = if chat {
                some(s.model).or(a.and_then(|a| some(a.model)))
            } else {
                a.and_then(|a| some(a.model)).or(some(s.model))
            }
            .unwrap_or(unknown_model);
            let mut m = AgentMeasures::default();
            let mut c = ChatMeasures::default();
            let mut band = 0;
            if chat {
                let tokens = self.chats[s.extra as usize];
                band = agentmeter_schemas::prompt_band(&tokens);
                c.calls = 1;
                c.usage_unknown = i64::from(tokens.input == 0 && tokens.total == 0);
                c.tokens = tokens;
            } else if agent {
                m.agent_invocations = 1;
                m.agent_duration_ms = s.duration_ms();
                m.max_agent_duration_ms = s.duration_ms();
            } else {
                m.tool_calls = 1;
                m.tool_errors = i64::from(s.status == SpanStatus::Error);
            }
            let key = (hour_start_ms(s.start_ms), s.tier, s.tenant, user, model, band);
            let row = rows.entry(key).or_default();
            *row = (row.0.checked_add(&m)?, row.1.checked_add(&c)?);
        }
        let rows =
            rows.into_iter()
                .map(|((hour_ms, tier, tenant, user, model, prompt_band), (measures, chat))| {
                    AgentRow { hour_ms, tier, tenant, user, model, measures, chat, prompt_band }
                })
                .collect();
        Some((rows, invocations.into_values().collect()))
    }
}
