//! What the proxy injects: the faults, the rules and plans that aim them, the seeded draw per
//! request, and the record of what was applied.

use std::collections::BTreeMap;
use std::time::Duration;

use super::http::Request;

/// Injections kept in the log.
const MAX_LOGGED: usize = 100_000;

/// What the proxy may do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Throttled, upstream untouched: `503 SlowDown` for S3 (REST-XML) and other HTTP;
    /// `400` with `ProvisionedThroughputExceededException` (Kinesis reads and puts) or
    /// `ThrottlingException` (other JSON protocols: CloudWatch Logs, Cost Explorer...).
    Throttle,
    /// `500 InternalError` (`InternalFailure` for JSON protocols), upstream untouched.
    ServerError,
    /// Forwarded; the answer held back by [`Plan::delay`].
    Slow,
    /// The connection closed before the request reached the upstream.
    DropBefore,
    /// Forwarded (the upstream applied it), then the connection closed with no answer: a
    /// retry is a second request for something already done.
    DropAfter,
    /// Forwarded, then the answer cut short and the connection closed: the head promises a
    /// `Content-Length` the body does not reach (a bodiless answer is cut inside its head).
    Truncate,
}

impl Fault {
    /// Every fault, in order.
    pub const ALL: [Fault; 6] = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Slow,
        Fault::DropBefore,
        Fault::DropAfter,
        Fault::Truncate,
    ];
}

/// The simplest plan: in `permille` of requests one fault, chosen evenly among `faults`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub seed: u64,
    pub permille: u64,
    pub faults: Vec<Fault>,
    /// Requests let through untouched before any fault (the test's own setup calls).
    pub grace: u64,
}

/// Which requests a rule applies to, and the chance of each fault for them.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Requests whose [`operation`](super::operation) starts with one of these (`"PutObject"` takes every
    /// conditional form too); empty: every request.
    pub ops: Vec<&'static str>,
    /// ...and whose path contains this (`"/_state/checkpoints/"`); empty: any path.
    pub path: &'static str,
    /// Per fault, its chance per request in permille; at most one fault a request, so the
    /// sum is at most 1000.
    pub permille: Vec<(Fault, u64)>,
}

impl Rule {
    /// Every fault in `faults` with the same chance, on the requests `ops` and `path` name.
    pub fn each(ops: &[&'static str], path: &'static str, faults: &[Fault], permille: u64) -> Self {
        Rule { ops: ops.to_vec(), path, permille: faults.iter().map(|f| (*f, permille)).collect() }
    }

    fn matches(&self, req: &Request) -> bool {
        (self.ops.is_empty() || self.ops.iter().any(|o| req.op.starts_with(o)))
            && req.path.contains(self.path)
    }
}

/// What the proxy does: by the first rule a request matches, drawn from a generator seeded
/// with `seed`, or by `at` for the n-th request.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    /// Requests let through untouched before any fault (setup calls through the proxy).
    pub grace: u64,
    /// Tried in order; the first that matches a request decides it. A request no rule
    /// matches goes through untouched.
    pub rules: Vec<Rule>,
    /// Explicit faults by request number (1-based, in arrival order), before any rule.
    pub at: BTreeMap<u64, Fault>,
    /// How long a [`Fault::Slow`] answer is held back.
    pub delay: Duration,
}

impl Plan {
    /// A plan with no faults yet: add rules or explicit faults.
    pub fn seeded(seed: u64) -> Self {
        Plan { seed, grace: 0, rules: Vec::new(), at: BTreeMap::new(), delay: DEFAULT_DELAY }
    }

    /// The plan with `rule` tried after the rules it has.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
}

/// The delay of a slow answer unless the plan says otherwise.
pub(super) const DEFAULT_DELAY: Duration = Duration::from_millis(300);

impl From<Schedule> for Plan {
    fn from(s: Schedule) -> Self {
        let n = s.faults.len().max(1) as u64;
        let mut permille: Vec<(Fault, u64)> =
            s.faults.iter().map(|f| (*f, s.permille / n)).collect();
        // The remainder to the first, so the total is the schedule's.
        if let Some(first) = permille.first_mut() {
            first.1 += s.permille % n;
        }
        Plan {
            seed: s.seed,
            grace: s.grace,
            rules: vec![Rule { ops: Vec::new(), path: "", permille }],
            at: BTreeMap::new(),
            delay: DEFAULT_DELAY,
        }
    }
}

/// One fault applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// The request's number, 1-based, in arrival order.
    pub request: u64,
    pub fault: Fault,
    /// The request's [`operation`](super::operation).
    pub op: String,
    /// The request's path, without its query.
    pub path: String,
}

#[derive(Default)]
pub(super) struct Counts {
    /// Requests seen.
    pub(super) seen: u64,
    /// Requests seen by operation.
    pub(super) ops: BTreeMap<String, u64>,
    /// Faults applied, first [`MAX_LOGGED`] of them.
    pub(super) log: Vec<Injection>,
    /// Faults applied by kind (all of them).
    pub(super) injected: BTreeMap<Fault, u64>,
    /// Requests the upstream did not answer (not a planned fault; the client saw a drop).
    pub(super) upstream_failures: u64,
}

pub(super) struct State {
    pub(super) plan: Plan,
    pub(super) active: bool,
    pub(super) rng: u64,
    pub(super) counts: Counts,
}

impl State {
    /// The request's number and the fault drawn for it.
    pub(super) fn draw(&mut self, req: &Request) -> (u64, Option<Fault>) {
        self.counts.seen += 1;
        let n = self.counts.seen;
        *self.counts.ops.entry(req.op.clone()).or_default() += 1;
        // One draw per request whatever happens, so a plan's faults do not shift when a rule
        // changes.
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let r = (self.rng >> 33) % 1000;
        if !self.active || n <= self.plan.grace {
            return (n, None);
        }
        if let Some(f) = self.plan.at.get(&n) {
            return (n, Some(*f));
        }
        let Some(rule) = self.plan.rules.iter().find(|rule| rule.matches(req)) else {
            return (n, None);
        };
        let mut upto = 0;
        for (f, p) in &rule.permille {
            upto += p;
            if r < upto {
                return (n, Some(*f));
            }
        }
        (n, None)
    }

    pub(super) fn applied(&mut self, request: u64, fault: Fault, req: &Request) {
        *self.counts.injected.entry(fault).or_default() += 1;
        if self.counts.log.len() < MAX_LOGGED {
            self.counts.log.push(Injection {
                request,
                fault,
                op: req.op.clone(),
                path: req.path.clone(),
            });
        }
    }
}
