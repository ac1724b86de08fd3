//! A day's log lines that name a session, gathered while the day is read, and the lifetime
//! series among them counted as increments (see [`crate::sessions`]).

use agentmeter_schemas::tables::{HourlyMeasures, hour_start_ms};
use agentmeter_schemas::{ServiceTier, Tokens, prompt_band};

use super::{Group, HashMap};

/// A log line that names its session, kept until the day is read to find lifetime series.
/// About a third of a day's lines name one, so the line keeps only what its group cannot be
/// derived from (the hour is its time's, the band its tokens'): 112 bytes, not 160.
pub(super) struct SessionLine {
    /// 128-bit key of the session id: no string is kept per line.
    pub(super) session: u128,
    pub(super) id: u128,
    pub(super) time_ms: i64,
    pub(super) tokens: Tokens,
    /// Codes of the tier, tenant, user and model.
    pub(super) codes: [u32; 4],
    pub(super) service_tier: ServiceTier,
}

impl SessionLine {
    /// The session: its tenant's code and its key.
    pub(super) fn series(&self) -> (u32, u128) {
        (self.codes[1], self.session)
    }

    /// The group the line was counted in when read.
    pub(super) fn group(&self) -> Group {
        let [tier, tenant, user, model] = self.codes;
        let hour = hour_start_ms(self.time_ms);
        (hour, tier, tenant, user, model, self.service_tier, prompt_band(&self.tokens))
    }
}

/// The day's lines that name a session.
#[derive(Default)]
pub(super) struct Sessions {
    pub(super) lines: Vec<SessionLine>,
}

impl Sessions {
    /// Counts each lifetime series' lines after its first as their increments over the line
    /// before (see [`crate::sessions`]).
    pub(super) fn apply(
        self,
        groups: &mut HashMap<Group, HourlyMeasures>,
    ) -> std::result::Result<(), String> {
        let lines = self.lines;
        // Each line's place, grouped by series in the order series are first met (a counting
        // sort of 4-byte indices: the 112-byte lines are never moved), then each series by
        // time. A series' lines mostly come in time order already, one run per data file.
        let mut codes: HashMap<(u32, u128), u32> = HashMap::default();
        let series: Vec<u32> = lines
            .iter()
            .map(|l| {
                let next = codes.len() as u32;
                *codes.entry(l.series()).or_insert(next)
            })
            .collect();
        let mut starts = vec![0usize; codes.len() + 1];
        drop(codes);
        for &s in &series {
            starts[s as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; lines.len()];
        for (i, &s) in series.iter().enumerate() {
            order[next[s as usize]] = i as u32;
            next[s as usize] += 1;
        }
        drop((series, next));
        let mut tokens: Vec<Tokens> = Vec::new();
        for w in starts.windows(2) {
            let chain = &mut order[w[0]..w[1]];
            if chain.len() < 2 {
                continue;
            }
            chain.sort_unstable_by_key(|&i| (lines[i as usize].time_ms, lines[i as usize].id));
            tokens.clear();
            tokens.extend(chain.iter().map(|&i| lines[i as usize].tokens));
            if !crate::sessions::is_lifetime_series(&tokens) {
                continue;
            }
            for pair in chain.windows(2) {
                let (prev, line) = (&lines[pair[0] as usize], &lines[pair[1] as usize]);
                let increment =
                    line.tokens.checked_sub(&prev.tokens).ok_or("token sums overflow")?;
                // The call's own prompt sets its band, not the running total's: the line moves
                // to the group of its increment.
                let mut group = line.group();
                let m = groups.get_mut(&group).ok_or("a session line without its group")?;
                m.tokens = m.tokens.checked_sub(&line.tokens).ok_or("token sums overflow")?;
                m.invocations -= 1;
                group.6 = prompt_band(&increment);
                let m = groups.entry(group).or_default();
                m.tokens = m.tokens.checked_add(&increment).ok_or("token sums overflow")?;
                m.invocations += 1;
                m.cumulative_lines += 1;
            }
        }
        // A group whose every line moved to another band.
        groups.retain(|_, m| *m != HourlyMeasures::default());
        Ok(())
    }
}
