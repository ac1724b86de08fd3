//! Where a day's records go: the channel of each event, Firehose payloads (and their retried
//! deliveries), the duplicates, the CONTROL_MESSAGE, and the bad records, each counted as the
//! decoder will count it.

use std::io;

use agentmeter_schemas::{Reason, SkipKind};

use super::day::{Day, HOUR_MS, Usage};
use super::dirty::{Bad, BadCtx, Channel};
use super::plan::HAIKU;
use super::write::{Val, control_message, data_message, gzip, log_event, skip_message};

/// One CloudWatch log group per tier, as one Lambda function per tier would have.
const LOG_GROUPS: [&str; 2] =
    ["/aws/lambda/clinic-agent-basic", "/aws/lambda/clinic-agent-premium"];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 0x08];

/// How the decoder will count one log event of a Firehose payload (again, if the payload is
/// delivered twice).
#[derive(Debug, Clone, Copy)]
pub(super) enum Rec {
    Usage,
    Skip(SkipKind),
    Bad(Reason),
}

#[derive(Debug)]
pub(super) struct Payload {
    pub(super) stream: usize,
    pub(super) target: usize,
    pub(super) events: Vec<String>,
    pub(super) recs: Vec<Rec>,
}

impl<'p> Day<'p> {
    /// Whether to deliver this record twice; `force` names the kind still to be forced.
    fn roll_duplicate(&mut self, force: usize, permille: u32) -> bool {
        if std::mem::take(&mut self.force[force]) {
            return true;
        }
        permille > 0 && self.rng.chance(permille)
    }

    pub(super) fn route(&mut self, u: &Usage) -> io::Result<()> {
        let p = self.plan.cfg.duplicate_permille;
        // Drawn even when NDJSON only, so that the stream of draws keeps its shape.
        let roll = self.rng.below(100);
        let channel = match (self.plan.cfg.ndjson_only, self.fle.is_some(), roll) {
            (true, ..) => 0,
            (_, true, 0..40) | (_, false, 0..42) => 0,
            (_, true, 40..65) | (_, false, 42..68) => 1,
            (_, true, 65..95) | (_, false, _) => 2,
            (_, true, _) => 3,
        };
        match channel {
            0 => {
                let dup = self.roll_duplicate(0, p);
                self.ndjson_usage(u, dup)
            }
            1 => {
                let dup = self.rng.chance(p);
                self.cw_usage(u, dup)
            }
            2 => {
                let dup = self.roll_duplicate(1, p * 2 / 3);
                self.fh_usage(u, dup)
            }
            _ => {
                let dup = self.rng.chance(p);
                self.fle_usage(u, dup)
            }
        }
    }

    fn ndjson_usage(&mut self, u: &Usage, dup: bool) -> io::Result<()> {
        let actor = self.rng.chance(150);
        let mut o = self.usage_obj(u, actor, false);
        o.push("timestamp", Val::S(self.iso(u.time_ms)));
        if self.rng.chance(50) {
            // No event_id: the ingest derives one from the content, which the unique
            // request id keeps distinct.
            o.push("request_id", Val::S(self.unique_uuid()));
        } else {
            o.push("event_id", Val::S(self.unique_uuid()));
        }
        // A session named per request (a reused agent's line names its own already).
        let named = self.rng.chance(300);
        if named {
            let session = format!("sess-{}", self.rng.hex(16));
            if u.session.is_none() {
                o.push("session_id", Val::S(session));
            }
        }
        if self.rng.chance(5) {
            let blank = *self.rng.pick(&["", "   ", "\t"]);
            self.nd.blank(blank)?;
        }
        if dup {
            // The same event delivered again further down, with other spacing and key order.
            let mut order: Vec<usize> = (0..o.0.len()).collect();
            match u.session {
                None => self.rng.shuffle(&mut order),
                Some(s) => {
                    // A reused agent's line has other keys than the line the event drew (its
                    // session id, the cache counts of its session's model): shuffle as many
                    // as that line had, so that the draws after it are the month's.
                    let cache = |m: u8| if m == HAIKU { 2 } else { 0 };
                    let drawn =
                        o.0.len() - 1 + usize::from(named) + cache(s.drawn_model) - cache(u.model);
                    order.extend(o.0.len()..drawn);
                    self.rng.shuffle(&mut order[..drawn]);
                    order.retain(|&k| k < o.0.len());
                }
            }
            let due = self.nd.lines + 1 + self.rng.below(200);
            self.nd.later.push((due, o.spaced(&order)));
            self.tally.again();
        }
        let crlf = self.rng.chance(30);
        self.nd.line(o.compact().as_bytes(), crlf)?;
        if self.rng.chance(10) {
            self.ndjson_other_event(u)?;
        }
        Ok(())
    }

    /// A JSON line of another event type (skipped as `other_event`).
    fn ndjson_other_event(&mut self, u: &Usage) -> io::Result<()> {
        let t = &self.plan.tenants[u.tenant];
        let line = format!(
            "{{\"event\":\"agent_started\",\"tier\":\"{}\",\"clinic_id\":\"{}\",\"user_id\":\"{}\",\"timestamp\":\"{}\"}}",
            t.tier.as_str(),
            t.id,
            t.users[u.user],
            self.iso(u.time_ms)
        );
        self.nd.line(line.as_bytes(), false)?;
        self.tally.skip(SkipKind::OtherEvent);
        Ok(())
    }

    fn cw_usage(&mut self, u: &Usage, dup: bool) -> io::Result<()> {
        if self.rng.chance(60) {
            let (ev, kind) = self.skip_event(u);
            self.cwx.line(&ev)?;
            self.tally.skip(kind);
        }
        let id = self.cw_id(u.time_ms);
        let msg = self.cw_message(u);
        let ev = log_event(&id, u.time_ms, &msg);
        self.cwx.line(&ev)?;
        if dup {
            // Also forwarded by the subscription.
            self.tally.again();
            self.fh_push(u, ev, Rec::Usage)?;
        }
        Ok(())
    }

    fn fh_usage(&mut self, u: &Usage, dup: bool) -> io::Result<()> {
        if self.rng.chance(50) {
            let (ev, kind) = self.skip_event(u);
            self.fh_push(u, ev, Rec::Skip(kind))?;
        }
        let id = self.cw_id(u.time_ms);
        let msg = self.cw_message(u);
        let ev = log_event(&id, u.time_ms, &msg);
        if dup {
            // The same log event is also in the export of the log group.
            self.cwx.line(&ev)?;
            self.tally.again();
        }
        self.fh_push(u, ev, Rec::Usage)
    }

    fn fle_usage(&mut self, u: &Usage, dup: bool) -> io::Result<()> {
        let slot = self.plan.tenants[u.tenant].tier.slot();
        let stream = self.streams[slot][self.rng.index(3)].clone();
        if self.rng.chance(30) {
            let req = self.rng.uuid();
            let t = &self.plan.tenants[u.tenant];
            let iso = self.iso(u.time_ms);
            let (msg, kind) = skip_message(&mut self.rng, &iso, &req, t.tier.as_str(), &t.id);
            let id = self.cw_id(u.time_ms);
            let ingest = u.time_ms + self.rng.range(20, 3000) as i64;
            if let Some(f) = &mut self.fle {
                f.event(&stream, u.time_ms, &msg, ingest, &id)?;
            }
            self.tally.skip(kind);
        }
        let id = self.cw_id(u.time_ms);
        let msg = self.cw_message(u);
        let ingest = u.time_ms + self.rng.range(20, 3000) as i64;
        if let Some(f) = &mut self.fle {
            f.event(&stream, u.time_ms, &msg, ingest, &id)?;
        }
        if dup {
            self.cwx.line(&log_event(&id, u.time_ms, &msg))?;
            self.tally.again();
        }
        Ok(())
    }

    /// Adds a log event to the open payload of `u`'s tier, sending it when full.
    fn fh_push(&mut self, u: &Usage, ev: String, rec: Rec) -> io::Result<()> {
        let slot = self.plan.tenants[u.tenant].tier.slot();
        self.fh_push_slot(slot, ev, rec)
    }

    fn fh_push_slot(&mut self, slot: usize, ev: String, rec: Rec) -> io::Result<()> {
        if self.open[slot].is_none() {
            let stream = self.rng.index(3);
            let target = self.rng.range(1, 50) as usize;
            self.open[slot] =
                Some(Payload { stream, target, events: Vec::new(), recs: Vec::new() });
        }
        let full = match &mut self.open[slot] {
            Some(p) => {
                p.events.push(ev);
                p.recs.push(rec);
                p.events.len() >= p.target
            }
            None => false,
        };
        if full {
            self.flush_payload(slot)?;
        }
        Ok(())
    }

    pub(super) fn flush_payload(&mut self, slot: usize) -> io::Result<()> {
        let Some(p) = self.open[slot].take() else { return Ok(()) };
        let body = data_message(LOG_GROUPS[slot], &self.streams[slot][p.stream], &p.events);
        let gz = gzip(body.as_bytes())?;
        self.fh.member(&gz)?;
        for r in &p.recs {
            if let Rec::Skip(k) = r {
                self.tally.skip(*k);
            }
            if let Rec::Bad(reason) = r {
                self.tally.reject(*reason);
            }
        }
        if let Some((again, recs)) = self.retry.take() {
            self.deliver_again(&again, &recs)?;
        }
        let clean = p.recs.iter().all(|r| !matches!(r, Rec::Bad(_)));
        if clean && self.roll_duplicate(2, self.plan.cfg.duplicate_permille / 3) {
            self.retry = Some((gz, p.recs));
        }
        self.after_member()
    }

    /// A retried delivery: the same member again; its usage events are now duplicates.
    pub(super) fn deliver_again(&mut self, gz: &[u8], recs: &[Rec]) -> io::Result<()> {
        self.fh.member(gz)?;
        for r in recs {
            match r {
                Rec::Usage => self.tally.again(),
                Rec::Skip(k) => self.tally.skip(*k),
                Rec::Bad(reason) => self.tally.reject(*reason),
            }
        }
        Ok(())
    }

    /// After a member: the day's CONTROL_MESSAGE and bad members, when their hour has come.
    fn after_member(&mut self) -> io::Result<()> {
        if !self.control_done && self.hour >= self.control_hour {
            self.control()?;
        }
        while let Some(i) = self
            .pending
            .iter()
            .position(|(h, b)| *h <= self.hour && b.channel() == Channel::FirehoseMember)
        {
            let (_, bad) = self.pending.remove(i);
            self.bad_member(&bad)?;
        }
        Ok(())
    }

    pub(super) fn control(&mut self) -> io::Result<()> {
        let ts = self.start_ms + i64::from(self.hour) * HOUR_MS;
        self.fh.member(&gzip(control_message(ts).as_bytes())?)?;
        self.tally.skip(SkipKind::ControlMessage);
        self.control_done = true;
        Ok(())
    }

    /// Writes the bad records whose hour has come, where their channel allows it now.
    pub(super) fn bad_due(&mut self) -> io::Result<()> {
        while let Some(i) = self.pending.iter().position(|(h, b)| {
            *h <= self.hour
                && match b.channel() {
                    Channel::Ndjson => self.nd.lines > 0,
                    Channel::CwExport | Channel::FirehoseEvent => true,
                    Channel::FirehoseMember => false,
                }
        }) {
            let (_, bad) = self.pending.remove(i);
            self.bad_record(&bad)?;
        }
        Ok(())
    }

    /// A bad line or log event (not a member).
    pub(super) fn bad_record(&mut self, bad: &Bad) -> io::Result<()> {
        let ctx = self.bad_ctx();
        match bad.channel() {
            Channel::Ndjson => {
                if self.nd.lines == 0 {
                    // The first line of a file decides its format: keep it a JSON object.
                    let u = self.template();
                    self.ndjson_other_event(&u)?;
                }
                self.nd.line(&bad.ndjson_line(&ctx), false)?;
                self.tally.reject(bad.reason());
            }
            Channel::CwExport => {
                self.cwx.line(&bad.cw_line(&ctx))?;
                self.tally.reject(bad.reason());
            }
            Channel::FirehoseEvent => {
                // Counted when its payload is written.
                self.fh_push_slot(0, bad.fh_event(&ctx), Rec::Bad(bad.reason()))?;
            }
            Channel::FirehoseMember => self.bad_member(bad)?,
        }
        Ok(())
    }

    /// A bad gzip member, never the first of its file (which decides the file's format).
    fn bad_member(&mut self, bad: &Bad) -> io::Result<()> {
        if self.fh.members == 0 {
            self.control()?;
        }
        let ctx = self.bad_ctx();
        let stream = self.streams[0][0].clone();
        let event =
            format!("{{\"id\":\"{}\",\"timestamp\":{},\"message\":\"x\"}}", ctx.cw_id, ctx.ts_ms);
        let member = if *bad == Bad::CorruptMember {
            self.corrupt_member(&stream, &ctx.message)?
        } else {
            gzip(bad.member_body(LOG_GROUPS[0], &stream, &event).as_bytes())?
        };
        self.fh.member(&member)?;
        self.tally.reject(bad.reason());
        Ok(())
    }

    /// A DATA_MESSAGE member whose first deflate block has the reserved type, so inflating
    /// fails at once. Its bytes after the header must hold no gzip magic: the splitter resumes
    /// at the next magic, which must be the next member's.
    fn corrupt_member(
        &mut self,
        stream: &str,
        message: &serde_json::Map<String, serde_json::Value>,
    ) -> io::Result<Vec<u8>> {
        let text = serde_json::Value::Object(message.clone()).to_string();
        for attempt in 0u32.. {
            let id = self.cw_id(self.start_ms);
            let events = [log_event(&id, self.start_ms + i64::from(attempt), &text)];
            let mut m = gzip(data_message(LOG_GROUPS[0], stream, &events).as_bytes())?;
            m[10] |= 0b110;
            if memchr::memmem::find(&m[1..], GZIP_MAGIC).is_none() {
                return Ok(m);
            }
        }
        Err(io::Error::other("no corrupt member without a gzip magic inside"))
    }

    /// A valid event of the day to build bad records from (never written as such).
    fn template(&mut self) -> Usage {
        match self.last {
            Some(u) => u,
            None => {
                let tenant = self.plan.quiet[0];
                let t = self.start_ms + i64::from(self.hour) * HOUR_MS + 1234;
                self.usage(tenant, t)
            }
        }
    }

    fn bad_ctx(&mut self) -> BadCtx<'p> {
        let u = self.template();
        let plan = self.plan;
        let t = &plan.tenants[u.tenant];
        let mut line = self.usage_obj(&u, false, false);
        line.push("timestamp", Val::S(self.iso(u.time_ms)));
        line.push("event_id", Val::S(self.unique_uuid()));
        let other = &plan.tenants[(u.tenant + 1) % plan.tenants.len()];
        BadCtx {
            line: line.to_map(),
            message: self.usage_obj(&u, false, false).to_map(),
            tier: t.tier.as_str(),
            tenant: &t.id,
            other_tenant: &other.id,
            cw_id: self.cw_id(u.time_ms),
            ts_ms: u.time_ms,
            iso: self.iso(u.time_ms),
            request_id: self.rng.uuid(),
        }
    }
}
