//! One day of the month: hourly volumes, tenants, users and tokens, and the records written
//! for them into the day's files, counted as the decoder will count them.
//!
//! Only one hour of events is held at a time, plus the open Firehose payloads and a few copies
//! waiting to be repeated, so memory does not grow with the number of events.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use agentmeter_schemas::{Accounting, Reason, SkipKind};
use chrono::NaiveDate;

use super::deliver::{Payload, Rec};
use super::dirty::{Bad, Channel};
use super::plan::{
    DayPlan, HAIKU, MODELS, Plan, Rng, TierKind, apportion, profile_arn, scramble, uuid_text,
};
use super::shapes::{Counts, Session, Shapes};
use super::spans::{SpanDay, SpanTally};
use super::write::{
    CwExport, FilterLogEvents, FirehoseFile, Ndjson, Obj, Shape, Val, log_event, skip_message,
};
use agentmeter_schemas::ServiceTier;

/// Relative request volume per UTC hour: low at night, peak around 14:00.
const DIURNAL: [f64; 24] = [
    18.0, 14.0, 11.0, 9.0, 8.0, 9.0, 12.0, 20.0, 35.0, 55.0, 72.0, 85.0, 92.0, 97.0, 100.0, 98.0,
    92.0, 82.0, 68.0, 55.0, 45.0, 36.0, 29.0, 23.0,
];
/// Mean share of the basic tier in each hour's requests.
const BASIC_SHARE: f64 = 0.55;
pub(super) const HOUR_MS: i64 = 3_600_000;

/// Sums of one set of events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Measures {
    pub invocations: i64,
    pub input: i64,
    pub output: i64,
    pub total: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    pub cache_write_1h: i64,
}

impl Measures {
    fn add(&mut self, u: &Usage) {
        self.invocations += 1;
        self.input += u.input;
        self.output += u.output;
        self.total += u.total();
        self.cache_read += u.cache_read;
        self.cache_write += u.cache_write;
        self.cache_write_1h += u.cache_write_1h;
    }

    pub(crate) fn merge(&mut self, o: &Measures) {
        self.invocations += o.invocations;
        self.input += o.input;
        self.output += o.output;
        self.total += o.total;
        self.cache_read += o.cache_read;
        self.cache_write += o.cache_write;
        self.cache_write_1h += o.cache_write_1h;
    }
}

/// What a tenant's distinct events come to once billed, where that differs from the lines as
/// logged (see [`super::shapes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Billed {
    /// Every call's own tokens: what `usage_hourly` bills, a lifetime line as its increment.
    pub calls: Measures,
    /// Lines billed as the increment of a lifetime series (all but each session's first).
    pub cumulative_lines: i64,
    /// Lines that report no usage.
    pub usage_unknown: i64,
    /// Every call's own tokens by price class: (service tier, prompt band).
    pub classes: BTreeMap<(ServiceTier, i64), Measures>,
    /// The calls logged under the tenant's application inference profile, by model.
    pub profiles: BTreeMap<u8, Measures>,
}

impl Billed {
    pub(crate) fn merge(&mut self, o: &Billed) {
        self.calls.merge(&o.calls);
        self.cumulative_lines += o.cumulative_lines;
        self.usage_unknown += o.usage_unknown;
        for (k, m) in &o.classes {
            self.classes.entry(*k).or_default().merge(m);
        }
        for (k, m) in &o.profiles {
            self.profiles.entry(*k).or_default().merge(m);
        }
    }
}

/// What the ingest of a day's files must report.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub acc: Accounting,
    /// Per tenant index: the lines as logged.
    pub tenants: Vec<Measures>,
    /// Per tenant index: the same events billed.
    pub billed: Vec<Billed>,
    pub day: Measures,
    pub hourly_rows: u64,
}

impl Tally {
    /// The first delivery of a distinct valid event.
    fn first(&mut self, u: &Usage) {
        self.acc.records_read += 1;
        self.acc.events_written += 1;
        let line = u.logged();
        self.tenants[u.tenant].add(&line);
        self.day.add(&line);
        let b = &mut self.billed[u.tenant];
        b.calls.add(u);
        b.classes.entry(u.class()).or_default().add(u);
        if u.profile {
            b.profiles.entry(u.model).or_default().add(u);
        }
        if u.session.is_some_and(|s| s.position > 0) {
            b.cumulative_lines += 1;
        }
        if line.input == 0 && line.total() == 0 {
            b.usage_unknown += 1;
            self.acc.usage_unknown += 1;
        }
    }

    /// A further delivery of a valid event.
    pub(super) fn again(&mut self) {
        self.acc.records_read += 1;
        self.acc.duplicates += 1;
    }

    pub(crate) fn skip(&mut self, k: SkipKind) {
        self.acc.records_read += 1;
        *self.acc.skipped.entry(k).or_default() += 1;
    }

    pub(crate) fn reject(&mut self, r: Reason) {
        self.acc.records_read += 1;
        *self.acc.quarantined.entry(r).or_default() += 1;
    }
}

/// One valid usage event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    pub tenant: usize,
    pub user: usize,
    /// Index into [`MODELS`].
    pub model: u8,
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    /// Of `cache_write`, the tokens written for an hour (a price-class shape).
    pub cache_write_1h: i64,
    /// The service tier the call ran in (a price-class shape).
    pub service_tier: ServiceTier,
    /// Logged (and traced) under the tenant's application inference profile for the model.
    pub profile: bool,
    pub time_ms: i64,
    /// A reused agent's call: its line logs the session's running sum instead.
    pub session: Option<Session>,
}

impl Usage {
    /// `total_tokens`: cache tokens count in it for the models that report them.
    pub(crate) fn total(&self) -> i64 {
        self.input + self.output + self.cache_read + self.cache_write
    }

    /// The call's price class: its service tier and the band of its own prompt.
    pub(crate) fn class(&self) -> (ServiceTier, i64) {
        let t = agentmeter_schemas::Tokens {
            input: self.input,
            output: self.output,
            total: self.total(),
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            cache_write_1h: self.cache_write_1h,
        };
        (self.service_tier, agentmeter_schemas::prompt_band(&t))
    }

    /// The call's own token counts.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
        }
    }

    /// Replaces the call's own token counts.
    pub(crate) fn set_counts(&mut self, c: Counts) {
        (self.input, self.output, self.cache_read, self.cache_write) =
            (c.input, c.output, c.cache_read, c.cache_write);
    }

    /// The event as its log line states it: a reused agent's line holds the running sum of
    /// its session's calls up to this one; any other line, the call's own tokens.
    pub(crate) fn logged(&self) -> Usage {
        let mut line = *self;
        if let Some(s) = self.session {
            line.set_counts(s.sum);
        }
        line
    }
}

/// The token counts of a call of `model`. The draws are the generator's first ones, in the
/// same order: changing them changes every file.
pub(crate) fn draw_counts(rng: &mut Rng, model: u8) -> Counts {
    let a = rng.below(10_001) as i64;
    let b = rng.below(10_001) as i64;
    let (cache_read, cache_write) = if model == HAIKU {
        let r = if rng.chance(700) { rng.range(1024, 12_000) as i64 } else { 0 };
        let w = if rng.chance(250) { rng.range(1024, 4096) as i64 } else { 0 };
        (r, w)
    } else {
        (0, 0)
    };
    Counts {
        input: 200 + 5800 * a * a / 100_000_000,
        output: 20 + 1180 * b * b / 100_000_000,
        cache_read,
        cache_write,
    }
}

/// The outcome of one day.
#[derive(Debug)]
pub(crate) struct DayResult {
    pub date: NaiveDate,
    pub tally: Tally,
    /// Files written, relative to the input directory (not the span file).
    pub files: Vec<String>,
    /// What the day's span file holds.
    pub spans: SpanTally,
}

/// Generates every day, on up to 8 threads; the files do not depend on the thread count.
pub(crate) fn run_all(plan: &Plan, input: &Path) -> io::Result<Vec<DayResult>> {
    let n = plan.days.len();
    let workers = std::thread::available_parallelism().map_or(1, |w| w.get()).clamp(1, 8).min(n);
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<io::Result<DayResult>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let d = next.fetch_add(1, Ordering::Relaxed);
                        if d >= n {
                            break;
                        }
                        mine.push((d, Day::new(plan, d, input).and_then(Day::run)));
                    }
                    mine
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(mine) => {
                    for (d, r) in mine {
                        results[d] = Some(r);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(io::Error::other("day skipped")))).collect()
}

/// A day being generated: its random stream, its open files and what they will be counted as.
pub(super) struct Day<'p> {
    pub(super) plan: &'p Plan,
    pub(super) dp: &'p DayPlan,
    pub(super) index: usize,
    pub(super) rng: Rng,
    pub(super) salt: u64,
    pub(super) date: String,
    pub(super) start_ms: i64,
    pub(super) seq: u64,
    pub(super) tally: Tally,
    pub(super) files: Vec<String>,
    /// The input directory the files are relative to.
    pub(super) dir: PathBuf,
    pub(super) nd: Ndjson,
    pub(super) cwx: CwExport,
    pub(super) fh: FirehoseFile,
    pub(super) fle: Option<FilterLogEvents>,
    pub(super) streams: [Vec<String>; 2],
    pub(super) open: [Option<Payload>; 2],
    /// A payload to deliver again after the next member (a retried Firehose delivery).
    pub(super) retry: Option<(Vec<u8>, Vec<Rec>)>,
    /// Bad records not yet written, with the hour after which they may be.
    pub(super) pending: Vec<(u32, Bad)>,
    pub(super) control_hour: u32,
    pub(super) control_done: bool,
    /// Duplicates still to force: NDJSON copy, Firehose + export copy, retried payload.
    pub(super) force: [bool; 3],
    pub(super) hour: u32,
    pub(super) last: Option<Usage>,
    /// The agents' spans of the day.
    pub(super) spans: SpanDay<'p>,
    /// Reused agents and calls without usage, when asked for (their own random stream).
    pub(super) shapes: Option<Shapes>,
}

impl<'p> Day<'p> {
    fn new(plan: &'p Plan, index: usize, input: &Path) -> io::Result<Self> {
        let dp = &plan.days[index];
        let seed = plan.cfg.seed;
        let mut rng = Rng::new(seed, "day", index as u64);
        let date = dp.date.format("%Y-%m-%d").to_string();
        let start_ms = dp.date.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis());
        let mut files = vec![
            format!("ndjson/usage-{date}.ndjson"),
            format!("cloudwatch/export-{date}.ndjson.gz"),
            format!("firehose/usage-{date}.gz"),
        ];
        let path = |rel: &str| -> PathBuf { input.join(rel) };
        let nd = Ndjson::create(&path(&files[0]))?;
        let cwx = CwExport::create(&path(&files[1]))?;
        let fh = FirehoseFile::create(&path(&files[2]))?;
        let fle = if dp.filter_log_events {
            files.push(format!("export/filter-log-events-{date}.json"));
            Some(FilterLogEvents::create(&path(&files[3]))?)
        } else {
            None
        };
        let slashed = dp.date.format("%Y/%m/%d").to_string();
        let streams = [0, 1].map(|_| {
            (0..3).map(|_| format!("{slashed}/[$LATEST]{}", rng.hex(32))).collect::<Vec<_>>()
        });
        let mut pending = dp.bad.clone();
        pending.sort_by_key(|(h, _)| *h);
        let control_hour = rng.below(24) as u32;
        let forced = dp.force_duplicates && plan.cfg.duplicate_permille > 0;
        let spans = SpanDay::new(plan, index, input, &date, start_ms);
        Ok(Self {
            plan,
            dp,
            index,
            salt: Rng::new(seed, "salt", 0).u64(),
            rng,
            date,
            start_ms,
            seq: 0,
            tally: Tally {
                tenants: vec![Measures::default(); plan.tenants.len()],
                billed: vec![Billed::default(); plan.tenants.len()],
                ..Tally::default()
            },
            files,
            dir: input.to_owned(),
            nd,
            cwx,
            fh,
            fle,
            streams,
            open: [None, None],
            retry: None,
            pending,
            control_hour,
            control_done: false,
            force: [forced; 3],
            hour: 0,
            last: None,
            spans,
            shapes: Shapes::new(&plan.cfg, index),
        })
    }

    fn run(mut self) -> io::Result<DayResult> {
        let weights: Vec<f64> = DIURNAL.iter().map(|w| w * self.rng.jitter(0.12)).collect();
        let hours = apportion(self.dp.events, &weights);
        let mut groups = HashSet::new();
        // Groups of the next hour already known: tool and chat spans that start after their hour.
        let mut spill = HashSet::new();
        for (h, &n) in hours.iter().enumerate() {
            self.hour = h as u32;
            std::mem::swap(&mut groups, &mut spill);
            spill.clear();
            let tenants = self.allocate(n);
            let hour_start = self.start_ms + h as i64 * HOUR_MS;
            let mut times: Vec<i64> =
                (0..n).map(|_| hour_start + self.rng.below(HOUR_MS as u64) as i64).collect();
            times.sort_unstable();
            if let Some(shapes) = &mut self.shapes {
                shapes.plan_hour(&tenants, &times);
            }
            for (i, (tenant, time_ms)) in tenants.into_iter().zip(times).enumerate() {
                let mut u = self.usage(tenant, time_ms);
                if let Some(shapes) = &mut self.shapes {
                    shapes.apply(i, &mut u);
                    if self.plan.tenants[tenant].tier == TierKind::Basic {
                        shapes.price_class(&mut u);
                    } else {
                        shapes.profile(&mut u);
                    }
                }
                self.tally.first(&u);
                let (service_tier, band) = u.class();
                groups.insert((u.tenant, u.user, (u.model, u.profile), service_tier, band));
                self.route(&u)?;
                if self.spans.usage(&u, self.hour)? {
                    // Spans are keyed as standard calls of band 0 (traced calls are never
                    // given a price class).
                    spill.insert((
                        u.tenant,
                        u.user,
                        (u.model, u.profile),
                        ServiceTier::Standard,
                        0,
                    ));
                }
                self.last = Some(u);
                self.bad_due()?;
            }
            self.tally.hourly_rows += groups.len() as u64;
        }
        // Traces never cross midnight, so nothing spills out of the day.
        self.tally.hourly_rows += spill.len() as u64;
        self.finish()
    }

    /// The tenants of an hour's `n` requests, in random order.
    fn allocate(&mut self, n: u64) -> Vec<usize> {
        let plan = self.plan;
        let rng = &mut self.rng;
        let nb = ((n as f64 * BASIC_SHARE * rng.jitter(0.08)).round() as u64).min(n);
        let mut out = Vec::with_capacity(n as usize);
        if plan.noisy.is_empty() {
            out.extend((0..nb).map(|_| plan.quiet[plan.quiet_pick.sample(rng)]));
        } else {
            // Quiet tenants share what the noisy ones leave, each kept under 15% of the pool's
            // hour so that only the noisy ones cross the 20% line.
            let want = ((nb as f64 * plan.quiet_share * rng.jitter(0.3)).round() as u64).min(nb);
            let cap = nb * 3 / 20;
            let mut counts = vec![0u64; plan.quiet.len()];
            let mut placed = 0;
            for _ in 0..want {
                for _ in 0..4 {
                    let k = plan.quiet_pick.sample(rng);
                    if counts[k] < cap {
                        counts[k] += 1;
                        placed += 1;
                        out.push(plan.quiet[k]);
                        break;
                    }
                }
            }
            let shares: Vec<f64> =
                plan.noisy.iter().map(|_| plan.noisy_share * rng.jitter(0.1)).collect();
            for (i, c) in apportion(nb - placed, &shares).into_iter().enumerate() {
                out.extend((0..c).map(|_| plan.noisy[i]));
            }
        }
        out.extend((nb..n).map(|_| plan.premium[plan.premium_pick.sample(rng)]));
        rng.shuffle(&mut out);
        out
    }

    pub(super) fn usage(&mut self, tenant: usize, time_ms: i64) -> Usage {
        let t = &self.plan.tenants[tenant];
        let rng = &mut self.rng;
        let user = t.user_pick.sample(rng);
        let model = match t.tier {
            TierKind::Basic => 0,
            TierKind::Premium if rng.chance(250) => HAIKU,
            TierKind::Premium => 1,
        };
        let c = draw_counts(rng, model);
        Usage {
            tenant,
            user,
            model,
            input: c.input,
            output: c.output,
            cache_read: c.cache_read,
            cache_write: c.cache_write,
            cache_write_1h: 0,
            service_tier: ServiceTier::Standard,
            profile: false,
            time_ms,
            session: None,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` of a time in this day.
    pub(super) fn iso(&self, ms: i64) -> String {
        let t = (ms - self.start_ms).clamp(0, 24 * HOUR_MS - 1);
        let (h, m, s, f) = (t / HOUR_MS, t / 60_000 % 60, t / 1000 % 60, t % 1000);
        format!("{}T{h:02}:{m:02}:{s:02}.{f:03}Z", self.date)
    }

    /// The next number unique to this day's records, scrambled: distinct for every record of
    /// the month, yet random-looking.
    pub(super) fn unique(&mut self) -> u64 {
        self.seq += 1;
        scramble(self.salt ^ (((self.index as u64) << 40) | self.seq))
    }

    /// A CloudWatch event id: 56 digits like AWS's (`3`, the time, then digits), unique by
    /// construction.
    pub(super) fn cw_id(&mut self, ts_ms: i64) -> String {
        let unique = self.unique();
        let (a, b) = (self.rng.below(100_000_000_000), self.rng.below(100_000_000_000));
        format!("3{:013}{unique:020}{a:011}{b:011}", ts_ms.rem_euclid(10_000_000_000_000))
    }

    /// A UUID-shaped id, unique by construction.
    pub(super) fn unique_uuid(&mut self) -> String {
        let unique = self.unique();
        uuid_text(unique, self.rng.u64())
    }

    /// The model id the call is logged and traced under: its model, or the tenant's
    /// application inference profile for it.
    pub(super) fn model_id(&self, u: &Usage) -> String {
        if u.profile {
            profile_arn(self.plan.cfg.seed, u.tenant, u.model)
        } else {
            MODELS[usize::from(u.model)].to_owned()
        }
    }

    /// The usage object's common fields.
    pub(super) fn usage_obj(&self, u: &Usage, actor: bool, alias_cache: bool) -> Obj {
        let t = &self.plan.tenants[u.tenant];
        let tier = t.tier.as_str();
        let mut o = Obj::default();
        o.push("event", Val::S("inference_usage".into()));
        o.push("tier", Val::S(tier.into()));
        o.push("clinic_id", Val::S(t.id.clone()));
        let user = &t.users[u.user];
        if actor {
            o.push("actor_id", Val::S(format!("{tier}-{}-{user}", t.id)));
        } else {
            o.push("user_id", Val::S(user.clone()));
        }
        o.push("model_id", Val::S(self.model_id(u)));
        let line = u.logged();
        o.push("input_tokens", Val::I(line.input));
        o.push("output_tokens", Val::I(line.output));
        o.push("total_tokens", Val::I(line.total()));
        if u.model == HAIKU {
            let (r, w) = if alias_cache {
                ("cache_read_input_tokens", "cache_write_input_tokens")
            } else {
                ("cache_read_tokens", "cache_write_tokens")
            };
            o.push(r, Val::I(line.cache_read));
            o.push(w, Val::I(line.cache_write));
        } else if u.cache_write_1h > 0 {
            // A price-class shape: writes by lifetime, as a flat part or Converse's breakdown.
            let five = line.cache_write - u.cache_write_1h;
            o.push("cache_write_input_tokens", Val::I(line.cache_write));
            if alias_cache {
                o.push(
                    "cacheDetails",
                    Val::Raw(format!(
                        "[{{\"ttl\":\"1h\",\"inputTokens\":{}}},{{\"ttl\":\"5m\",\"inputTokens\":{five}}}]",
                        u.cache_write_1h
                    )),
                );
            } else {
                o.push("cache_write_1h_tokens", Val::I(u.cache_write_1h));
            }
        }
        match u.service_tier {
            ServiceTier::Standard => {}
            // Converse's own shape for one, a plain string for the others.
            ServiceTier::Flex => o.push("serviceTier", Val::Raw("{\"type\":\"flex\"}".into())),
            t => o.push("service_tier", Val::S(t.code().into())),
        }
        if let Some(s) = u.session {
            o.push("session_id", Val::S(s.id()));
        }
        o
    }

    /// A CloudWatch message logging `u` (the time and id come from the log event).
    pub(super) fn cw_message(&mut self, u: &Usage) -> String {
        let actor = self.rng.chance(150);
        let alias = self.rng.chance(500);
        let body = self.usage_obj(u, actor, alias).compact();
        let shape = Shape::pick(&mut self.rng);
        let req = self.rng.uuid();
        shape.wrap(&body, &self.iso(u.time_ms), &req)
    }

    /// A non-usage log event near `u`, and how it is skipped.
    pub(super) fn skip_event(&mut self, u: &Usage) -> (String, SkipKind) {
        let t = &self.plan.tenants[u.tenant];
        let req = self.rng.uuid();
        let ts = (u.time_ms - self.rng.range(1, 900) as i64).max(self.start_ms);
        let iso = self.iso(ts);
        let (msg, kind) = skip_message(&mut self.rng, &iso, &req, t.tier.as_str(), &t.id);
        let id = self.cw_id(ts);
        (log_event(&id, ts, &msg), kind)
    }

    fn finish(mut self) -> io::Result<DayResult> {
        // Bad records whose channel never became ready, then bad members before the last
        // payloads, so that a valid member still follows them.
        let pending = std::mem::take(&mut self.pending);
        let (members, records): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(_, b)| b.channel() == Channel::FirehoseMember);
        for (_, bad) in records.into_iter().chain(members) {
            self.bad_record(&bad)?;
        }
        for slot in 0..2 {
            self.flush_payload(slot)?;
        }
        if let Some((again, recs)) = self.retry.take() {
            self.deliver_again(&again, &recs)?;
        }
        if !self.control_done && self.fh.members > 0 {
            self.control()?;
        }
        // Which of the day's files hold no record (the NDJSON file always counts as used).
        let unused = [
            false,
            self.cwx.lines == 0,
            self.fh.members == 0,
            self.fle.as_ref().is_some_and(|f| f.events == 0),
        ];
        self.nd.finish()?;
        self.cwx.finish()?;
        self.fh.finish()?;
        if let Some(f) = self.fle.take() {
            f.finish()?;
        }
        if self.plan.cfg.ndjson_only {
            // Only the files that hold records: the other formats' are empty unless dirty.
            let files = std::mem::take(&mut self.files);
            let mut kept = Vec::with_capacity(files.len());
            for (rel, unused) in files.into_iter().zip(unused) {
                if unused {
                    std::fs::remove_file(self.dir.join(&rel))?;
                } else {
                    kept.push(rel);
                }
            }
            self.files = kept;
        }
        let spans = self.spans.finish()?;
        Ok(DayResult { date: self.dp.date, tally: self.tally, files: self.files, spans })
    }
}
