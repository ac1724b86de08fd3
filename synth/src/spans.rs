//! The agents' spans: for a share of the premium tier's usage events (each one agent
//! invocation), the trace Strands Agents exports for it (FORMATS.md appendix B), written to
//! `otlp/spans-YYYY-MM-DD.ndjson.gz` as the OpenTelemetry Collector's file exporter writes
//! traces: one OTLP JSON `ExportTraceServiceRequest` per line.
//!
//! A trace is an `invoke_agent` root starting at the usage event's time, 1 to 3
//! `execute_event_loop_cycle` children, one `chat` span in each cycle (their tokens sum
//! exactly to the call's own tokens, which the root carries too, even where a reused agent's
//! line logs a running sum; all 0 for a call without usage) and 0 to 6 `execute_tool` spans
//! in the cycles before the last, about 3% of them failing with an `exception` event that
//! holds a fake patient note. Spans are exported as they end (children first, the root last),
//! in batches of 4 to 48 spans, so a root often lands in a later line than its children.
//! Traces never cross midnight (a trace near it is squeezed to fit), so that a day's spans
//! hold whole invocations. A few invocations a month are runaways (more than
//! [`RUNAWAY_TOOL_CALLS`] tool calls or longer than [`RUNAWAY_MS`]); some lines are written
//! twice (a retried export); a dirty month adds spans without a tenant.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use agentmeter_schemas::{Accounting, Reason, Tokens};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::AgentTotals;
use super::day::{HOUR_MS, Usage};
use super::otlp_text::{
    AGENT, Exception, Resource, SpanHead, SpanJson, Tok, pick_tool, push_resource_spans,
    tool_call_id,
};
use super::plan::{HAIKU, MODELS, Plan, Rng, TierKind, scramble};

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_US: u64 = 1_000;
/// An invocation with more tool calls is a runaway (the flags policy's default).
pub(crate) const RUNAWAY_TOOL_CALLS: i64 = 10;
/// An invocation longer than this, in ms, is a runaway (the flags policy's default).
pub(crate) const RUNAWAY_MS: i64 = 300_000;
/// Spans without a tenant in a dirty month.
const DIRTY_SPANS: usize = 5;
/// Failing tool calls, per thousand.
const TOOL_ERROR_PERMILLE: u32 = 30;
/// gzip level of the span files: fast, since they are the largest input by far.
const GZIP_LEVEL: u32 = 1;

/// A planned runaway invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runaway {
    /// 11 to 14 tool calls.
    Tools,
    /// A tool call that hangs for 5.5 to 9 minutes.
    Long,
}

/// The month's runaways, as (day, hour, kind): each becomes the first traced invocation of
/// that day at or after that hour (if any).
fn runaway_slots(plan: &Plan) -> Vec<(usize, u32, Runaway)> {
    let days: Vec<usize> = (0..plan.days.len()).filter(|&d| plan.days[d].events > 0).collect();
    if plan.cfg.span_permille == 0 || days.is_empty() {
        return Vec::new();
    }
    let mut rng = Rng::new(plan.cfg.seed, "span-runaway", 0);
    [Runaway::Tools, Runaway::Tools, Runaway::Tools, Runaway::Long, Runaway::Long]
        .into_iter()
        .map(|k| (days[rng.index(days.len())], rng.range(1, 21) as u32, k))
        .collect()
}

/// The hours of the bad spans of each day of a dirty month, as (day, hour).
fn dirty_slots(plan: &Plan) -> Vec<(usize, u32)> {
    if !plan.cfg.dirty {
        return Vec::new();
    }
    let mut rng = Rng::new(plan.cfg.seed, "span-dirty", 0);
    (0..DIRTY_SPANS).map(|_| (rng.index(plan.days.len()), rng.below(24) as u32)).collect()
}

/// What one day's span file holds, counted as the decoder and the lake will count it.
#[derive(Debug, Default)]
pub(crate) struct SpanTally {
    /// Records (one per span, copies included), distinct spans, duplicates, quarantined.
    pub acc: Accounting,
    /// Per tenant index.
    pub agents: Vec<AgentTotals>,
    /// Per tenant index: distinct `chat` spans that report no usage (input and total 0).
    pub chat_unknown: Vec<i64>,
    /// `trace_id:span_id` of the runaway invocations.
    pub runaway: Vec<String>,
    /// The file written, if any, relative to the input directory.
    pub files: Vec<String>,
}

/// A span waiting in the export batch: its tenant (`None`: a span without one), its text, and
/// whether it is a `chat` span that reports no usage.
struct Pending {
    tenant: Option<usize>,
    text: String,
    unknown: bool,
}

/// A written line, kept to be written again (a retried export).
struct Line {
    text: String,
    valid: u64,
    bad: u64,
    /// Of the valid spans, `chat` spans without usage.
    unknown: u64,
}

/// The role of a span in its trace.
#[derive(Debug, Clone, Copy)]
enum Role {
    Root,
    /// A cycle, by number.
    Cycle(usize),
    /// The chat span of a cycle, with its time to first token in ms.
    Chat(usize, i64),
    Tool {
        name: &'static str,
        error: bool,
    },
}

/// A span of a trace being built; its parent is an index into the trace's spans.
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: Option<usize>,
    role: Role,
    start: u64,
    end: u64,
}

impl Node {
    fn depth(&self) -> u8 {
        match self.role {
            Role::Root => 0,
            Role::Cycle(_) => 1,
            _ => 2,
        }
    }
}

/// Floors nanoseconds to milliseconds, as the decoder does.
fn ms(ns: u64) -> i64 {
    (ns / NS_PER_MS) as i64
}

/// `x` split into `n` parts (at least one) that sum to it exactly.
fn split(rng: &mut Rng, x: i64, n: usize) -> Vec<i64> {
    let w: Vec<i64> = (0..n).map(|_| rng.range(1, 100) as i64).collect();
    let sum: i64 = w.iter().sum();
    let mut parts: Vec<i64> = w.iter().map(|wi| x * wi / sum).collect();
    let given: i64 = parts.iter().sum();
    if let Some(last) = parts.last_mut() {
        *last += x - given;
    }
    parts
}

/// One day's spans: their own random stream (the logs' bytes do not depend on them), the
/// export batch, and the open file.
pub(super) struct SpanDay<'p> {
    plan: &'p Plan,
    index: usize,
    rng: Rng,
    salt: u64,
    seq: u64,
    day_start_ms: i64,
    day_end_ns: u64,
    rel: String,
    path: PathBuf,
    file: Option<GzEncoder<BufWriter<File>>>,
    batch: Vec<Pending>,
    target: usize,
    retry: Option<Line>,
    force_duplicate: bool,
    /// Runaways still to make today, by hour.
    runaways: Vec<(u32, Runaway)>,
    /// Hours of the bad spans still to write today.
    dirty: Vec<u32>,
    tally: SpanTally,
}

impl<'p> SpanDay<'p> {
    pub(super) fn new(
        plan: &'p Plan,
        index: usize,
        input: &Path,
        date: &str,
        start_ms: i64,
    ) -> Self {
        let cfg = &plan.cfg;
        let mut rng = Rng::new(cfg.seed, "spans", index as u64);
        let mut runaways: Vec<(u32, Runaway)> =
            runaway_slots(plan).into_iter().filter(|s| s.0 == index).map(|s| (s.1, s.2)).collect();
        runaways.sort_by_key(|r| r.0);
        let mut dirty: Vec<u32> =
            dirty_slots(plan).into_iter().filter(|s| s.0 == index).map(|s| s.1).collect();
        dirty.sort_unstable();
        let rel = format!("otlp/spans-{date}.ndjson.gz");
        let day_start_ns = u64::try_from(start_ms).unwrap_or(0) * NS_PER_MS;
        Self {
            plan,
            index,
            salt: Rng::new(cfg.seed, "span-salt", 0).u64(),
            target: rng.range(4, 48) as usize,
            rng,
            seq: 0,
            day_start_ms: start_ms,
            day_end_ns: day_start_ns + 24 * HOUR_MS as u64 * NS_PER_MS,
            path: input.join(&rel),
            rel,
            file: None,
            batch: Vec::new(),
            retry: None,
            force_duplicate: plan.days[index].force_duplicates && cfg.duplicate_permille > 0,
            runaways,
            dirty,
            tally: SpanTally {
                agents: vec![AgentTotals::default(); plan.tenants.len()],
                chat_unknown: vec![0; plan.tenants.len()],
                ..SpanTally::default()
            },
        }
    }

    /// After usage event `u` of hour `hour` (events come in time order): its trace, if it gets
    /// one, and the bad spans now due. True when a tool span of the trace starts in the next
    /// hour (it adds a `usage_hourly` row there for the event's tenant, user and model).
    pub(super) fn usage(&mut self, u: &Usage, hour: u32) -> io::Result<bool> {
        while self.dirty.first().is_some_and(|h| *h <= hour) {
            self.dirty.remove(0);
            self.bad_span(u.time_ms)?;
        }
        let plan = self.plan;
        if plan.tenants[u.tenant].tier != TierKind::Premium
            || !self.rng.chance(plan.cfg.span_permille)
        {
            return Ok(false);
        }
        // A runaway needs room before midnight (a squeezed trace would be shorter).
        let room = self.day_start_ms + 24 * HOUR_MS - u.time_ms > 20 * 60_000;
        let kind = if room && self.runaways.first().is_some_and(|r| r.0 <= hour) {
            Some(self.runaways.remove(0).1)
        } else {
            None
        };
        self.trace(u, kind)
    }

    /// A trace id unique in the month (its first half is a bijection of the day and a
    /// sequence number), never all zero.
    fn trace_id(&mut self) -> String {
        self.seq += 1;
        let hi = scramble(self.salt ^ (((self.index as u64) << 40) | self.seq));
        format!("{hi:016x}{:016x}", self.rng.u64() | 1)
    }

    /// The spans of one invocation: shape, times, then their text in export order.
    fn trace(&mut self, u: &Usage, kind: Option<Runaway>) -> io::Result<bool> {
        let trace_id = self.trace_id();
        // Span ids: distinct non-zero inputs of a bijection that keeps 0 at 0.
        let base = self.rng.u64() << 8;
        let span_id = |i: usize| format!("{:016x}", scramble(base | (i as u64 + 1)));
        let rng = &mut self.rng;
        let (cycles, tools) = match kind {
            Some(Runaway::Tools) => (3, rng.range(11, 14) as usize),
            Some(Runaway::Long) => (2 + rng.index(2), rng.range(1, 4) as usize),
            None => match rng.below(100) {
                0..30 => (1, 0),
                30..75 => (2, rng.range(1, 6) as usize),
                _ => (3, rng.range(1, 6) as usize),
            },
        };
        // Tools run in the cycles before the last (the last one answers).
        let mut per_cycle = [0usize; 3];
        for _ in 0..tools {
            per_cycle[rng.index(cycles - 1)] += 1;
        }
        let hang = (kind == Some(Runaway::Long)).then(|| rng.index(tools));

        let s0 = u64::try_from(u.time_ms).unwrap_or(0) * NS_PER_MS + rng.below(NS_PER_MS);
        let mut nodes = vec![Node { parent: None, role: Role::Root, start: s0, end: s0 }];
        let mut t = s0 + rng.range(1, 5) * NS_PER_MS + rng.below(NS_PER_MS);
        let mut tool_no = 0;
        for (c, &n_tools) in per_cycle.iter().enumerate().take(cycles) {
            let ci = nodes.len();
            nodes.push(Node { parent: Some(0), role: Role::Cycle(c), start: t, end: t });
            t += rng.range(50, 900) * NS_PER_US;
            let chat = rng.range(400, 3500) * NS_PER_MS + rng.below(NS_PER_MS);
            let ttft = (chat / NS_PER_MS * rng.range(20, 60) / 100) as i64;
            nodes.push(Node {
                parent: Some(ci),
                role: Role::Chat(c, ttft),
                start: t,
                end: t + chat,
            });
            t += chat + rng.range(100, 3000) * NS_PER_US;
            for _ in 0..n_tools {
                let hangs = hang == Some(tool_no);
                let (name, dur) = if hangs {
                    ("web_search", rng.range(330_000, 540_000) * NS_PER_MS)
                } else {
                    (pick_tool(rng), rng.range(50, 1999) * NS_PER_MS + rng.below(NS_PER_MS))
                };
                let error = rng.chance(TOOL_ERROR_PERMILLE);
                let role = Role::Tool { name, error };
                nodes.push(Node { parent: Some(ci), role, start: t, end: t + dur });
                t += dur + rng.range(50, 2000) * NS_PER_US;
                tool_no += 1;
            }
            nodes[ci].end = t;
            t += rng.range(50, 500) * NS_PER_US;
        }
        nodes[0].end = t + rng.range(1, 30) * NS_PER_MS;
        // Squeeze a trace that would cross midnight into what is left of the day.
        let limit = self.day_end_ns - 1;
        if nodes[0].end > limit {
            let (avail, len) = (u128::from(limit - s0), u128::from(nodes[0].end - s0));
            let fit = |x: u64| s0 + (u128::from(x - s0) * avail / len) as u64;
            for n in &mut nodes {
                (n.start, n.end) = (fit(n.start), fit(n.end));
            }
        }

        let cache = u.model == HAIKU;
        let split_in = split(rng, u.input, cycles);
        let split_out = split(rng, u.output, cycles);
        let split_read = split(rng, u.cache_read, cycles);
        let split_write = split(rng, u.cache_write, cycles);
        let chat_tok = |c: usize| Tok {
            input: split_in[c],
            output: split_out[c],
            cache_read: split_read[c],
            cache_write: split_write[c],
            cache,
        };
        let event_tok = Tok {
            input: u.input,
            output: u.output,
            cache_read: u.cache_read,
            cache_write: u.cache_write,
            cache,
        };
        let cycle_ids: Vec<String> = (0..cycles).map(|_| rng.uuid()).collect();

        let plan = self.plan;
        let tenant = &plan.tenants[u.tenant];
        let tier = tenant.tier.as_str();
        let actor = format!("{tier}-{}-{}", tenant.id, tenant.users[u.user]);
        let model_id = if u.profile {
            super::plan::profile_arn(plan.cfg.seed, u.tenant, u.model)
        } else {
            MODELS[usize::from(u.model)].to_owned()
        };
        let model = model_id.as_str();
        let ids: Vec<String> = (0..nodes.len()).map(span_id).collect();
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        order.sort_by_key(|&i| (nodes[i].end, std::cmp::Reverse(nodes[i].depth()), i));
        // Each span's text, and whether it is a chat span without usage (a call whose stream
        // ended without its usage chunk reports 0 in every cycle).
        let mut texts = Vec::with_capacity(nodes.len());
        for &i in &order {
            let n = &nodes[i];
            let tool_name;
            let name = match n.role {
                Role::Root => "invoke_agent clinic-assistant",
                Role::Cycle(_) => "execute_event_loop_cycle",
                Role::Chat(..) => "chat",
                Role::Tool { name, .. } => {
                    tool_name = format!("execute_tool {name}");
                    &tool_name
                }
            };
            let head = SpanHead {
                trace_id: &trace_id,
                span_id: &ids[i],
                parent: n.parent.map(|p| ids[p].as_str()),
                name,
                start_ns: n.start,
                end_ns: n.end,
            };
            let op = name.split(' ').next().unwrap_or(name);
            let mut s = SpanJson::new(&head);
            s.s("tier", tier)
                .s("clinic_id", &tenant.id)
                .s("actor_id", &actor)
                .s("gen_ai.operation.name", op)
                .s("gen_ai.system", "strands-agents");
            let mut exception = None;
            let mut unknown = false;
            match n.role {
                Role::Root => {
                    s.s("gen_ai.agent.name", AGENT)
                        .s("gen_ai.request.model", model)
                        .agent_tools()
                        .tokens(&event_tok);
                }
                Role::Cycle(c) => {
                    s.s("event_loop.cycle_id", &cycle_ids[c]);
                    if c > 0 {
                        s.s("event_loop.parent_cycle_id", &cycle_ids[c - 1]);
                    }
                }
                Role::Chat(c, ttft) => {
                    let tok = chat_tok(c);
                    unknown = tok.input == 0 && tok.total() == 0;
                    s.s("gen_ai.request.model", model)
                        .tokens(&tok)
                        .i("gen_ai.server.time_to_first_token", ttft)
                        .i("gen_ai.server.request.duration", ms(n.end) - ms(n.start));
                }
                Role::Tool { name, error } => {
                    s.s("gen_ai.tool.name", name)
                        .s("gen_ai.tool.call.id", &tool_call_id(&mut self.rng))
                        .s("gen_ai.tool.status", if error { "error" } else { "success" });
                    if error {
                        exception = Some(Exception::new(&mut self.rng, name, n.end));
                    }
                }
            }
            texts.push((s.finish(exception.as_ref()), unknown));
        }

        // What the lake's span rollup will find.
        let duration = ms(nodes[0].end) - ms(nodes[0].start);
        let errors = nodes.iter().filter(|n| matches!(n.role, Role::Tool { error: true, .. }));
        self.tally.chat_unknown[u.tenant] += texts.iter().filter(|t| t.1).count() as i64;
        let a = &mut self.tally.agents[u.tenant];
        a.spans += nodes.len() as i64;
        a.agent_invocations += 1;
        a.agent_duration_ms += duration;
        a.max_agent_duration_ms = a.max_agent_duration_ms.max(duration);
        a.tool_calls += tools as i64;
        a.tool_errors += errors.count() as i64;
        a.model_calls += cycles as i64;
        a.chat_tokens.add(&Tokens {
            input: u.input,
            output: u.output,
            total: u.total(),
            cache_read: u.cache_read,
            cache_write: u.cache_write,
            cache_write_1h: 0,
        });
        if tools as i64 > RUNAWAY_TOOL_CALLS || duration > RUNAWAY_MS {
            self.tally.runaway.push(format!("{trace_id}:{}", ids[0]));
        }
        let next_hour_ms = (u.time_ms.div_euclid(HOUR_MS) + 1) * HOUR_MS;
        let spills = nodes.iter().any(|n| {
            matches!(n.role, Role::Tool { .. } | Role::Chat(..)) && ms(n.start) >= next_hour_ms
        });

        for (text, unknown) in texts {
            self.push(Some(u.tenant), text, unknown)?;
        }
        Ok(spills)
    }

    /// A failing tool span of a service that sets no tenant (neither on the resource nor on
    /// the span): quarantined as `missing_field`, its exception event never kept.
    fn bad_span(&mut self, time_ms: i64) -> io::Result<()> {
        let trace_id = self.trace_id();
        let rng = &mut self.rng;
        let span_id = format!("{:016x}", scramble((rng.u64() << 8) | 1));
        let parent = format!("{:016x}", scramble((rng.u64() << 8) | 2));
        let start = u64::try_from(time_ms).unwrap_or(0) * NS_PER_MS + rng.below(NS_PER_MS);
        let end = (start + rng.range(50, 1999) * NS_PER_MS).min(self.day_end_ns - 1);
        let head = SpanHead {
            trace_id: &trace_id,
            span_id: &span_id,
            parent: Some(&parent),
            name: "execute_tool patient_context",
            start_ns: start,
            end_ns: end,
        };
        let mut s = SpanJson::new(&head);
        s.s("tier", "premium")
            .s("gen_ai.operation.name", "execute_tool")
            .s("gen_ai.system", "strands-agents")
            .s("gen_ai.tool.name", "patient_context")
            .s("gen_ai.tool.call.id", &tool_call_id(rng))
            .s("gen_ai.tool.status", "error");
        let exception = Exception::new(rng, "patient_context", end);
        let text = s.finish(Some(&exception));
        self.push(None, text, false)
    }

    /// Adds a span to the export batch, exporting the batch when full.
    fn push(&mut self, tenant: Option<usize>, text: String, unknown: bool) -> io::Result<()> {
        self.batch.push(Pending { tenant, text, unknown });
        if self.batch.len() >= self.target {
            self.flush()?;
        }
        Ok(())
    }

    /// Exports the batch as one line (one `resourceSpans` per tenant), then the retried line
    /// waiting, and maybe keeps this one to retry.
    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.target = self.rng.range(4, 48) as usize;
        let mut groups: Vec<(Option<usize>, Vec<usize>)> = Vec::new();
        for (i, p) in batch.iter().enumerate() {
            match groups.iter_mut().find(|g| g.0 == p.tenant) {
                Some(g) => g.1.push(i),
                None => groups.push((p.tenant, vec![i])),
            }
        }
        let len: usize = batch.iter().map(|p| p.text.len() + 1).sum();
        let mut text = String::with_capacity(len + 400 * groups.len() + 32);
        text.push_str("{\"resourceSpans\":[");
        for (k, (tenant, members)) in groups.iter().enumerate() {
            if k > 0 {
                text.push(',');
            }
            let r = match tenant {
                Some(t) => {
                    let t = &self.plan.tenants[*t];
                    Resource {
                        service: "clinic-agent-premium",
                        tier: t.tier.as_str(),
                        tenant: Some(&t.id),
                    }
                }
                None => Resource { service: "clinic-agent-staging", tier: "premium", tenant: None },
            };
            push_resource_spans(&mut text, &r, members.iter().map(|&i| batch[i].text.as_str()));
        }
        text.push_str("]}");
        let valid = batch.iter().filter(|p| p.tenant.is_some()).count() as u64;
        let unknown = batch.iter().filter(|p| p.tenant.is_some() && p.unknown).count() as u64;
        let line = Line { text, valid, bad: batch.len() as u64 - valid, unknown };
        self.write_line(&line, false)?;
        if let Some(again) = self.retry.take() {
            self.write_line(&again, true)?;
        }
        let p = self.plan.cfg.duplicate_permille;
        if std::mem::take(&mut self.force_duplicate) || (p > 0 && self.rng.chance(p)) {
            self.retry = Some(line);
        }
        Ok(())
    }

    fn write_line(&mut self, line: &Line, again: bool) -> io::Result<()> {
        let w = match &mut self.file {
            Some(w) => w,
            None => {
                if let Some(dir) = self.path.parent() {
                    fs::create_dir_all(dir)?;
                }
                let f = BufWriter::with_capacity(256 << 10, File::create(&self.path)?);
                self.tally.files.push(self.rel.clone());
                self.file.insert(GzEncoder::new(f, Compression::new(GZIP_LEVEL)))
            }
        };
        w.write_all(line.text.as_bytes())?;
        w.write_all(b"\n")?;
        let acc = &mut self.tally.acc;
        acc.records_read += line.valid + line.bad;
        if again {
            acc.span_duplicates += line.valid;
        } else {
            acc.spans_written += line.valid;
            acc.span_usage_unknown += line.unknown;
        }
        if line.bad > 0 {
            *acc.quarantined.entry(Reason::MissingField).or_default() += line.bad;
        }
        Ok(())
    }

    /// The bad spans still due, the last batch and retry, and the file closed.
    pub(super) fn finish(mut self) -> io::Result<SpanTally> {
        for h in std::mem::take(&mut self.dirty) {
            self.bad_span(self.day_start_ms + i64::from(h) * HOUR_MS + 1234)?;
        }
        self.flush()?;
        if let Some(again) = self.retry.take() {
            self.write_line(&again, true)?;
        }
        if let Some(w) = self.file.take() {
            w.finish()?.flush()?;
        }
        self.tally.runaway.sort();
        Ok(self.tally)
    }
}
