//! What spans add to the rollups: agent invocations with their duration and tool calls, per
//! hour, tier, tenant, user and model, and the `agent_invocations` table.
//!
//! Strands exports children before their `invoke_agent` root, and only the root (or a `chat`
//! span) names the model: tool spans are attributed to the user and model of the invocation
//! they ran in, found by walking parent ids within the trace. Tokens are taken from `chat`
//! spans only (one per model call, under the model it called), into columns of their own:
//! `invoke_agent` spans repeat their children's sum, or an Agent object's lifetime total.

use rustc_hash::FxHashMap as HashMap;

use agentmeter_schemas::tables::{AgentMeasures, ChatMeasures, InvocationRow, hour_start_ms};
use agentmeter_schemas::{AgentSpan, ModelId, SpanStatus, TenantId, Tier, UserId};

/// User or model id of spans that carry none.
pub const UNKNOWN: &str = "_unknown";

/// The agent measures of one (hour, tier, tenant, user, model, prompt band), before interning.
pub(crate) struct AgentRow {
    pub hour_ms: i64,
    pub tier: Tier,
    pub tenant_id: TenantId,
    pub user: String,
    pub model: String,
    pub measures: AgentMeasures,
    pub chat: ChatMeasures,
    /// The prompt band of a chat span's call; 0 for other spans.
    pub prompt_band: i64,
}

/// A row's key, borrowed from the spans: (hour, tier, tenant, user, model, prompt band).
type RowKey<'s> = (i64, &'s Tier, &'s TenantId, &'s str, &'s str, i64);

/// The agent measures and invocations of one day's spans; `None` when a sum overflows.
/// Measures are summed per row key as the spans are read (one entry per key, not per span).
pub(crate) fn rollup(spans: &[AgentSpan]) -> Option<(Vec<AgentRow>, Vec<InvocationRow>)> {
    let index: HashMap<(&str, &str), usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.trace_id.as_str(), s.span_id.as_str()), i))
        .collect();
    // The invocation a span ran in: the nearest invoke_agent ancestor (or itself).
    let root = |i: usize| -> Option<usize> {
        let mut at = i;
        for _ in 0..64 {
            let s = &spans[at];
            if s.is_operation("invoke_agent") {
                return Some(at);
            }
            let parent = s.parent_span_id.as_deref()?;
            at = *index.get(&(s.trace_id.as_str(), parent))?;
        }
        None
    };
    let mut invocations: HashMap<usize, InvocationRow> = HashMap::default();
    let mut rows: HashMap<RowKey<'_>, (AgentMeasures, ChatMeasures)> = HashMap::default();
    for (i, s) in spans.iter().enumerate() {
        let agent = s.is_operation("invoke_agent");
        let tool = s.is_operation("execute_tool");
        let chat = s.is_operation("chat");
        if !agent && !tool && !chat {
            continue;
        }
        let r = root(i);
        if let Some(r) = r {
            let a = &spans[r];
            let inv = invocations.entry(r).or_insert_with(|| InvocationRow {
                start_ms: a.start_ms,
                trace_id: a.trace_id.clone(),
                span_id: a.span_id.clone(),
                tier: a.tier.clone(),
                tenant_id: a.tenant_id.clone(),
                user_id: a.user_id.clone(),
                model_id: a.model_id.clone(),
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
                if inv.model_id.is_none() {
                    inv.model_id.clone_from(&s.model_id);
                }
            }
        }
        let a = r.map(|r| &spans[r]);
        let user = s
            .user_id
            .as_ref()
            .or(a.and_then(|a| a.user_id.as_ref()))
            .map_or(UNKNOWN, UserId::as_str);
        // A chat span names the model it called; other spans take their invocation's.
        let model = if chat {
            s.model_id.as_ref().or(a.and_then(|a| a.model_id.as_ref()))
        } else {
            a.and_then(|a| a.model_id.as_ref()).or(s.model_id.as_ref())
        }
        .map_or(UNKNOWN, ModelId::as_str);
        let mut m = AgentMeasures::default();
        let mut c = ChatMeasures::default();
        let mut band = 0;
        if let Some(tokens) = s.chat_tokens() {
            band = agentmeter_schemas::prompt_band(&tokens);
            c.calls = 1;
            c.usage_unknown = i64::from(s.usage_unknown());
            c.tokens = tokens;
        } else if agent {
            m.agent_invocations = 1;
            m.agent_duration_ms = s.duration_ms();
            m.max_agent_duration_ms = s.duration_ms();
        } else {
            m.tool_calls = 1;
            m.tool_errors = i64::from(s.status == SpanStatus::Error);
        }
        let key = (hour_start_ms(s.start_ms), &s.tier, &s.tenant_id, user, model, band);
        let row = rows.entry(key).or_default();
        *row = (row.0.checked_add(&m)?, row.1.checked_add(&c)?);
    }
    let rows = rows
        .into_iter()
        .map(|((hour_ms, tier, tenant, user, model, prompt_band), (measures, chat))| AgentRow {
            hour_ms,
            tier: tier.clone(),
            tenant_id: tenant.clone(),
            user: user.to_owned(),
            model: model.to_owned(),
            measures,
            chat,
            prompt_band,
        })
        .collect();
    // The model of an invocation may come from its chat spans (Strands sets it on both).
    let mut inv: Vec<InvocationRow> = invocations.into_values().collect();
    inv.sort_by(|a, b| {
        (a.tenant_id.as_str(), a.start_ms, &a.trace_id, &a.span_id).cmp(&(
            b.tenant_id.as_str(),
            b.start_ms,
            &b.trace_id,
            &b.span_id,
        ))
    });
    Some((rows, inv))
}
