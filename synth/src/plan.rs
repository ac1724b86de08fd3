//! The month plan: random streams, weights, tenants and users, daily volumes, and where the
//! bad records go. Everything here is small (a few values per tenant and per day); the events
//! themselves are made day by day in [`super::day`].

use chrono::{Datelike, Months, NaiveDate, Weekday};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::SynthConfig;
use super::dirty::Bad;

/// A ChaCha8 stream keyed by the seed, a label and an index, so that every day (and the plan)
/// has its own stream and days can be generated in any order, on any number of threads.
///
/// Only the raw `u64` stream is used (ChaCha8's output is portable); the derived draws below
/// are written out here so that no library algorithm change can alter the files.
pub(crate) struct Rng(ChaCha8Rng);

impl Rng {
    pub(crate) fn new(seed: u64, label: &str, index: u64) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"agentmeter-synth-v1\0");
        h.update(&seed.to_le_bytes());
        h.update(label.as_bytes());
        h.update(&[0]);
        h.update(&index.to_le_bytes());
        Self(ChaCha8Rng::from_seed(*h.finalize().as_bytes()))
    }

    pub(crate) fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (multiply-shift; the bias, under `n / 2^64`, is irrelevant here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// An index into a slice of length `n`.
    pub(crate) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `permille / 1000`.
    pub(crate) fn chance(&mut self, permille: u32) -> bool {
        self.below(1000) < u64::from(permille)
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A factor uniform in `[1 - amp, 1 + amp)`.
    pub(crate) fn jitter(&mut self, amp: f64) -> f64 {
        1.0 + amp * (2.0 * self.unit() - 1.0)
    }

    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.index(xs.len())]
    }

    pub(crate) fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.index(i + 1);
            xs.swap(i, j);
        }
    }

    /// `n` lowercase hex digits.
    pub(crate) fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            let x = self.u64();
            s.push_str(&format!("{x:016x}"));
        }
        s.truncate(n);
        s
    }

    /// A random UUID-shaped request id.
    pub(crate) fn uuid(&mut self) -> String {
        let (a, b) = (self.u64(), self.u64());
        uuid_text(a, b)
    }
}

/// A version 4 UUID text whose 122 free bits hold all 64 bits of `unique` (so distinct values
/// give distinct UUIDs) and 58 bits of `random`.
pub(crate) fn uuid_text(unique: u64, random: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:04x}{:08x}",
        unique >> 32,
        (unique >> 16) & 0xffff,
        random & 0xfff,
        0x8000 | ((random >> 12) & 0x3fff),
        unique & 0xffff,
        (random >> 26) & 0xffff_ffff
    )
}

/// A bijection of `u64` (the splitmix64 finalizer): distinct inputs give distinct outputs, so
/// ids built from it are unique by construction while looking random.
pub(crate) fn scramble(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `1 / rank^1.1` (Zipf, s = 1.1), computed with the basic IEEE operations only, which are
/// correctly rounded on every platform (`powf` comes from the platform's libm and may differ
/// in the last bit, which could move an event from one tenant to another).
pub(crate) fn zipf_weight(rank: usize) -> f64 {
    let x = rank.max(1) as f64;
    // y = x^(1/10) by Newton's method, from above: (1 + (x - 1)/10)^10 >= x (Bernoulli).
    let mut y = 1.0 + (x - 1.0) / 10.0;
    for _ in 0..200 {
        let mut y9 = 1.0;
        for _ in 0..9 {
            y9 *= y;
        }
        let next = y - (y9 * y - x) / (10.0 * y9);
        if next >= y {
            break;
        }
        y = next;
    }
    1.0 / (x * y)
}

/// Samples indices in proportion to fixed weights.
#[derive(Debug, Clone)]
pub(crate) struct Weighted {
    cumulative: Vec<f64>,
}

impl Weighted {
    pub(crate) fn new(weights: &[f64]) -> Self {
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w.max(0.0);
                acc
            })
            .collect();
        Self { cumulative }
    }

    pub(crate) fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.unit() * total;
        self.cumulative.partition_point(|c| *c <= x).min(self.cumulative.len().saturating_sub(1))
    }
}

/// Splits `total` in proportion to `weights` (largest remainder, ties to the lower index): the
/// parts always sum to `total` exactly.
pub(crate) fn apportion(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().map(|w| w.max(0.0)).sum();
    let mut out = vec![0u64; weights.len()];
    if weights.is_empty() || total == 0 {
        return out;
    }
    if sum <= 0.0 {
        out[0] = total;
        return out;
    }
    let mut rest: Vec<(f64, usize)> = Vec::with_capacity(weights.len());
    let mut given = 0u64;
    for (i, w) in weights.iter().enumerate() {
        let quota = total as f64 * w.max(0.0) / sum;
        let floor = (quota.floor() as u64).min(total - given);
        out[i] = floor;
        given += floor;
        rest.push((quota - floor as f64, i));
    }
    rest.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for k in 0..(total - given) {
        out[rest[k as usize % rest.len()].1] += 1;
    }
    out
}

/// The two tiers of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TierKind {
    Basic,
    Premium,
}

impl TierKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TierKind::Basic => "basic",
            TierKind::Premium => "premium",
        }
    }

    /// 0 for basic, 1 for premium (one Firehose log group each).
    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

/// The models, by tier.
pub(crate) const MODELS: [&str; 3] = [
    "mistral.ministral-3-8b-instruct",
    "openai.gpt-oss-120b-1:0",
    "us.anthropic.claude-haiku-4-5-20251001-v1:0",
];
/// The application inference profile a tenant's agents call `model` through (with
/// `SynthConfig::profile_arn_permille`): one per tenant and model, its id derived from the seed.
pub(crate) fn profile_arn(seed: u64, tenant: usize, model: u8) -> String {
    let id = scramble(seed ^ 0x9e37_79b9_7f4a_7c15 ^ (((tenant as u64) << 8) | u64::from(model)));
    format!(
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/{:012x}",
        id & 0xffff_ffff_ffff
    )
}

/// What `aws bedrock list-inference-profiles` says each profile of [`MODELS`] routes to: a
/// foundation model in the profile's own Region, or the cross-region profile it was copied
/// from.
pub(crate) fn profile_model_arn(model: u8) -> String {
    let id = MODELS[usize::from(model)];
    if id.starts_with("us.") {
        format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{id}")
    } else {
        format!("arn:aws:bedrock:us-east-1::foundation-model/{id}")
    }
}

/// Index in [`MODELS`] of the model that reports prompt-cache tokens.
pub(crate) const HAIKU: u8 = 2;

const ROLES: [&str; 8] = ["dr", "nurse", "np", "pa", "admin", "billing", "frontdesk", "pharm"];
const SURNAMES: [&str; 32] = [
    "lee", "garcia", "okafor", "novak", "tanaka", "silva", "muller", "khan", "rossi", "dubois",
    "kowalski", "nguyen", "haddad", "jensen", "moreau", "ivanova", "park", "costa", "oconnor",
    "fischer", "yilmaz", "mendes", "sato", "larsen", "petrov", "cohen", "mbeki", "alvarez",
    "schmidt", "wong", "patel", "berg",
];

/// One tenant of the workload.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub id: String,
    pub tier: TierKind,
    pub users: Vec<String>,
    pub user_pick: Weighted,
    pub noisy: bool,
}

/// One day of the month.
#[derive(Debug)]
pub(crate) struct DayPlan {
    pub date: NaiveDate,
    /// Distinct valid events of the day.
    pub events: u64,
    /// This day also has a `filter-log-events` export.
    pub filter_log_events: bool,
    /// Make one duplicate of each kind on this day, whatever the dice say (so that every kind
    /// appears at least once when duplicates are asked for).
    pub force_duplicates: bool,
    /// Bad records of the day, each with the hour after which it is written.
    pub bad: Vec<(u32, Bad)>,
}

/// Each noisy tenant's mean share of the basic pool's hourly requests, by number of noisy
/// tenants: well over 20% each, leaving the rest to the quiet tenants.
fn noisy_share(n: usize) -> f64 {
    match n {
        1 => 0.45,
        2 => 0.38,
        3 => 0.29,
        _ => 0.235,
    }
}

/// The whole month, decided up front from the seed.
#[derive(Debug)]
pub(crate) struct Plan {
    pub cfg: SynthConfig,
    pub tenants: Vec<Tenant>,
    /// Indices of noisy basic tenants, in id order.
    pub noisy: Vec<usize>,
    /// Indices of the other basic tenants, and a Zipf sampler over them.
    pub quiet: Vec<usize>,
    pub quiet_pick: Weighted,
    /// Indices of premium tenants, and a Zipf sampler over them.
    pub premium: Vec<usize>,
    pub premium_pick: Weighted,
    /// Each noisy tenant's mean share of the basic pool, and the quiet tenants' share.
    pub noisy_share: f64,
    pub quiet_share: f64,
    pub days: Vec<DayPlan>,
}

impl Plan {
    /// The plan of `cfg`, which must be valid.
    pub(crate) fn new(cfg: &SynthConfig) -> Self {
        let mut rng = Rng::new(cfg.seed, "plan", 0);
        let n_basic = ((cfg.tenants * 7 + 5) / 10).clamp(cfg.noisy + 1, cfg.tenants - 1);
        let n_premium = cfg.tenants - n_basic;
        let width = 3.max(cfg.tenants.to_string().len());
        let mut tenants = Vec::with_capacity(cfg.tenants);
        for (tier, prefix, n) in
            [(TierKind::Basic, "clinic", n_basic), (TierKind::Premium, "hospital", n_premium)]
        {
            for i in 1..=n {
                let id = format!("{prefix}-{i:0width$}");
                tenants.push(make_tenant(id, tier, &mut rng));
            }
        }

        let mut basic: Vec<usize> = (0..n_basic).collect();
        rng.shuffle(&mut basic);
        let mut noisy = basic[..cfg.noisy].to_vec();
        noisy.sort_unstable();
        for &i in &noisy {
            tenants[i].noisy = true;
        }
        // Zipf ranks in shuffled order, so that clinic-001 is not always the busiest.
        let quiet: Vec<usize> = basic[cfg.noisy..].to_vec();
        let quiet_weights: Vec<f64> = (1..=quiet.len()).map(zipf_weight).collect();
        let mut premium: Vec<usize> = (n_basic..cfg.tenants).collect();
        rng.shuffle(&mut premium);
        let premium_weights: Vec<f64> = (1..=premium.len()).map(zipf_weight).collect();
        let (noisy_share, quiet_share) = if cfg.noisy == 0 {
            (0.0, 1.0)
        } else {
            let s = noisy_share(cfg.noisy);
            (s, 1.0 - s * cfg.noisy as f64)
        };

        let days = plan_days(cfg, &mut rng);
        Self {
            cfg: cfg.clone(),
            tenants,
            noisy,
            quiet,
            quiet_pick: Weighted::new(&quiet_weights),
            premium,
            premium_pick: Weighted::new(&premium_weights),
            noisy_share,
            quiet_share,
            days,
        }
    }
}

fn make_tenant(id: String, tier: TierKind, rng: &mut Rng) -> Tenant {
    let n = rng.range(1, 20) as usize;
    let mut combos: Vec<usize> = (0..ROLES.len() * SURNAMES.len()).collect();
    rng.shuffle(&mut combos);
    let users: Vec<String> = combos[..n]
        .iter()
        .map(|c| format!("{}.{}@{id}.example", ROLES[c % ROLES.len()], SURNAMES[c / ROLES.len()]))
        .collect();
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / k as f64).collect();
    Tenant { id, tier, users, user_pick: Weighted::new(&weights), noisy: false }
}

/// The days of the month: volumes (lighter weekends), export days, and bad records.
fn plan_days(cfg: &SynthConfig, rng: &mut Rng) -> Vec<DayPlan> {
    let end = cfg.month.checked_add_months(Months::new(1)).unwrap_or(cfg.month);
    let n_days = usize::try_from((end - cfg.month).num_days()).unwrap_or(0).max(1);
    let dates: Vec<NaiveDate> = cfg.month.iter_days().take(n_days).collect();
    let weights: Vec<f64> = dates
        .iter()
        .map(|d| {
            let base = match d.weekday() {
                Weekday::Sat => 0.55,
                Weekday::Sun => 0.45,
                _ => 1.0,
            };
            base * rng.jitter(0.08)
        })
        .collect();
    let volumes = apportion(cfg.events, &weights);
    let mut days: Vec<DayPlan> = dates
        .iter()
        .zip(volumes)
        .map(|(&date, events)| DayPlan {
            date,
            events,
            filter_log_events: false,
            force_duplicates: false,
            bad: Vec::new(),
        })
        .collect();
    // One or two days also exported with `aws logs filter-log-events`.
    let mut order: Vec<usize> = (0..n_days).collect();
    rng.shuffle(&mut order);
    let n_fle = if n_days > 1 { 1 + rng.index(2) } else { 1 };
    for &d in &order[..n_fle] {
        days[d].filter_log_events = true;
    }
    // The busiest day carries the forced duplicates (it surely has events in every channel).
    if let Some(d) = (0..n_days).max_by_key(|&d| (days[d].events, std::cmp::Reverse(d))) {
        days[d].force_duplicates = true;
    }
    if cfg.dirty {
        for bad in Bad::catalog() {
            let d = rng.index(n_days);
            let hour = rng.below(24) as u32;
            days[d].bad.push((hour, bad));
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_sums_exactly() {
        let parts = apportion(1001, &[1.0, 2.0, 3.3, 0.0]);
        assert_eq!(parts.iter().sum::<u64>(), 1001);
        assert_eq!(parts[3], 0);
        assert_eq!(apportion(5, &[0.0, 0.0]), vec![5, 0]);
        assert_eq!(apportion(0, &[1.0]), vec![0]);
    }

    #[test]
    fn zipf_weights_match_the_formula() {
        for rank in [1usize, 2, 7, 50, 1000] {
            let want = (rank as f64).powf(-1.1);
            assert!((zipf_weight(rank) - want).abs() < 1e-12 * want.max(1.0), "{rank}");
        }
    }

    #[test]
    fn scramble_is_injective_on_a_sample() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u64 {
            assert!(seen.insert(scramble(i)));
        }
    }

    #[test]
    fn uuids_are_version_4_and_keep_the_unique_bits() {
        let u = uuid_text(0x0123_4567_89ab_cdef, u64::MAX);
        assert_eq!(u, "01234567-89ab-4fff-bfff-cdefffffffff");
        assert_ne!(uuid_text(1, 7), uuid_text(2, 7));
    }

    #[test]
    fn streams_are_keyed() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(1, "day", 3).u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::new(1, "day", 3).u64(), Rng::new(1, "day", 4).u64());
        assert_ne!(Rng::new(1, "day", 3).u64(), Rng::new(2, "day", 3).u64());
    }
}
