//! The connections' deadlines: a binary heap of `(when, sequence, key)` with lazy
//! deletion, so a sweep costs what is due, not what is open.
//!
//! Each connection (slab key) has at most one live entry: the earliest instant it must be
//! looked at. [`Deadlines::schedule`] keeps the live entry when it is already as early as
//! the new instant (a later deadline is found when the entry pops and the connection is
//! looked at again), and otherwise pushes a new entry with a fresh sequence number; the
//! older one stays in the heap, stale, and is skipped when it reaches the top (its
//! sequence no longer matches the key's slot). Sequence numbers are never reused, so an
//! entry of a closed connection never matches the connection that takes its key next.
//! When stale entries outnumber live ones (plus a margin), the heap is rebuilt in place
//! without them, so its length stays below twice the connections plus the margin: the
//! storage grows to a high-water mark and is reused, and steady state never allocates.
//! Equal instants pop in the order they were scheduled.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Stale entries tolerated beyond the live ones before the heap is rebuilt.
const SLACK: usize = 64;

/// One scheduled look at connection `key` (ordered by instant, then sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    seq: u64,
    key: usize,
}

/// Bytes of deadline storage per connection at most: two heap entries (a live one and
/// at most one stale one, on average) and its slot.
pub(crate) const BYTES_PER_CONNECTION: usize =
    2 * size_of::<Reverse<Due>>() + size_of::<Option<(Instant, u64)>>();
/// Bytes of deadline storage beyond those of the connections.
pub(crate) const BYTES_FIXED: usize = SLACK * size_of::<Reverse<Due>>();

/// The deadlines of one loop's connections (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<Due>>,
    /// The live entry of each key: its instant and sequence number.
    live: Vec<Option<(Instant, u64)>>,
    /// Keys with a live entry.
    scheduled: usize,
    next_seq: u64,
}

impl Deadlines {
    /// Room for `connections` without growing.
    pub(crate) fn with_capacity(connections: usize) -> Self {
        Self {
            heap: BinaryHeap::with_capacity(connections.saturating_mul(2).saturating_add(SLACK)),
            live: Vec::with_capacity(connections),
            scheduled: 0,
            next_seq: 0,
        }
    }

    /// Connection `key` must be looked at no later than `at`. Cheap when it is already
    /// scheduled as early (nothing changes).
    pub(crate) fn schedule(&mut self, key: usize, at: Instant) {
        if self.live.len() <= key {
            self.live.resize(key + 1, None);
        }
        match self.live[key] {
            Some((t, _)) if t <= at => return,
            Some(_) => {}
            None => self.scheduled += 1,
        }
        if self.heap.len() >= self.scheduled.saturating_mul(2).saturating_add(SLACK) {
            self.compact();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.live[key] = Some((at, seq));
        self.heap.push(Reverse(Due { at, seq, key }));
    }

    /// Connection `key` needs no look (it closed): its entry goes stale.
    pub(crate) fn cancel(&mut self, key: usize) {
        if let Some(slot) = self.live.get_mut(key)
            && slot.take().is_some()
        {
            self.scheduled -= 1;
        }
    }

    /// Whether connection `key` is to be looked at no later than `at`.
    #[inline]
    pub(crate) fn is_scheduled_by(&self, key: usize, at: Instant) -> bool {
        matches!(self.live.get(key), Some(Some((t, _))) if *t <= at)
    }

    /// When connection `key` is to be looked at, if it is scheduled.
    #[cfg(test)]
    pub(crate) fn scheduled_at(&self, key: usize) -> Option<Instant> {
        self.live.get(key).copied().flatten().map(|(at, _)| at)
    }

    /// The earliest instant in the heap. It may belong to a stale entry (then the look
    /// it calls for finds nothing due), never later than the earliest live one.
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(due)| due.at)
    }

    /// Takes the next connection due at `now` off the heap (its live entry is gone: it
    /// must be scheduled again if it still needs a look), skipping stale entries; `None`
    /// when nothing more is due. Also drops stale entries at the top that are not due, so
    /// [`Self::earliest`] is then exact.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(&Reverse(due)) = self.heap.peek() {
            let live = self.live.get(due.key).copied().flatten() == Some((due.at, due.seq));
            if live && due.at > now {
                return None;
            }
            self.heap.pop();
            if live {
                self.live[due.key] = None;
                self.scheduled -= 1;
                return Some(due.key);
            }
        }
        None
    }

    /// Entries in the heap, live and stale.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the stale entries (in place: no allocation).
    fn compact(&mut self) {
        let live = &self.live;
        self.heap.retain(|Reverse(due)| live.get(due.key).copied().flatten() == Some((due.at, due.seq)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(ms: u64) -> Instant {
        thread_local!(static BASE: Instant = Instant::now());
        BASE.with(|b| *b + Duration::from_millis(ms))
    }

    fn drain(d: &mut Deadlines, now: Instant) -> Vec<usize> {
        std::iter::from_fn(|| d.pop_due(now)).collect()
    }

    #[test]
    fn pops_in_order_and_only_what_is_due() {
        let mut d = Deadlines::with_capacity(4);
        for (key, ms) in [(0, 30), (1, 10), (2, 20), (3, 40)] {
            d.schedule(key, t(ms));
        }
        assert_eq!(d.earliest(), Some(t(10)));
        assert_eq!(drain(&mut d, t(5)), Vec::<usize>::new());
        assert_eq!(drain(&mut d, t(30)), vec![1, 2, 0]);
        assert_eq!(d.earliest(), Some(t(40)));
        assert_eq!(drain(&mut d, t(100)), vec![3]);
        assert_eq!(d.earliest(), None);
    }

    #[test]
    fn a_later_instant_keeps_the_earlier_entry() {
        let mut d = Deadlines::with_capacity(1);
        d.schedule(0, t(10));
        d.schedule(0, t(50));
        assert_eq!(d.scheduled_at(0), Some(t(10)));
        assert_eq!(d.len(), 1);
        // It pops at the earlier instant; the caller schedules the later one again.
        assert_eq!(drain(&mut d, t(10)), vec![0]);
        assert_eq!(d.scheduled_at(0), None);
        d.schedule(0, t(50));
        assert_eq!(drain(&mut d, t(49)), Vec::<usize>::new());
        assert_eq!(drain(&mut d, t(50)), vec![0]);
    }

    #[test]
    fn an_earlier_instant_replaces_the_entry_and_the_old_one_is_skipped() {
        let mut d = Deadlines::with_capacity(2);
        d.schedule(0, t(50));
        d.schedule(1, t(30));
        d.schedule(0, t(10));
        assert_eq!(d.scheduled_at(0), Some(t(10)));
        assert_eq!(d.len(), 3);
        assert_eq!(drain(&mut d, t(100)), vec![0, 1], "the stale entry at 50 is skipped");
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_cancelled_key_never_pops_even_when_reused() {
        let mut d = Deadlines::with_capacity(2);
        d.schedule(0, t(10));
        d.schedule(1, t(20));
        d.cancel(0);
        // A new connection takes key 0 with a later deadline: the old entry stays stale.
        d.schedule(0, t(40));
        assert_eq!(drain(&mut d, t(30)), vec![1]);
        assert_eq!(drain(&mut d, t(40)), vec![0]);
        d.cancel(0);
        d.cancel(7);
        assert_eq!(drain(&mut d, t(100)), Vec::<usize>::new());
    }

    #[test]
    fn stale_entries_at_the_top_are_dropped_so_the_earliest_is_exact() {
        let mut d = Deadlines::with_capacity(2);
        d.schedule(0, t(10));
        d.schedule(1, t(50));
        d.cancel(0);
        assert_eq!(d.earliest(), Some(t(10)), "may be early");
        assert_eq!(d.pop_due(t(20)), None);
        assert_eq!(d.earliest(), Some(t(50)));
    }

    #[test]
    fn many_equal_deadlines_pop_in_the_order_scheduled() {
        let mut d = Deadlines::with_capacity(1000);
        for key in (0..1000).rev() {
            d.schedule(key, t(10));
        }
        assert_eq!(drain(&mut d, t(9)), Vec::<usize>::new());
        assert_eq!(drain(&mut d, t(10)), (0..1000).rev().collect::<Vec<_>>());
    }

    #[test]
    fn rescheduling_earlier_over_and_over_stays_bounded_and_never_grows_past_the_mark() {
        let mut d = Deadlines::with_capacity(8);
        let capacity = d.heap.capacity();
        for round in 0..10_000u64 {
            for key in 0..8 {
                // Each deadline is earlier than the last: a push every time.
                d.schedule(key, t(1_000_000 - round));
            }
            assert!(d.len() <= 2 * 8 + SLACK + 1, "{} entries", d.len());
        }
        assert_eq!(d.heap.capacity(), capacity, "no growth past the preallocated mark");
        assert_eq!(drain(&mut d, t(2_000_000)).len(), 8);
    }
}
