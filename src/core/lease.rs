//! Budget leases as the filter keeps them, host-free. The sidecar grants a
//! lease per (key, upstream model): an amount of each of the key's hard
//! budgets, usable until a deadline. The filter keeps a few of them in a
//! *slot* in Envoy's shared data, one slot per (key, model), read and
//! compare-and-swap written by every worker on every request; this module is
//! the slot, its compact encoding and the rules (what a request needs, which
//! lease it is debited from, what a worker draws, what is handed back, when
//! to refill). The host side (the CAS loop, the refill flag, the drawn
//! shares) is `filter::leases`.
//!
//! A worker does not touch the slot for every request: it *draws* a share
//! of a lease (`Lease::draw`: whole requests' worth, at most
//! `DRAW_REQUESTS` and a quarter of what is left, at least one), keeps it to
//! itself and admits from it until it is spent, then draws again. A share
//! is part of a lease the sidecar already counts as reserved, so drawing
//! changes no bound on spend; what it changes is where the unspent rest of
//! a lease may sit: in another worker's share, until that worker spends it
//! or the lease's deadline passes (at most a quarter of what was left, or
//! `DRAW_REQUESTS` requests, per worker).
//!
//! Encoding (little-endian; every count and length bounded, so `decode`
//! rejects garbage, and never panics):
//!
//! ```text
//! slot    = VERSION:u8 n:u8 lease{n} m:u8 release{m}
//! lease   = id:str deadline_ms:u64 ttl_ms:u64 price budgets:u8 budget{budgets}
//! price   = 0:u8 | 1:u8 input:f64 output:f64
//! budget  = budget_id:str kind:str granted:f64 remaining:f64
//! release = lease_id:str k:u8 (budget_id:str amount:f64){k}
//! str     = len:u16 bytes (UTF-8)
//! ```

use tollgate_protocol::{request_need, LeaseAmount, LeaseGrant, LeasePrice, LeaseRelease};

/// Leases a slot holds; a grant beyond it replaces the one closest to its deadline.
pub const MAX_LEASES: usize = 4;
/// Budgets one lease can hold (a key has a handful of hard budgets).
pub const MAX_BUDGETS: usize = 32;
/// Releases a slot keeps for the next lease callout; older ones are
/// dropped (their holds expire at the sidecar instead).
pub const MAX_RELEASES: usize = 8;
/// Longest id or kind a slot stores.
pub const MAX_TEXT: usize = 512;
/// Most requests' worth a worker draws from a lease at once.
pub const DRAW_REQUESTS: f64 = 16.0;
const VERSION: u8 = 1;

/// One request's size, as the lease request states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub input: u64,
    pub output: u64,
}

/// A leased budget and what is left of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub budget_id: String,
    /// `spend`, `tokens` or `requests` (another word needs nothing).
    pub kind: String,
    pub granted: f64,
    pub remaining: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub lease_id: String,
    /// In the filter's clock: the grant's arrival plus its `ttl_ms`.
    pub deadline_ms: u64,
    pub ttl_ms: u64,
    /// Empty: no hard budget applies; the lease admits everything until its deadline.
    pub budgets: Vec<Held>,
    pub price: Option<LeasePrice>,
}

/// What a request took from a lease, for its usage report.
#[derive(Debug, Clone, PartialEq)]
pub struct Debit {
    pub lease_id: String,
    /// Budgets whose need was not zero.
    pub amounts: Vec<LeaseAmount>,
}

/// The leases of one (key, model), and the unused rest of dropped leases
/// waiting to be handed back with the next lease callout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slot {
    /// Earliest deadline first.
    pub leases: Vec<Lease>,
    pub releases: Vec<LeaseRelease>,
}

/// Slack for amounts computed in floating point (a spend lease debited
/// many times): a request needing what is left, up to rounding, fits.
fn fits(need: f64, remaining: f64) -> bool {
    need <= remaining + 1e-9 * need.abs().max(1.0)
}

impl Lease {
    /// The lease a grant describes, its deadline `ttl_ms` after `now_ms`.
    pub fn from_grant(grant: &LeaseGrant, now_ms: u64) -> Lease {
        let budgets = grant
            .budgets
            .iter()
            .map(|b| Held {
                budget_id: b.budget_id.clone(),
                kind: b.kind.clone(),
                granted: b.granted,
                remaining: b.granted,
            })
            .collect();
        Lease {
            lease_id: grant.lease_id.clone(),
            deadline_ms: now_ms.saturating_add(grant.ttl_ms),
            ttl_ms: grant.ttl_ms,
            budgets,
            price: grant.price,
        }
    }

    /// Fits the slot's format: ids and budgets within its bounds, amounts
    /// finite and non-negative (a lease that does not is used for the
    /// request it came with, and not kept).
    pub fn storable(&self) -> bool {
        let amount = |x: f64| x.is_finite() && x >= 0.0;
        text(&self.lease_id)
            && self.budgets.len() <= MAX_BUDGETS
            && self.budgets.iter().all(|b| {
                text(&b.budget_id) && text(&b.kind) && amount(b.granted) && amount(b.remaining)
            })
            && self
                .price
                .is_none_or(|p| amount(p.input) && amount(p.output))
    }

    /// Before its deadline, and no further from it than its ttl: a clock
    /// stepped back must not stretch a lease past its hold at the sidecar.
    pub fn live(&self, now_ms: u64) -> bool {
        now_ms < self.deadline_ms && self.deadline_ms - now_ms <= self.ttl_ms
    }

    /// What a request of `size` takes from budget `b` of this lease.
    pub fn need(&self, b: &Held, size: Size) -> f64 {
        request_need(&b.kind, self.price.as_ref(), size.input, size.output)
    }

    /// Every budget has room for a request of `size`.
    pub fn covers(&self, size: Size) -> bool {
        self.budgets
            .iter()
            .all(|b| fits(self.need(b, size), b.remaining))
    }

    /// Takes a request of `size` (at most what is left of each budget).
    pub fn take(&mut self, size: Size) -> Debit {
        let mut amounts = Vec::new();
        for i in 0..self.budgets.len() {
            let Some(need) = self.budgets.get(i).map(|b| self.need(b, size)) else {
                continue;
            };
            let Some(b) = self.budgets.get_mut(i) else {
                continue;
            };
            let amount = need.min(b.remaining).max(0.0);
            b.remaining = (b.remaining - amount).max(0.0);
            if amount > 0.0 {
                amounts.push(LeaseAmount {
                    budget_id: b.budget_id.clone(),
                    amount,
                });
            }
        }
        Debit {
            lease_id: self.lease_id.clone(),
            amounts,
        }
    }

    /// A share of this lease for one worker to admit from on its own (see
    /// the module comment): per budget, whole requests of `size`, at most
    /// `DRAW_REQUESTS` and a quarter of what is left, at least one; just
    /// one with `many` false. Same id, deadline and price, so what is
    /// admitted from it is reported against this lease. `None` when the
    /// lease does not cover a request of `size`.
    pub fn draw(&mut self, size: Size, many: bool) -> Option<Lease> {
        if !self.covers(size) {
            return None;
        }
        let needs: Vec<f64> = self.budgets.iter().map(|b| self.need(b, size)).collect();
        let budgets = self
            .budgets
            .iter_mut()
            .zip(needs)
            .map(|(b, need)| {
                let share = if need > 0.0 {
                    let most = if many { DRAW_REQUESTS } else { 1.0 };
                    let requests = (b.remaining / 4.0 / need).floor().clamp(1.0, most);
                    (requests * need).min(b.remaining)
                } else {
                    0.0
                };
                b.remaining = (b.remaining - share).max(0.0);
                Held {
                    budget_id: b.budget_id.clone(),
                    kind: b.kind.clone(),
                    granted: share,
                    remaining: share,
                }
            })
            .collect();
        Some(Lease {
            lease_id: self.lease_id.clone(),
            deadline_ms: self.deadline_ms,
            ttl_ms: self.ttl_ms,
            budgets,
            price: self.price,
        })
    }

    /// Nothing left to admit from (a lease of no hard budget admits
    /// everything until its deadline).
    pub fn spent(&self) -> bool {
        !self.budgets.is_empty() && self.budgets.iter().all(|b| b.remaining <= 0.0)
    }

    /// Still good for a while: live beyond the last quarter of its time,
    /// and every budget above its low-water mark (a quarter of its grant,
    /// and two requests of `size`).
    fn healthy(&self, now_ms: u64, size: Size) -> bool {
        let left = self.deadline_ms.saturating_sub(now_ms);
        self.live(now_ms)
            && left > self.ttl_ms / 4
            && self.budgets.iter().all(|b| {
                let need = self.need(b, size);
                b.remaining >= b.granted / 4.0 && b.remaining >= 2.0 * need
            })
    }

    /// What is left of it, to hand back; `None` when nothing is.
    fn release(self) -> Option<LeaseRelease> {
        let unused: Vec<LeaseAmount> = self
            .budgets
            .into_iter()
            .filter(|b| b.remaining > 0.0)
            .map(|b| LeaseAmount {
                budget_id: b.budget_id,
                amount: b.remaining,
            })
            .collect();
        (!unused.is_empty()).then_some(LeaseRelease {
            lease_id: self.lease_id,
            unused,
        })
    }
}

impl Slot {
    /// Draws a share (`Lease::draw`) of the first live lease that covers a
    /// request of `size`, the earliest deadline first (so older leases
    /// drain before they expire). `None`: none does.
    pub fn draw(&mut self, now_ms: u64, size: Size, many: bool) -> Option<Lease> {
        self.leases
            .iter_mut()
            .find(|l| l.live(now_ms) && l.covers(size))
            .and_then(|l| l.draw(size, many))
    }

    /// Adds a granted lease; expired leases and, when the slot is full,
    /// the ones closest to their deadline go to the releases. A lease the
    /// format cannot hold, or one already there, is not added.
    pub fn merge(&mut self, lease: Lease, now_ms: u64) {
        self.prune(now_ms);
        if !lease.storable() || self.leases.iter().any(|l| l.lease_id == lease.lease_id) {
            return;
        }
        self.leases.push(lease);
        self.leases.sort_by_key(|l| l.deadline_ms);
        while self.leases.len() > MAX_LEASES {
            let dropped = self.leases.remove(0);
            self.hand_back(dropped);
        }
    }

    /// Moves expired leases to the releases.
    pub fn prune(&mut self, now_ms: u64) {
        let (live, expired): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut self.leases)
            .into_iter()
            .partition(|l| l.live(now_ms));
        self.leases = live;
        for lease in expired {
            self.hand_back(lease);
        }
    }

    fn hand_back(&mut self, lease: Lease) {
        if let Some(release) = lease.release() {
            self.releases.push(release);
        }
        if self.releases.len() > MAX_RELEASES {
            let excess = self.releases.len() - MAX_RELEASES;
            self.releases.drain(..excess);
        }
    }

    /// Prunes, and takes the releases for a lease request.
    pub fn take_releases(&mut self, now_ms: u64) -> Vec<LeaseRelease> {
        self.prune(now_ms);
        std::mem::take(&mut self.releases)
    }

    /// No lease is good for a while: time to ask for another before the
    /// requests find the slot dry.
    pub fn wants_refill(&self, now_ms: u64, size: Size) -> bool {
        !self.leases.iter().any(|l| l.healthy(now_ms, size))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 96 * self.leases.len());
        out.push(VERSION);
        put_count(&mut out, self.leases.len());
        for l in &self.leases {
            put_str(&mut out, &l.lease_id);
            out.extend_from_slice(&l.deadline_ms.to_le_bytes());
            out.extend_from_slice(&l.ttl_ms.to_le_bytes());
            match &l.price {
                None => out.push(0),
                Some(p) => {
                    out.push(1);
                    out.extend_from_slice(&p.input.to_le_bytes());
                    out.extend_from_slice(&p.output.to_le_bytes());
                }
            }
            put_count(&mut out, l.budgets.len());
            for b in &l.budgets {
                put_str(&mut out, &b.budget_id);
                put_str(&mut out, &b.kind);
                out.extend_from_slice(&b.granted.to_le_bytes());
                out.extend_from_slice(&b.remaining.to_le_bytes());
            }
        }
        put_count(&mut out, self.releases.len());
        for r in &self.releases {
            put_str(&mut out, &r.lease_id);
            put_count(&mut out, r.unused.len());
            for a in &r.unused {
                put_str(&mut out, &a.budget_id);
                out.extend_from_slice(&a.amount.to_le_bytes());
            }
        }
        out
    }

    /// The slot `encode` wrote; `None` for anything else (another version,
    /// truncated or trailing bytes, bounds exceeded, amounts that are not
    /// finite and non-negative).
    pub fn decode(bytes: &[u8]) -> Option<Slot> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let mut slot = Slot::default();
        for _ in 0..r.count(MAX_LEASES)? {
            let lease_id = r.str()?;
            let deadline_ms = r.u64()?;
            let ttl_ms = r.u64()?;
            let price = match r.u8()? {
                0 => None,
                1 => Some(LeasePrice {
                    input: r.amount()?,
                    output: r.amount()?,
                }),
                _ => return None,
            };
            let mut budgets = Vec::new();
            for _ in 0..r.count(MAX_BUDGETS)? {
                budgets.push(Held {
                    budget_id: r.str()?,
                    kind: r.str()?,
                    granted: r.amount()?,
                    remaining: r.amount()?,
                });
            }
            slot.leases.push(Lease {
                lease_id,
                deadline_ms,
                ttl_ms,
                budgets,
                price,
            });
        }
        for _ in 0..r.count(MAX_RELEASES)? {
            let lease_id = r.str()?;
            let mut unused = Vec::new();
            for _ in 0..r.count(MAX_BUDGETS)? {
                unused.push(LeaseAmount {
                    budget_id: r.str()?,
                    amount: r.amount()?,
                });
            }
            slot.releases.push(LeaseRelease { lease_id, unused });
        }
        r.0.is_empty().then_some(slot)
    }
}

fn text(s: &str) -> bool {
    s.len() <= MAX_TEXT
}

/// Counts are bounded by the constants above, far below 256.
fn put_count(out: &mut Vec<u8>, n: usize) {
    out.push(u8::try_from(n).unwrap_or(u8::MAX));
}

/// Texts are bounded by `MAX_TEXT` (a longer one is cut, never stored:
/// `Lease::from_grant` refuses it).
fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = s.get(..s.floor_char_boundary(MAX_TEXT)).unwrap_or_default();
    let len = u16::try_from(s.len()).unwrap_or(0);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes().get(..usize::from(len)).unwrap_or_default());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn amount(&mut self) -> Option<f64> {
        let x = f64::from_le_bytes(self.take(8)?.try_into().ok()?);
        (x.is_finite() && x >= 0.0).then_some(x)
    }

    fn count(&mut self, max: usize) -> Option<usize> {
        let n = usize::from(self.u8()?);
        (n <= max).then_some(n)
    }

    fn str(&mut self) -> Option<String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        let len = usize::from(len);
        if len > MAX_TEXT {
            return None;
        }
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// A time stamp in shared data (the refill flag): 8 bytes, little-endian ms.
pub fn encode_stamp(ms: u64) -> [u8; 8] {
    ms.to_le_bytes()
}

/// The stamp `encode_stamp` wrote; `None` for anything else (0 is "clear").
pub fn decode_stamp(bytes: &[u8]) -> Option<u64> {
    let ms = u64::from_le_bytes(bytes.try_into().ok()?);
    (ms != 0).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_protocol::LeasedBudget;

    const SIZE: Size = Size {
        input: 1000,
        output: 500,
    };

    fn grant(id: &str, ttl_ms: u64, budgets: &[(&str, &str, f64)]) -> LeaseGrant {
        LeaseGrant {
            allowed: true,
            lease_id: id.into(),
            ttl_ms,
            budgets: budgets
                .iter()
                .map(|(budget_id, kind, granted)| LeasedBudget {
                    budget_id: (*budget_id).into(),
                    kind: (*kind).into(),
                    granted: *granted,
                })
                .collect(),
            // $2 in, $10 out per 1M: SIZE costs 0.002 + 0.005.
            price: Some(LeasePrice {
                input: 2.0,
                output: 10.0,
            }),
            warnings: vec![],
        }
    }

    fn lease(id: &str, ttl_ms: u64, budgets: &[(&str, &str, f64)], now: u64) -> Lease {
        Lease::from_grant(&grant(id, ttl_ms, budgets), now)
    }

    /// One request taken from the slot: a one-request share, spent.
    trait Debits {
        fn debit(&mut self, now_ms: u64, size: Size) -> Option<Debit>;
    }

    impl Debits for Slot {
        fn debit(&mut self, now_ms: u64, size: Size) -> Option<Debit> {
            self.draw(now_ms, size, false)
                .map(|mut share| share.take(size))
        }
    }

    #[test]
    fn shares_are_whole_requests_a_quarter_of_the_rest_at_most_and_one_at_least() {
        // Requests: a quarter of 100 is 25, capped at DRAW_REQUESTS.
        let mut l = lease("l", 1000, &[("r", "requests", 100.0)], 0);
        let share = l.draw(SIZE, true).unwrap();
        assert_eq!(share.budgets[0].remaining, DRAW_REQUESTS);
        assert_eq!(l.budgets[0].remaining, 100.0 - DRAW_REQUESTS);
        assert_eq!((share.lease_id.as_str(), share.deadline_ms), ("l", 1000));
        // 10 left: two requests (a quarter, rounded down); 3 left: one.
        for (left, drawn) in [(10.0, 2.0), (3.0, 1.0), (1.0, 1.0)] {
            l.budgets[0].remaining = left;
            assert_eq!(
                l.draw(SIZE, true).unwrap().budgets[0].remaining,
                drawn,
                "{left}"
            );
            assert_eq!(l.budgets[0].remaining, left - drawn);
        }
        assert_eq!(l.draw(SIZE, true), None, "nothing left");
        // One request's worth when asked for one.
        let mut l = lease("l", 1000, &[("r", "requests", 100.0)], 0);
        assert_eq!(l.draw(SIZE, false).unwrap().budgets[0].remaining, 1.0);
        // Tokens and spend in whole requests of SIZE (1500 tokens, $0.007).
        let mut l = lease(
            "l",
            1000,
            &[("t", "tokens", 15_000.0), ("s", "spend", 1.0)],
            0,
        );
        let share = l.draw(SIZE, true).unwrap();
        assert_eq!(share.budgets[0].remaining, 3750.0 - 3750.0 % 1500.0);
        assert!((share.budgets[1].remaining - 16.0 * 0.007).abs() < 1e-12);
        // Each budget its own share; every share covers the request.
        assert!(share.covers(SIZE));
        // A kind that needs nothing gives a share of nothing, which covers.
        let mut l = lease("l", 1000, &[("x", "other", 5.0)], 0);
        let share = l.draw(SIZE, true).unwrap();
        assert_eq!(
            (share.budgets[0].remaining, l.budgets[0].remaining),
            (0.0, 5.0)
        );
        assert!(share.covers(SIZE));
    }

    #[test]
    fn drawing_never_hands_out_more_than_the_lease_holds() {
        // Shares drawn until the lease is dry add up to what it held, for
        // any amount, in whole requests (the last one may be what is left).
        for granted in [0.5, 1.0, 2.0, 7.0, 33.0, 100.0, 1000.0, 12_345.0] {
            let mut l = lease(
                "l",
                1000,
                &[
                    ("r", "requests", granted),
                    ("t", "tokens", granted * 1500.0),
                ],
                0,
            );
            let (mut total, mut requests) = (0.0, 0.0);
            while let Some(mut share) = l.draw(SIZE, true) {
                total += share.budgets[0].remaining;
                while share.covers(SIZE) {
                    share.take(SIZE);
                    requests += 1.0;
                }
            }
            assert!(total <= granted + 1e-9, "{granted}: drew {total}");
            assert_eq!(requests, granted.floor(), "{granted}");
        }
    }

    #[test]
    fn needs_follow_the_shared_definition() {
        let l = lease(
            "l",
            1000,
            &[
                ("r", "requests", 10.0),
                ("t", "tokens", 1e6),
                ("s", "spend", 1.0),
            ],
            0,
        );
        let needs: Vec<f64> = l.budgets.iter().map(|b| l.need(b, SIZE)).collect();
        assert_eq!(needs[0], 1.0);
        assert_eq!(needs[1], 1500.0);
        assert!((needs[2] - 0.007).abs() < 1e-12);
        let unpriced = Lease { price: None, ..l };
        assert_eq!(unpriced.need(&unpriced.budgets[2], SIZE), 0.0);
    }

    #[test]
    fn debits_the_first_live_lease_that_covers_every_budget() {
        let mut slot = Slot::default();
        // Older lease: room for one more request of tokens only.
        slot.merge(
            lease(
                "old",
                1000,
                &[("r", "requests", 5.0), ("t", "tokens", 1500.0)],
                0,
            ),
            0,
        );
        slot.merge(
            lease(
                "new",
                2000,
                &[("r", "requests", 5.0), ("t", "tokens", 15000.0)],
                0,
            ),
            0,
        );
        assert_eq!(slot.leases[0].lease_id, "old", "earliest deadline first");
        let d = slot.debit(10, SIZE).unwrap();
        assert_eq!(d.lease_id, "old");
        assert_eq!(
            d.amounts,
            [
                LeaseAmount {
                    budget_id: "r".into(),
                    amount: 1.0
                },
                LeaseAmount {
                    budget_id: "t".into(),
                    amount: 1500.0
                }
            ]
        );
        assert_eq!(slot.leases[0].budgets[1].remaining, 0.0);
        // The old one no longer covers the tokens: the new one takes it.
        assert_eq!(slot.debit(10, SIZE).unwrap().lease_id, "new");
        // Past the old deadline only the new lease is live.
        assert_eq!(slot.debit(1500, SIZE).unwrap().lease_id, "new");
        // Past every deadline nothing covers.
        assert_eq!(slot.debit(2000, SIZE), None);
        // Nor when the clock stepped back further than a lease's ttl.
        let mut slot = Slot::default();
        slot.merge(lease("l", 1000, &[], 5000), 5000);
        assert!(slot.debit(5000, SIZE).is_some());
        assert_eq!(slot.debit(4999, SIZE), None);
        slot.prune(4999);
        assert!(slot.leases.is_empty());
    }

    #[test]
    fn a_crossing_grant_covers_exactly_its_one_request() {
        // The sidecar grants exactly the need when little is left.
        let mut l = lease("x", 1000, &[("s", "spend", 0.007)], 0);
        assert!(l.covers(SIZE));
        let d = l.take(SIZE);
        assert!((d.amounts[0].amount - 0.007).abs() < 1e-12);
        assert!(!l.covers(SIZE));
        // Many small debits in floating point still reach the end.
        let mut l = lease("z", 1000, &[("s", "spend", 0.7)], 0);
        let mut n = 0;
        while l.covers(SIZE) {
            l.take(SIZE);
            n += 1;
        }
        assert_eq!(n, 100);
        assert!(l.budgets[0].remaining >= 0.0);
    }

    #[test]
    fn an_empty_lease_admits_everything_until_its_deadline() {
        let mut slot = Slot::default();
        slot.merge(lease("free", 10_000, &[], 0), 0);
        let d = slot.debit(5, SIZE).unwrap();
        assert_eq!((d.lease_id.as_str(), d.amounts.len()), ("free", 0));
        assert!(!slot.wants_refill(5, SIZE));
        // Its last quarter: refill ahead of the deadline.
        assert!(slot.wants_refill(7_600, SIZE));
        assert_eq!(slot.debit(10_000, SIZE), None);
        // An empty lease hands nothing back.
        assert!(slot.take_releases(10_000).is_empty());
        assert!(slot.leases.is_empty());
    }

    #[test]
    fn expired_and_replaced_leases_are_handed_back() {
        let mut slot = Slot::default();
        slot.merge(lease("a", 100, &[("r", "requests", 10.0)], 0), 0);
        slot.debit(1, SIZE).unwrap();
        // `a` expires: its unused 9 requests go back with the next callout.
        let releases = slot.take_releases(100);
        assert_eq!(releases.len(), 1);
        assert_eq!(releases[0].lease_id, "a");
        assert_eq!(releases[0].unused[0].amount, 9.0);
        assert!(slot.leases.is_empty() && slot.releases.is_empty());
        // A full slot drops the lease nearest its deadline.
        for i in 0..=MAX_LEASES as u64 {
            let id = format!("l{i}");
            slot.merge(lease(&id, 1000 + i, &[("r", "requests", 4.0)], 200), 200);
        }
        assert_eq!(slot.leases.len(), MAX_LEASES);
        assert_eq!(slot.leases[0].lease_id, "l1");
        assert_eq!(slot.releases[0].lease_id, "l0");
        // The same grant merged twice (a retried write) is kept once.
        let again = slot.leases[0].clone();
        slot.merge(again, 200);
        assert_eq!(slot.leases.len(), MAX_LEASES);
        // Releases are bounded: the oldest go (their holds expire instead).
        for i in 0..20 {
            let id = format!("gone{i}");
            slot.merge(lease(&id, 1, &[("r", "requests", 1.0)], 300), 300);
            slot.prune(301);
        }
        assert_eq!(slot.releases.len(), MAX_RELEASES);
        assert_eq!(slot.releases.last().unwrap().lease_id, "gone19");
    }

    #[test]
    fn refill_at_low_water() {
        let mut slot = Slot::default();
        slot.merge(lease("a", 10_000, &[("r", "requests", 8.0)], 0), 0);
        // 8 granted: low below 2 (a quarter), i.e. after the 7th request.
        for _ in 0..6 {
            slot.debit(1, SIZE).unwrap();
            assert!(!slot.wants_refill(1, SIZE));
        }
        slot.debit(1, SIZE).unwrap();
        assert!(slot.wants_refill(1, SIZE));
        // A fresh lease next to the low one: no refill.
        slot.merge(lease("b", 10_000, &[("r", "requests", 8.0)], 1), 1);
        assert!(!slot.wants_refill(1, SIZE));
        // Two requests' worth is also low water (large requests).
        let mut slot = Slot::default();
        slot.merge(lease("t", 10_000, &[("t", "tokens", 4000.0)], 0), 0);
        assert!(!slot.wants_refill(0, SIZE));
        slot.debit(0, SIZE).unwrap();
        assert!(slot.wants_refill(0, SIZE), "2500 left < 2 x 1500");
        // An empty slot wants one.
        assert!(Slot::default().wants_refill(0, SIZE));
    }

    #[test]
    fn encodes_compactly_and_round_trips() {
        let mut slot = Slot::default();
        slot.merge(
            lease(
                "lease_0123456789abcdef",
                10_000,
                &[("bud_key", "requests", 100.0), ("bud_team", "spend", 12.5)],
                1_700_000_000_000,
            ),
            1_700_000_000_000,
        );
        slot.leases[0].price = None;
        slot.merge(
            lease(
                "lease_2",
                5_000,
                &[("bud_key", "tokens", 1e6)],
                1_700_000_000_000,
            ),
            1_700_000_000_000,
        );
        slot.debit(1_700_000_000_001, SIZE).unwrap();
        slot.releases.push(LeaseRelease {
            lease_id: "old".into(),
            unused: vec![LeaseAmount {
                budget_id: "bud_key".into(),
                amount: 3.0,
            }],
        });
        let bytes = slot.encode();
        assert!(bytes.len() < 300, "{} bytes", bytes.len());
        assert_eq!(Slot::decode(&bytes), Some(slot));
        assert_eq!(
            Slot::decode(&Slot::default().encode()),
            Some(Slot::default())
        );
    }

    #[test]
    fn decode_rejects_garbage() {
        let mut slot = Slot::default();
        slot.merge(lease("l", 10, &[("b", "spend", 1.0)], 0), 0);
        let bytes = slot.encode();
        // Every truncation, trailing bytes, another version.
        for n in 0..bytes.len() {
            assert_eq!(Slot::decode(&bytes[..n]), None, "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Slot::decode(&longer), None);
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(Slot::decode(&other), None);
        // Amounts that are not finite, or negative.
        let at = bytes.len() - 1 - 8;
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            let mut b = bytes.clone();
            b[at..at + 8].copy_from_slice(&bad.to_le_bytes());
            assert_eq!(Slot::decode(&b), None, "{bad}");
        }
        // Counts beyond the bounds; text that is not UTF-8.
        assert_eq!(Slot::decode(&[VERSION, MAX_LEASES as u8 + 1]), None);
        assert_eq!(Slot::decode(&[VERSION, 0, MAX_RELEASES as u8 + 1]), None);
        let mut bad_text = bytes.clone();
        bad_text[4] = 0xff;
        assert_eq!(Slot::decode(&bad_text), None);
        // Any byte flipped: decodes to something or to nothing, never panics.
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let _ = Slot::decode(&b);
            }
        }
        assert_eq!(Slot::decode(b"{\"leases\":[]}"), None);
        assert_eq!(Slot::decode(b""), None);
    }

    #[test]
    fn grants_beyond_the_format_are_not_kept() {
        let long = "x".repeat(MAX_TEXT + 1);
        let many: Vec<(&str, &str, f64)> =
            (0..=MAX_BUDGETS).map(|_| ("b", "requests", 1.0)).collect();
        for bad in [
            grant(&long, 10, &[]),
            grant("l", 10, &[("b", "spend", f64::NAN)]),
            grant("l", 10, &[("b", "spend", -1.0)]),
            grant("l", 10, &many),
        ] {
            let lease = Lease::from_grant(&bad, 0);
            assert!(!lease.storable());
            let mut slot = Slot::default();
            slot.merge(lease, 0);
            assert!(slot.leases.is_empty());
        }
        assert!(Lease::from_grant(&grant("l", 10, &[("b", "spend", 1.0)]), 0).storable());
        // The deadline saturates rather than wrapping.
        assert_eq!(
            Lease::from_grant(&grant("l", u64::MAX, &[]), 5).deadline_ms,
            u64::MAX
        );
    }

    #[test]
    fn stamps() {
        assert_eq!(decode_stamp(&encode_stamp(42)), Some(42));
        assert_eq!(decode_stamp(&encode_stamp(0)), None);
        assert_eq!(decode_stamp(b"short"), None);
    }
}
