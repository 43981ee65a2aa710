//! The small per-thread memos of the DPoP path (a worker is one thread): a few direct-mapped
//! slots, each holding the last entry whose key landed there. The caller picks the slot (a hash of
//! the key) and decides, from the entry itself, whether it is for the identical key; a newer entry
//! takes the slot. A memo that is in use (a re-entrant call) is neither read nor written.

use std::cell::RefCell;
use std::thread::LocalKey;

/// `N` slots, allocated on first use.
pub(super) struct Memo<T, const N: usize> {
    slots: Vec<Option<T>>,
}

impl<T, const N: usize> Memo<T, N> {
    pub(super) const fn new() -> Self {
        Memo { slots: Vec::new() }
    }
}

/// A memo kept per thread.
pub(super) type ThreadMemo<T, const N: usize> = LocalKey<RefCell<Memo<T, N>>>;

/// What `known` makes of the entry in slot `at` (modulo `N`), if there is one.
pub(super) fn recall<T, R, const N: usize>(
    memo: &'static ThreadMemo<T, N>,
    at: usize,
    known: impl FnOnce(&T) -> Option<R>,
) -> Option<R> {
    memo.with(|memo| {
        let memo = memo.try_borrow().ok()?;
        memo.slots.get(at % N)?.as_ref().and_then(known)
    })
}

/// Puts `entry` in slot `at` (modulo `N`), in place of what was there.
pub(super) fn remember<T, const N: usize>(memo: &'static ThreadMemo<T, N>, at: usize, entry: T) {
    memo.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return;
        };
        if memo.slots.is_empty() {
            memo.slots.resize_with(N, || None);
        }
        if let Some(place) = memo.slots.get_mut(at % N) {
            *place = Some(entry);
        }
    });
}

/// FNV-1a of `text`: a slot number that only spreads keys (equality decides).
pub(super) fn fnv(text: &str) -> usize {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // Only the low bits matter to a slot number.
    hash as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static TEST: RefCell<Memo<(String, u32), 4>> = const { RefCell::new(Memo::new()) };
    }

    fn find(key: &str) -> Option<u32> {
        recall(&TEST, fnv(key), |(k, v)| (k == key).then_some(*v))
    }

    #[test]
    fn an_entry_answers_only_for_its_key_and_a_newer_one_takes_its_slot() {
        assert_eq!(find("a"), None);
        remember(&TEST, fnv("a"), ("a".to_string(), 1));
        assert_eq!(find("a"), Some(1));
        assert_eq!(find("b"), None);
        // Slot numbers wrap: 4 and 8 are slot 0.
        remember(&TEST, 4, ("x".to_string(), 2));
        assert_eq!(recall(&TEST, 8, |(k, v)| (k == "x").then_some(*v)), Some(2));
        remember(&TEST, 0, ("y".to_string(), 3));
        assert_eq!(recall(&TEST, 4, |(k, _)| (k == "x").then_some(())), None);
    }
}
