//! openraft's `AsyncRuntime` on madsim: spawns on the current simulated node (so killing a
//! node kills its Raft tasks), sleeps in virtual time and draws randomness from the seed.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use openraft_rt::AsyncRuntime;
use openraft_rt::OptionalSend;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::det_watch::DetWatch;

/// The madsim runtime adapter. `new`/`block_on` exist only for openraft's own test helpers.
pub struct MadsimRuntime {
    rt: ::madsim::runtime::Runtime,
}

impl std::fmt::Debug for MadsimRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MadsimRuntime").finish()
    }
}

pin_project_lite::pin_project! {
    /// A nameable timeout future: `madsim::time::timeout` returns an `impl Future`, but the
    /// runtime trait needs a concrete type. The inner future is polled before the timer so a
    /// result that is ready wins over an expiry at the same instant.
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: ::madsim::time::Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, ::madsim::time::error::Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(::madsim::time::error::Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRuntime for MadsimRuntime {
    type JoinError = ::madsim::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = ::madsim::task::JoinHandle<T>;
    type Sleep = ::madsim::time::Sleep;
    type Instant = std::time::Instant;
    type TimeoutError = ::madsim::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = SmallRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        ::madsim::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        ::madsim::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        ::madsim::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            fut: future,
            sleep: ::madsim::time::sleep(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            fut: future,
            sleep: ::madsim::time::sleep_until(deadline),
        }
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        // Election timeouts come from here: route them through the simulation seed.
        SmallRng::seed_from_u64(::madsim::rand::random())
    }

    type Mpsc = openraft_rt_tokio::TokioMpsc;
    // tokio's watch picks a notify shard with a process-global RNG, which breaks replay.
    type Watch = DetWatch;
    type Oneshot = openraft_rt_tokio::TokioOneshot;
    type Mutex<T: OptionalSend + 'static> = openraft_rt_tokio::TokioMutex<T>;

    fn new(_threads: usize) -> Self {
        Self {
            rt: ::madsim::runtime::Runtime::new(),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.rt.block_on(future)
    }

    #[allow(clippy::manual_async_fn)] // the trait's signature, spelled as declared
    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, std::io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // No OS threads in the simulator: run the closure inline.
        async move { Ok(f()) }
    }
}
