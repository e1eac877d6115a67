//! Remembers which warnings were already logged, so a busy gateway logs an
//! unpriced model once per process and an exceeded tracking budget once per
//! period instead of once per request.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub struct Notices {
    unpriced: Mutex<HashSet<String>>,
    /// Budget id → start of the last period it was reported for; one entry
    /// per budget, so the map stays as small as the budget table.
    tracking: Mutex<HashMap<String, i64>>,
}

impl Notices {
    /// True the first time `model` is seen.
    pub fn first_unpriced(&self, model: &str) -> bool {
        let mut seen = lock(&self.unpriced);
        !seen.contains(model) && seen.insert(model.to_owned())
    }

    /// True the first time `budget` is reported in the period starting at `period_start`.
    pub fn first_in_period(&self, budget: &str, period_start: i64) -> bool {
        let mut seen = lock(&self.tracking);
        if seen.get(budget) == Some(&period_start) {
            return false;
        }
        seen.insert(budget.to_owned(), period_start);
        true
    }
}

/// A set of strings stays consistent whatever panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_model_and_per_period() {
        let n = Notices::default();
        assert!(n.first_unpriced("m"));
        assert!(!n.first_unpriced("m"));
        assert!(n.first_in_period("b", 60));
        assert!(!n.first_in_period("b", 60));
        assert!(n.first_in_period("b", 120));
        assert!(n.first_in_period("c", 120));
    }
}
