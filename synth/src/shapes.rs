//! Two shapes of real agent telemetry, each off by default, drawn from a random stream of
//! their own (so that the rest of the month keeps its bytes):
//!
//! - **Reused agents** ([`SynthConfig::reused_agent_permille`]): an Agent object reused across
//!   requests that logs its lifetime (accumulated) usage with a `session_id`. Its session is 2
//!   to 5 calls of one tenant, user and model within one hour (so within one UTC day), and
//!   its line of call k states the running sum of calls 1..k. The pipeline bills each line as
//!   its increment over the line before: every call once.
//! - **Missing usage** ([`SynthConfig::missing_usage_permille`]): a call whose stream ended
//!   without its usage chunk logs 0 input, output and total tokens, and its chat spans (if
//!   traced) report 0 too.
//! - **Price classes** ([`SynthConfig::price_class_permille`]): a basic-tier call (never
//!   traced, so no span sees it) that is neither a reused agent's nor missing its usage runs
//!   in the priority, flex or batch service tier, sends a long-context prompt (200,001 to
//!   250,000 input tokens), or writes its prompt cache for an hour (all or half of 1,024 to
//!   4,095 written tokens), one of the five at random.
//! - **Profile ARNs** ([`SynthConfig::profile_arn_permille`]): a premium-tier call that is not
//!   a reused agent's is logged, and traced, under the tenant's application inference profile
//!   for its model (an ARN whose id is opaque); `inference-profiles.json` lists them.
//!
//! The events themselves, their tenants, times, channels and duplicates, and the spans' shapes
//! are the month's as without the shapes; only the chosen events' user, model and tokens (and
//! a reused agent's session id) change.

use std::collections::BTreeMap;

use agentmeter_schemas::ServiceTier;

use super::SynthConfig;
use super::day::{Usage, draw_counts};
use super::plan::{Rng, scramble};

/// Fewest calls of a reused agent's session.
const MIN_CALLS: usize = 2;
/// Most calls of a reused agent's session.
const MAX_CALLS: usize = 5;

/// The token counts of a call, or a running sum of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.input += o.input;
        self.output += o.output;
        self.cache_read += o.cache_read;
        self.cache_write += o.cache_write;
    }
}

/// A reused agent's call: which session, which line of it, and what that line logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Session {
    /// Unique in the month (the id is made of it).
    number: u64,
    /// 0 for the session's first line, which the pipeline bills whole.
    pub position: usize,
    /// The running sum of the session's calls up to this one: the line's tokens.
    pub sum: Counts,
    /// The model the event drew before it became the session's call (see
    /// `Day::ndjson_usage`, which keeps the month's draws).
    pub drawn_model: u8,
}

impl Session {
    /// The `session_id` the lines of the session carry.
    pub(crate) fn id(&self) -> String {
        format!("agent-{:016x}", self.number)
    }
}

/// What becomes of one event of the hour.
#[derive(Debug, Clone, Copy)]
enum Role {
    Plain,
    Missing,
    /// A call of the hour's session of that index.
    Call(usize),
}

/// A session of the hour.
#[derive(Debug)]
struct Open {
    number: u64,
    size: usize,
    /// The calls made so far.
    next: usize,
    user: usize,
    model: u8,
    /// Every call's own counts, drawn at the first call.
    calls: Vec<Counts>,
    sum: Counts,
}

/// A day's shapes: its own random stream, and the roles of the hour's events.
pub(crate) struct Shapes {
    rng: Rng,
    salt: u64,
    day: u64,
    seq: u64,
    reused_permille: u32,
    missing_permille: u32,
    class_permille: u32,
    profile_permille: u32,
    roles: Vec<Role>,
    sessions: Vec<Open>,
}

impl Shapes {
    /// The shapes of day `day`, or `None` when neither is asked for (nothing changes then).
    pub(crate) fn new(cfg: &SynthConfig, day: usize) -> Option<Self> {
        if cfg.reused_agent_permille == 0
            && cfg.missing_usage_permille == 0
            && cfg.price_class_permille == 0
            && cfg.profile_arn_permille == 0
        {
            return None;
        }
        Some(Self {
            rng: Rng::new(cfg.seed, "shapes", day as u64),
            salt: Rng::new(cfg.seed, "shapes-salt", 0).u64(),
            day: day as u64,
            seq: 0,
            reused_permille: cfg.reused_agent_permille,
            missing_permille: cfg.missing_usage_permille,
            class_permille: cfg.price_class_permille,
            profile_permille: cfg.profile_arn_permille,
            roles: Vec::new(),
            sessions: Vec::new(),
        })
    }

    /// Decides what becomes of the hour's events (tenants, and times in order): about
    /// `reused_permille` of them are logged by reused agents, each tenant's in sessions of 2 to
    /// 5 calls (one left over takes the tenant's next call of the hour as its second, or else
    /// is logged per call), and about `missing_permille` of the rest report no usage.
    pub(crate) fn plan_hour(&mut self, tenants: &[usize], times: &[i64]) {
        self.roles.clear();
        self.roles.resize(tenants.len(), Role::Plain);
        self.sessions.clear();
        // Per tenant: its events, and those logged by reused agents.
        let mut events: BTreeMap<usize, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (i, &tenant) in tenants.iter().enumerate() {
            let e = events.entry(tenant).or_default();
            e.0.push(i);
            if self.reused_permille > 0 && self.rng.chance(self.reused_permille) {
                e.1.push(i);
            }
        }
        for (all, reused) in events.values().filter(|e| !e.1.is_empty()) {
            let mut members: Vec<usize> = Vec::with_capacity(MAX_CALLS);
            let mut size = self.size();
            for &i in reused {
                // A session's lines are read in the order of their times: two in the same
                // millisecond could be read in either order, so the second is left out.
                if members.last().is_some_and(|&j| times[j] == times[i]) {
                    continue;
                }
                members.push(i);
                if members.len() == size {
                    self.open(&members);
                    members.clear();
                    size = self.size();
                }
            }
            if let [first] = members[..] {
                let next = all
                    .iter()
                    .find(|&&j| times[j] > times[first] && matches!(self.roles[j], Role::Plain));
                members.extend(next);
            }
            if members.len() >= MIN_CALLS {
                self.open(&members);
            }
        }
        if self.missing_permille > 0 {
            for role in &mut self.roles {
                if matches!(role, Role::Plain) && self.rng.chance(self.missing_permille) {
                    *role = Role::Missing;
                }
            }
        }
    }

    fn size(&mut self) -> usize {
        self.rng.range(MIN_CALLS as u64, MAX_CALLS as u64) as usize
    }

    /// A session made of the events `members`.
    fn open(&mut self, members: &[usize]) {
        self.seq += 1;
        let number = scramble(self.salt ^ ((self.day << 40) | self.seq));
        let index = self.sessions.len();
        self.sessions.push(Open {
            number,
            size: members.len(),
            next: 0,
            user: 0,
            model: 0,
            calls: Vec::with_capacity(members.len()),
            sum: Counts::default(),
        });
        for &m in members {
            self.roles[m] = Role::Call(index);
        }
    }

    /// Gives about `class_permille` of the calls it is applied to (basic-tier ones, after
    /// [`Shapes::apply`]) a price class; reused agents' calls and calls without usage keep
    /// theirs (their lines' meaning is the other shapes').
    pub(crate) fn price_class(&mut self, u: &mut Usage) {
        if self.class_permille == 0
            || u.session.is_some()
            || u.input == 0
            || !self.rng.chance(self.class_permille)
        {
            return;
        }
        match self.rng.below(5) {
            0 => u.service_tier = ServiceTier::Priority,
            1 => u.service_tier = ServiceTier::Flex,
            2 => u.service_tier = ServiceTier::Batch,
            3 => u.input = 200_001 + self.rng.below(50_000) as i64,
            _ => {
                u.cache_write = self.rng.range(1024, 4095) as i64;
                u.cache_write_1h =
                    if self.rng.chance(500) { u.cache_write } else { u.cache_write / 2 };
            }
        }
    }

    /// Logs about `profile_permille` of the calls it is applied to (premium-tier ones, after
    /// [`Shapes::apply`]) under the tenant's application inference profile; reused agents'
    /// calls keep the model id their session started with.
    pub(crate) fn profile(&mut self, u: &mut Usage) {
        if self.profile_permille > 0
            && u.session.is_none()
            && self.rng.chance(self.profile_permille)
        {
            u.profile = true;
        }
    }

    /// Applies its role to the hour's event `i`, drawn as usual into `u`.
    pub(crate) fn apply(&mut self, i: usize, u: &mut Usage) {
        match self.roles.get(i) {
            Some(Role::Missing) => u.set_counts(Counts::default()),
            Some(&Role::Call(s)) => {
                let open = &mut self.sessions[s];
                if open.next == 0 {
                    // One Agent object: the user and model of its first call throughout, and
                    // every call's own usage drawn as any call's.
                    open.user = u.user;
                    open.model = u.model;
                    open.calls.push(u.counts());
                    for _ in 1..open.size {
                        open.calls.push(draw_counts(&mut self.rng, u.model));
                    }
                    // The pipeline bills a session's lines as increments only when they pass
                    // its lifetime-series rule (aggregate::sessions): in one UTC day, read in
                    // order, each step growing input by at least half the first line's input,
                    // output and total by at least one, cache counts never shrinking. These
                    // pass by construction: the calls are events of one hour, at strictly
                    // increasing times (see `plan_hour`); the first call is the one with the
                    // least input (the first call of a conversation is its shortest), so
                    // every later call, the step its line adds, has at least the first line's
                    // input (at least 200 tokens), hence at least half of it; every call
                    // outputs at least 20 tokens, and total counts output; a call's cache
                    // counts are never negative; no call of a session misses its usage
                    // (those are drawn among the other events); and the session id is unique
                    // in the month, so no other line joins the series.
                    let least = (0..open.calls.len())
                        .min_by_key(|&c| (open.calls[c].input, c))
                        .unwrap_or(0);
                    open.calls.swap(0, least);
                }
                let drawn_model = u.model;
                u.user = open.user;
                u.model = open.model;
                let call = open.calls[open.next];
                u.set_counts(call);
                open.sum.add(&call);
                u.session = Some(Session {
                    number: open.number,
                    position: open.next,
                    sum: open.sum,
                    drawn_model,
                });
                open.next += 1;
            }
            _ => {}
        }
    }
}
