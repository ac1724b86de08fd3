//! Lifetime series: an Agent object reused across requests that logs its accumulated usage
//! writes, per session, lines that each repeat the calls before. Billing every line bills the
//! early calls again and again; billing each line's increment over the line before bills each
//! call once.
//!
//! A session's lines of one UTC day (ordered by time, then id) form a lifetime series when
//! there are at least two and every step grows the way a running total of model calls grows:
//! input by at least half the first line's input (each call re-sends at least the system
//! prompt and the user's message, which the first line is made of), output and total by at
//! least one token, and the cache counts never shrink. Lines logged per call with a growing
//! conversation grow their input only by the turns added since, and their output up and down,
//! so they do not pass. A series is followed within its day: a session's first line of a day
//! counts whole (reconcile shows the difference against the chat spans when that is wrong).

use agentmeter_schemas::Tokens;

/// True when `lines` (one session's lines of a day, in order) are a lifetime series.
pub(crate) fn is_lifetime_series(lines: &[Tokens]) -> bool {
    let Some(first) = lines.first() else { return false };
    if lines.len() < 2 || first.input <= 0 || first.output <= 0 {
        return false;
    }
    let min_input_step = (first.input + 1) / 2;
    lines.windows(2).all(|w| {
        let (a, b) = (&w[0], &w[1]);
        b.input.saturating_sub(a.input) >= min_input_step
            && b.output > a.output
            && b.total > a.total
            && b.cache_read >= a.cache_read
            && b.cache_write >= a.cache_write
            && b.cache_write_1h >= a.cache_write_1h
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(input: i64, output: i64) -> Tokens {
        Tokens { input, output, total: input + output, ..Tokens::default() }
    }

    #[test]
    fn a_reused_agent_logging_accumulated_usage() {
        // The case: 655 tokens per call, the second line says 1,310.
        assert!(is_lifetime_series(&[t(655, 40), t(1310, 80)]));
        // Calls of different sizes, the conversation growing: still running totals.
        assert!(is_lifetime_series(&[t(655, 40), t(1500, 95), t(2700, 120)]));
    }

    #[test]
    fn per_call_lines_are_not() {
        // Input grows with the conversation, output goes up and down.
        assert!(!is_lifetime_series(&[t(655, 40), t(760, 35), t(880, 60)]));
        // Input grows by less than half the first call, though output grows.
        assert!(!is_lifetime_series(&[t(655, 40), t(900, 80)]));
        // The same request twice.
        assert!(!is_lifetime_series(&[t(655, 40), t(655, 40)]));
        // One line, a call without usage, a shrinking cache count.
        assert!(!is_lifetime_series(&[t(655, 40)]));
        assert!(!is_lifetime_series(&[t(0, 0), t(655, 40)]));
        let mut b = t(1310, 80);
        b.cache_read = 0;
        let mut a = t(655, 40);
        a.cache_read = 10;
        assert!(!is_lifetime_series(&[a, b]));
    }
}
