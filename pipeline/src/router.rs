//! The record router: every decoded outcome to its one place. Events and spans to their
//! exactly-once writers, refusals to the quarantine, skips to the counts; every record is
//! counted once into [`Accounting`]. One router serves files, the AWS sources, the OTLP
//! receiver's log and the Lambda handler alike.

use std::collections::BTreeSet;

use agentmeter_aggregate::checkpoint::OwedRollups;
use agentmeter_aggregate::{
    AheadReport, EventWriter, Lake, LakeRecord, QuarantineReport, QuarantineWriter, RollupReport,
    RollupsAhead, WriteStats, WriterOptions,
};
use agentmeter_ingest::Outcome;
use agentmeter_ingest::pipeline::Sink;
use agentmeter_ingest::source::SourceSpec;
use agentmeter_schemas::{Accounting, AgentSpan, SourceUri};
use chrono::NaiveDate;

use crate::error::{Result, lake};

/// Routes outcomes into one lake.
pub struct Router {
    lake: Lake,
    events: EventWriter,
    spans: EventWriter<AgentSpan>,
    quarantine: QuarantineWriter,
    appending: bool,
    acc: Accounting,
    /// What earlier quarantine commits wrote.
    quarantine_done: QuarantineReport,
    /// The rollups-owed ledgers of the checkpointed sources routed here.
    owed: Vec<OwedRollups>,
    /// Days committed (or owed by an earlier run) and taken from the writers, not rolled up.
    taken: BTreeSet<NaiveDate>,
    /// Rolls days up while the run goes on ([`Router::rolling_up_ahead`]).
    ahead: Option<RollupsAhead>,
    /// The groups the input comes in, for the rollups ahead ([`Router::expect_groups`]).
    groups: Option<Groups>,
}

/// The input's groups as the router meets them: which sources start one, and the latest
/// record time so far, told to the rollups ahead with the first record of each group.
struct Groups {
    /// For each source in the order read, whether it starts a group (the first excepted).
    starts: Vec<bool>,
    /// Sources started so far.
    sources: usize,
    /// A group started and its first record is still to come.
    started: bool,
    /// The latest time of the records routed so far, in milliseconds.
    latest_ms: Option<i64>,
}

impl Groups {
    fn source_started(&mut self) {
        self.started |= self.starts.get(self.sources).copied().unwrap_or(false);
        self.sources += 1;
    }

    /// Notes a record of time `ms` for the rollups ahead.
    fn record(&mut self, ms: i64, ahead: &RollupsAhead) {
        if self.started
            && let Some(first) = agentmeter_aggregate::partition_of_ms(ms)
        {
            self.started = false;
            let latest = self.latest_ms.and_then(agentmeter_aggregate::partition_of_ms);
            // The last group: no source after those started begins another.
            let last = !self.starts.get(self.sources..).is_some_and(|rest| rest.contains(&true));
            ahead.next_group(latest, first, last);
        }
        self.latest_ms = Some(self.latest_ms.map_or(ms, |l| l.max(ms)));
    }
}

/// The group of a source: the files of one directory (or key prefix) and format. A run's
/// groups are read one after another, and the groups of a backfill often cover the same days
/// (a month's NDJSON files, then its CloudWatch exports).
fn group_of(s: &SourceSpec) -> (&str, agentmeter_ingest::source::Format) {
    let uri = s.uri.as_str();
    (uri.rsplit_once('/').map_or(uri, |(dir, _)| dir), s.format)
}

/// What a finished router wrote.
#[derive(Debug)]
pub struct Finished {
    /// Where every record went.
    pub acc: Accounting,
    /// Data files written (events and spans).
    pub files: u64,
    /// Rollup partitions rebuilt, and those whose rebuild failed.
    pub rollups: RollupReport,
    /// The quarantine files written and removed.
    pub quarantine: QuarantineReport,
    /// What the rollups ahead did ([`Router::rolling_up_ahead`]; nothing otherwise).
    pub ahead: AheadReport,
}

impl Router {
    /// A router into `lake`; each source's quarantine file is replaced by what this run
    /// refused of it.
    pub fn new(lake: &Lake, opts: WriterOptions) -> Self {
        Self::build(lake, opts, false)
    }

    /// A router for a long-running source (the OTLP receiver): refusals are appended to the
    /// source's quarantine file.
    pub fn appending(lake: &Lake, opts: WriterOptions) -> Self {
        Self::build(lake, opts, true)
    }

    /// A router for one run over files that [`Router::finish`]es: each day is rolled up on a
    /// background thread as soon as the input has moved past it, while the run writes the
    /// next ones, rather than every day at the end. Not for a router that is committed on a
    /// schedule and rolled up through [`Router::take_touched`] (the AWS sources, the
    /// receiver): those days would be rolled up twice.
    pub fn rolling_up_ahead(lake: &Lake, opts: WriterOptions) -> Self {
        let ahead = RollupsAhead::new(lake);
        Self {
            events: EventWriter::with_rollups_ahead(lake, opts, &ahead),
            spans: EventWriter::with_rollups_ahead(lake, opts, &ahead),
            ahead: Some(ahead),
            ..Self::build(lake, opts, false)
        }
    }

    /// Tells the rollups ahead of a router made by [`Router::rolling_up_ahead`] how the input
    /// comes: `sources`, in the order they are read, in groups of consecutive files of one
    /// directory and format. With more than one group, a group's days are rolled up ahead only
    /// once the next group has started after them, and not at all once a group goes back to
    /// earlier days (the groups then cover the same days, and each would write them again).
    /// Nothing to do with one group, or without rollups ahead.
    pub fn expect_groups(&mut self, sources: &[SourceSpec]) {
        let Some(ahead) = &self.ahead else { return };
        let starts: Vec<bool> = std::iter::once(false)
            .chain(sources.windows(2).map(|w| group_of(&w[0]) != group_of(&w[1])))
            .collect();
        if !starts.contains(&true) {
            return;
        }
        ahead.expect_groups();
        self.groups = Some(Groups { starts, sources: 0, started: false, latest_ms: None });
    }

    fn build(lake: &Lake, opts: WriterOptions, appending: bool) -> Self {
        Self {
            lake: lake.clone(),
            events: EventWriter::new(lake, opts),
            spans: EventWriter::new(lake, opts),
            quarantine: Self::quarantine_writer(lake, appending),
            appending,
            acc: Accounting::default(),
            quarantine_done: QuarantineReport::default(),
            owed: Vec::new(),
            taken: BTreeSet::new(),
            ahead: None,
            groups: None,
        }
    }

    /// Makes the rollups of checkpointed source `source` (`kinesis://stream`, `s3://...`)
    /// survive a stop: the days an earlier run of it committed and never rolled up are rolled
    /// up with this run's, and every later [`Router::commit`] records its days in the source's
    /// ledger before returning, so before the checkpoint that follows it.
    ///
    /// # Errors
    ///
    /// The ledger cannot be read.
    pub fn owe_rollups_to(&mut self, source: &str) -> Result<()> {
        let mut ledger = OwedRollups::new(&self.lake, source);
        let owed = ledger.load().map_err(lake(format!("{source}: reading the rollups owed")))?;
        if !owed.is_empty() {
            tracing::info!(%source, days = owed.len(), "Rolling up the days an earlier run left.");
        }
        self.taken.extend(owed);
        self.owed.push(ledger);
        Ok(())
    }

    fn quarantine_writer(lake: &Lake, appending: bool) -> QuarantineWriter {
        if appending { QuarantineWriter::appending(lake) } else { QuarantineWriter::new(lake) }
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Counts so far (records read, skips, refusals; writes are counted at the end).
    pub fn accounting(&self) -> &Accounting {
        &self.acc
    }

    /// Routes one outcome.
    ///
    /// # Errors
    ///
    /// An earlier batch could not be committed, or the quarantine spool cannot be written.
    pub fn route(&mut self, o: Outcome) -> Result<()> {
        self.acc.records_read += 1;
        if let (Some(groups), Some(ahead)) = (&mut self.groups, &self.ahead) {
            match &o {
                Outcome::Event(e) => groups.record(e.time_ms(), ahead),
                Outcome::Span(s) => groups.record(s.time_ms(), ahead),
                Outcome::Skip(_) | Outcome::Reject(_) => {}
            }
        }
        match o {
            Outcome::Event(e) => self.events.push(e).map_err(lake("writing usage_events"))?,
            Outcome::Skip(k) => *self.acc.skipped.entry(k).or_default() += 1,
            Outcome::Span(s) => self.spans.push(*s).map_err(lake("writing agent_spans"))?,
            Outcome::Reject(q) => {
                // Not the detail: it may quote the refused value, free text the record carried
                // (a note in `model_id`, in a token count). The entry keeps it beside the bytes.
                tracing::debug!(source = %q.source.shown(), position = %q.position, reason = %q.reason, "Record quarantined.");
                *self.acc.quarantined.entry(q.reason).or_default() += 1;
                self.quarantine.write(&q).map_err(lake("writing the quarantine"))?;
            }
        }
        Ok(())
    }

    /// Makes everything received so far durable: events and spans committed, then the
    /// quarantine put in place (a source's checkpoint may follow).
    ///
    /// # Errors
    ///
    /// The lake cannot be written: nothing since the last commit is known to be durable.
    pub fn commit(&mut self) -> Result<()> {
        self.events.commit().map_err(lake("committing usage_events"))?;
        self.spans.commit().map_err(lake("committing agent_spans"))?;
        let q = std::mem::replace(
            &mut self.quarantine,
            Self::quarantine_writer(&self.lake, self.appending),
        );
        let r = q.finish().map_err(lake("writing the quarantine"))?;
        self.quarantine_done.add(r);
        if !self.owed.is_empty() {
            let days = self.touched_by_writers()?;
            self.taken.extend(days);
            for ledger in &mut self.owed {
                ledger.owe(&self.taken).map_err(lake("recording the rollups owed"))?;
            }
        }
        Ok(())
    }

    fn touched_by_writers(&mut self) -> Result<BTreeSet<NaiveDate>> {
        let mut days = self.events.take_touched().map_err(lake("committing usage_events"))?;
        days.extend(self.spans.take_touched().map_err(lake("committing agent_spans"))?);
        Ok(days)
    }

    /// Tells the ledgers that the rollups of `days` are current, but for those that failed.
    pub fn rolled_up(&mut self, days: &BTreeSet<NaiveDate>, report: &RollupReport) {
        settle(&mut self.owed, days, report);
    }

    /// The days written (events or spans) since the last call, once they are committed: a
    /// long-running reader rolls them up on its own schedule.
    ///
    /// # Errors
    ///
    /// An earlier batch could not be committed.
    pub fn take_touched(&mut self) -> Result<BTreeSet<NaiveDate>> {
        let mut days = std::mem::take(&mut self.taken);
        days.extend(self.touched_by_writers()?);
        Ok(days)
    }

    /// Writes what is left, rebuilds the rollups of the days written (each on its own: a
    /// failure is reported in [`Finished::rollups`]), then puts the quarantine in place
    /// (after the events: a replayed record is never dropped from the quarantine before it is
    /// durable in the lake).
    ///
    /// # Errors
    ///
    /// The lake cannot be written.
    pub fn finish(self) -> Result<Finished> {
        self.finish_with(true)
    }

    /// As [`Router::finish`] without the rollups (left stale for the readers or a schedule).
    ///
    /// # Errors
    ///
    /// The lake cannot be written.
    pub fn finish_without_rollups(self) -> Result<Finished> {
        self.finish_with(false)
    }

    fn finish_with(self, rollups: bool) -> Result<Finished> {
        let Router {
            lake,
            mut events,
            mut spans,
            quarantine,
            mut acc,
            quarantine_done,
            mut owed,
            taken,
            ahead,
            ..
        } = self;
        if let Some(ahead) = &ahead {
            // Both last batches on their way before waiting for either: the days they do not
            // hold are rolled up meanwhile.
            events.hand_over().map_err(lake_err("usage_events"))?;
            spans.hand_over().map_err(lake_err("agent_spans"))?;
            ahead.input_ended();
        }
        let (stats, mut days) =
            events.finish_without_rollups().map_err(lake_err("usage_events"))?;
        let (span_stats, span_days) =
            spans.finish_without_rollups().map_err(lake_err("agent_spans"))?;
        days.extend(span_days);
        days.extend(taken);
        let done = ahead.map(RollupsAhead::finish).unwrap_or_default();
        tracing::debug!(
            rolled = done.rolled,
            redone = done.redone,
            revisited = done.revisited,
            current = done.current.len(),
            "Rollups built ahead."
        );
        let report = if rollups {
            let rest: BTreeSet<NaiveDate> = days.difference(&done.current).copied().collect();
            let mut report = lake.rebuild_rollups(&rest);
            report.rebuilt.extend(done.current.intersection(&days));
            report.rebuilt.sort_unstable();
            report
        } else {
            RollupReport::default()
        };
        if rollups {
            settle(&mut owed, &days, &report);
        }
        let mut q = quarantine.finish().map_err(lake_err("the quarantine"))?;
        q.add(quarantine_done);
        count(&mut acc, &stats, &span_stats);
        let files = stats.files + span_stats.files;
        Ok(Finished { acc, files, rollups: report, quarantine: q, ahead: done })
    }
}

/// Clears `days` but the failed ones from `ledgers`. A ledger left as it was only makes the
/// next run check those days again, so a failure is logged, not returned.
fn settle(ledgers: &mut [OwedRollups], days: &BTreeSet<NaiveDate>, report: &RollupReport) {
    let mut current = days.clone();
    for (dt, _) in &report.failed {
        current.remove(dt);
    }
    for ledger in ledgers {
        if let Err(e) = ledger.settle(&current) {
            tracing::warn!(error = %e, "Could not clear the rollups owed; the next run checks those days again.");
        }
    }
}

fn lake_err(what: &str) -> impl FnOnce(agentmeter_aggregate::Error) -> crate::Error {
    lake(format!("writing {what}"))
}

/// The writers' counts into the accounting.
fn count(acc: &mut Accounting, events: &WriteStats, spans: &WriteStats) {
    acc.events_written = events.written;
    acc.duplicates = events.duplicates;
    acc.conflicting_duplicates = events.conflicting + spans.conflicting;
    acc.spans_written = spans.written;
    acc.span_duplicates = spans.duplicates;
    acc.usage_unknown = events.usage_unknown;
    acc.span_usage_unknown = spans.usage_unknown;
}

impl Sink for Router {
    type Error = crate::Error;

    fn source_started(&mut self, s: &SourceSpec) -> Result<()> {
        tracing::debug!(source = %s.uri.shown(), bytes = s.len, "Reading source.");
        if let Some(g) = &mut self.groups {
            g.source_started();
        }
        self.quarantine.touch(&s.uri);
        Ok(())
    }

    fn lineage(&mut self, s: &SourceUri) -> Result<()> {
        self.quarantine.touch(s);
        Ok(())
    }

    fn outcome(&mut self, o: Outcome) -> Result<()> {
        self.route(o)
    }

    fn source_finished(&mut self, s: &SourceSpec) -> Result<()> {
        tracing::debug!(source = %s.uri.shown(), "Source read.");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
