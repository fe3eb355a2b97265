//! A deterministic watch channel for openraft under madsim.
//!
//! tokio's watch wakes receivers through one of several notify shards chosen by a thread-local
//! RNG seeded from a process-global counter, so two runs of one seed in the same process wake
//! tasks in different orders. This channel keeps a plain list of wakers and wakes them in
//! registration order.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::RwLockReadGuard;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::task::Waker;

use openraft_rt::OptionalSend;
use openraft_rt::OptionalSync;
use openraft_rt::watch;

/// The deterministic watch implementation (see the module docs).
pub struct DetWatch;

struct Shared<T> {
    value: RwLock<T>,
    state: Mutex<State>,
    senders: AtomicUsize,
}

struct State {
    version: u64,
    closed: bool,
    waiters: Vec<Waker>,
}

impl<T> Shared<T> {
    fn bump_and_wake(&self) {
        let waiters = {
            let mut st = self.state.lock().unwrap();
            st.version += 1;
            std::mem::take(&mut st.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }
}

/// Sending half.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// Receiving half; remembers the last version it has seen.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::SeqCst);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            let waiters = {
                let mut st = self.shared.state.lock().unwrap();
                st.closed = true;
                std::mem::take(&mut st.waiters)
            };
            for w in waiters {
                w.wake();
            }
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl watch::Watch for DetWatch {
    type Sender<T: OptionalSend + OptionalSync> = Sender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = Receiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = RwLockReadGuard<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let shared = Arc::new(Shared {
            value: RwLock::new(init),
            state: Mutex::new(State {
                version: 0,
                closed: false,
                waiters: Vec::new(),
            }),
            senders: AtomicUsize::new(1),
        });
        (
            Sender {
                shared: shared.clone(),
            },
            Receiver { shared, seen: 0 },
        )
    }
}

impl<T> watch::WatchSender<DetWatch, T> for Sender<T>
where
    T: OptionalSend + OptionalSync,
{
    fn send(&self, value: T) -> Result<(), watch::SendError<T>> {
        // Like tokio: sending fails when every receiver is gone. The sender holds one Arc.
        if Arc::strong_count(&self.shared) <= self.shared.senders.load(Ordering::SeqCst) {
            return Err(watch::SendError(value));
        }
        *self.shared.value.write().unwrap() = value;
        self.shared.bump_and_wake();
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let modified = {
            let mut v = self.shared.value.write().unwrap();
            modify(&mut v)
        };
        if modified {
            self.shared.bump_and_wake();
        }
        modified
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.value.read().unwrap()
    }

    fn subscribe(&self) -> Receiver<T> {
        let seen = self.shared.state.lock().unwrap().version;
        Receiver {
            shared: self.shared.clone(),
            seen,
        }
    }
}

impl<T> watch::WatchReceiver<DetWatch, T> for Receiver<T>
where
    T: OptionalSend + OptionalSync,
{
    async fn changed(&mut self) -> Result<(), watch::RecvError> {
        std::future::poll_fn(|cx| {
            let mut st = self.shared.state.lock().unwrap();
            if st.version != self.seen {
                self.seen = st.version;
                return Poll::Ready(Ok(()));
            }
            if st.closed {
                return Poll::Ready(Err(watch::RecvError(())));
            }
            if !st.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                st.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.value.read().unwrap()
    }

    fn borrow_and_update(&mut self) -> RwLockReadGuard<'_, T> {
        self.seen = self.shared.state.lock().unwrap().version;
        self.shared.value.read().unwrap()
    }
}
