//! The cell for state a worker's requests share. A wasm VM is one thread,
//! but the native dynamic module shares one state across Envoy's worker
//! threads and its main thread (which sends the background batches), so it
//! is a mutex in both builds: on wasm32 without threads std's mutex is a
//! flag, as cheap as a `RefCell`.

use std::sync::{Mutex, MutexGuard};

/// A mutex with `RefCell`'s method names, so the stages read the same as
/// they did over `RefCell`. A panic while it is held would have stopped the
/// VM in wasm; natively a poisoned lock is taken anyway rather than failing
/// every later request.
#[derive(Default)]
pub struct Lock<T>(Mutex<T>);

impl<T> Lock<T> {
    pub const fn new(value: T) -> Lock<T> {
        Lock(Mutex::new(value))
    }

    pub fn borrow(&self) -> MutexGuard<'_, T> {
        self.borrow_mut()
    }

    pub fn borrow_mut(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
