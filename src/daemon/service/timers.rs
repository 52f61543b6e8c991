//! The daemon's schedule as a timer structure: queue id → when it is next
//! due, ordered by that time, so the service loop finds what is due in
//! O(log n) per message instead of walking every queued message on every
//! wake-up (one per finished delivery: a drain was O(n²)).
//!
//! An entry is *armed* until [`Timers::take_due`] (or [`Timers::take_all`],
//! a flush) hands it out; it then stays known (its time kept) but is not
//! handed out again until [`Timers::set`] or [`Timers::rearm`] arms it once
//! more — which the loop does when the attempt's result arrives (every
//! message handed to the pool comes back as exactly one result), so a
//! message in delivery is never offered twice.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

/// A due time (unix seconds) with a total order.
#[derive(Debug, Clone, Copy)]
struct At(f64);

impl PartialEq for At {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0) == Ordering::Equal
    }
}
impl Eq for At {}
impl PartialOrd for At {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for At {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Queue id → next due time, ordered by due time.
#[derive(Debug, Default)]
pub struct Timers {
    /// Every known id: its due time and whether it is armed (in `order`).
    known: HashMap<String, (f64, bool)>,
    /// The armed entries, earliest first.
    order: BTreeSet<(At, String)>,
}

impl Timers {
    /// An empty schedule.
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Replace everything with `entries` (all armed).
    pub fn replace_all(&mut self, entries: impl IntoIterator<Item = (String, f64)>) {
        self.known.clear();
        self.order.clear();
        for (id, at) in entries {
            self.set(id, at);
        }
    }

    /// `id` is due at `at` (armed; replaces what was known of it).
    pub fn set(&mut self, id: String, at: f64) {
        if let Some(&(old, armed)) = self.known.get(&id)
            && armed
        {
            if old.total_cmp(&at) == Ordering::Equal {
                return;
            }
            self.order.remove(&(At(old), id.clone()));
        }
        self.order.insert((At(at), id.clone()));
        self.known.insert(id, (at, true));
    }

    /// Arm `id` again at the time it had (nothing if unknown or armed).
    pub fn rearm(&mut self, id: &str) {
        if let Some((at, armed)) = self.known.get_mut(id)
            && !*armed
        {
            *armed = true;
            self.order.insert((At(*at), id.to_string()));
        }
    }

    /// Forget `id`.
    pub fn remove(&mut self, id: &str) {
        if let Some((at, armed)) = self.known.remove(id)
            && armed
        {
            self.order.remove(&(At(at), id.to_string()));
        }
    }

    /// Hand out (disarm) every armed entry due at or before `now`, earliest
    /// first, onto `out`.
    pub fn take_due(&mut self, now: f64, out: &mut Vec<String>) {
        while let Some((at, _)) = self.order.first() {
            if at.0 > now {
                break;
            }
            let Some((_, id)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.known.get_mut(&id) {
                e.1 = false;
            }
            out.push(id);
        }
    }

    /// Hand out (disarm) every armed entry, whatever its time (a flush).
    pub fn take_all(&mut self, out: &mut Vec<String>) {
        self.take_due(f64::INFINITY, out);
    }

    /// The earliest due time among the armed entries.
    pub fn next_at(&self) -> Option<f64> {
        self.order.first().map(|(at, _)| at.0)
    }

    /// How many ids are known.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(t: &mut Timers, now: f64) -> Vec<String> {
        let mut v = Vec::new();
        t.take_due(now, &mut v);
        v
    }

    #[test]
    fn hands_out_what_is_due_in_time_order_once() {
        let mut t = Timers::new();
        t.set("c".into(), 30.0);
        t.set("a".into(), 10.0);
        t.set("b".into(), 20.0);
        t.set("z".into(), 0.0);
        assert_eq!(t.next_at(), Some(0.0));
        assert_eq!(due(&mut t, 20.0), ["z", "a", "b"]);
        // handed out: not offered again until re-armed
        assert_eq!(due(&mut t, 25.0), Vec::<String>::new());
        assert_eq!(t.next_at(), Some(30.0));
        assert_eq!(t.len(), 4);
        t.rearm("a");
        t.rearm("c"); // armed already: no duplicate
        assert_eq!(due(&mut t, 100.0), ["a", "c"]);
        assert!(due(&mut t, 100.0).is_empty());
    }

    #[test]
    fn set_moves_and_remove_forgets() {
        let mut t = Timers::new();
        t.set("a".into(), 10.0);
        t.set("a".into(), 50.0);
        assert!(due(&mut t, 20.0).is_empty());
        assert_eq!(t.next_at(), Some(50.0));
        t.remove("a");
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_at(), None);
        t.rearm("a"); // unknown: nothing
        assert!(due(&mut t, 100.0).is_empty());
        // a handed-out entry is set again by its result
        t.set("b".into(), 1.0);
        assert_eq!(due(&mut t, 1.0), ["b"]);
        t.set("b".into(), 2.0);
        assert_eq!(due(&mut t, 1.5), Vec::<String>::new());
        assert_eq!(due(&mut t, 2.0), ["b"]);
        t.remove("b");
        t.set("c".into(), 5.0);
        let mut all = Vec::new();
        t.take_all(&mut all);
        assert_eq!(all, ["c"]);
        t.replace_all([("x".to_string(), 3.0), ("y".to_string(), 1.0)]);
        assert_eq!(t.len(), 2);
        assert_eq!(due(&mut t, 5.0), ["y", "x"]);
    }
}
