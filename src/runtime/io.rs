//! The I/O thread pool: each thread owns a `mio::Poll` and the connection handlers placed on it.
//! Handlers are driven by readiness, by wake-ups (new spool data, commands) and by a coarse tick
//! for timeouts. No handler ever blocks; a thread never owns more than its share of connections.
//! What goes wrong on a thread itself (a failed poll, a socket that cannot be registered) is
//! reported through the pool's [`Logger`].

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use mio::{Events, Poll, Registry, Token, Waker};

use crate::runtime::log::Logger;

/// How often handlers get `on_tick` for their timers, at most.
pub const TICK: Duration = Duration::from_millis(50);

const WAKER: Token = Token(usize::MAX);

/// What a handler wants after being driven.
pub enum Flow {
    Continue,
    /// Deregister and drop the handler.
    Close,
    /// Put another handler in this one's place (an accepted connection once its session is known).
    Replace(Box<dyn Handler>),
}

/// A command for one handler, addressed by the key it was added with.
#[derive(Debug, Clone)]
pub enum Command {
    /// Abort the session: send `#` if a message is under way, then close. The reason is reported.
    Abort { reason: String, code: u16 },
}

/// One connection (or listener) on an I/O thread.
pub trait Handler: Send {
    /// Registers the handler's socket with `token`.
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()>;
    /// Deregisters the socket (called before the handler is dropped or replaced).
    fn deregister(&mut self, registry: &Registry);
    /// The socket is readable and/or writable.
    fn on_ready(&mut self, now: Instant, readable: bool, writable: bool, ctx: &mut Ctx) -> Flow;
    /// Woken: spool data may have grown. Cheap when nothing changed.
    fn on_wake(&mut self, now: Instant, ctx: &mut Ctx) -> Flow;
    /// Periodic, every [`TICK`] at most: timers.
    fn on_tick(&mut self, now: Instant, ctx: &mut Ctx) -> Flow;
    /// A command from the engine.
    fn on_command(&mut self, cmd: Command, now: Instant, ctx: &mut Ctx) -> Flow;
    /// A key the engine can address commands to (delivery id), if any.
    fn key(&self) -> Option<u64> {
        None
    }
}

/// What a handler may do while being driven: add other handlers, on its own thread or on the
/// pool's least loaded one (an accepted connection).
pub struct Ctx {
    added: Vec<Box<dyn Handler>>,
    placer: Arc<Placer>,
}

impl Ctx {
    fn new(placer: &Arc<Placer>) -> Ctx {
        Ctx {
            added: Vec::new(),
            placer: placer.clone(),
        }
    }

    /// Adds `h` to this thread.
    pub fn add(&mut self, h: Box<dyn Handler>) {
        self.added.push(h);
    }

    /// Adds `h` to the least loaded thread of the pool (this one among them), as
    /// [`IoPool::add`] does: a listener's connections spread over every thread.
    pub fn add_anywhere(&mut self, h: Box<dyn Handler>) {
        self.placer.place(h);
    }
}

enum Msg {
    Add(Box<dyn Handler>),
    Command(u64, Command),
    Shutdown,
}

/// One thread's queue, wakers and handler count, as the pool and the threads themselves reach
/// it.
struct Slot {
    tx: Sender<Msg>,
    waker: Arc<Waker>,
    /// Set by [`IoWaker::wake`]: spool data may have grown.
    data_woken: Arc<AtomicBool>,
    load: AtomicUsize,
}

/// Places handlers on the least loaded thread (round-robin among equals).
struct Placer {
    slots: Vec<Slot>,
    next: AtomicUsize,
}

impl Placer {
    fn place(&self, h: Box<dyn Handler>) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        let mut best = start % n;
        let mut best_load = usize::MAX;
        for k in 0..n {
            let i = (start + k) % n;
            let l = self.slots[i].load.load(Ordering::Relaxed);
            if l < best_load {
                best = i;
                best_load = l;
            }
        }
        let t = &self.slots[best];
        t.load.fetch_add(1, Ordering::Relaxed);
        if t.tx.send(Msg::Add(h)).is_ok() {
            let _ = t.waker.wake();
        }
    }
}

/// The pool of I/O threads; [`IoWaker`] wakes them from other threads.
pub struct IoPool {
    threads: Vec<JoinHandle<()>>,
    placer: Arc<Placer>,
}

impl IoPool {
    /// Starts `n` I/O threads (at least one) named `msrpcast-io-<i>`, reporting their own
    /// failures to `logger`.
    pub fn start(n: usize, logger: Logger) -> io::Result<IoPool> {
        let n = n.max(1);
        let mut polls = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = unbounded();
            let slot = Slot {
                tx,
                waker,
                data_woken: Arc::new(AtomicBool::new(false)),
                load: AtomicUsize::new(0),
            };
            polls.push((poll, rx));
            slots.push(slot);
        }
        // Every thread can place handlers anywhere (its `Ctx`): each holds the placer, which
        // holds every thread's queue; the threads end on `Msg::Shutdown`, not on a closed queue.
        let placer = Arc::new(Placer {
            slots,
            next: AtomicUsize::new(0),
        });
        let mut pool = IoPool {
            threads: Vec::with_capacity(n),
            placer,
        };
        for (i, (poll, rx)) in polls.into_iter().enumerate() {
            let t = IoThread {
                poll,
                rx,
                slot: i,
                handlers: HashMap::new(),
                keys: HashMap::new(),
                next_token: 0,
                logger: logger.clone(),
                placer: pool.placer.clone(),
            };
            // On failure, dropping `pool` stops the threads started so far.
            let join = crate::runtime::spawn(format!("msrpcast-io-{i}"), move || t.run())?;
            pool.threads.push(join);
        }
        Ok(pool)
    }

    /// Places a handler on the least loaded thread (round-robin among equals).
    pub fn add(&self, h: Box<dyn Handler>) {
        self.placer.place(h);
    }

    /// Sends a command to the handler with `key`, wherever it lives.
    pub fn command(&self, key: u64, cmd: Command) {
        for t in &self.placer.slots {
            if t.tx.send(Msg::Command(key, cmd.clone())).is_ok() {
                let _ = t.waker.wake();
            }
        }
    }

    /// A cheap, cloneable waker for all threads (spool data arrived).
    pub fn waker(&self) -> IoWaker {
        IoWaker {
            threads: self
                .placer
                .slots
                .iter()
                .map(|s| (s.waker.clone(), s.data_woken.clone()))
                .collect(),
        }
    }

    /// Number of handlers per thread (for status and tests).
    pub fn loads(&self) -> Vec<usize> {
        self.placer
            .slots
            .iter()
            .map(|t| t.load.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        for t in &self.placer.slots {
            let _ = t.tx.send(Msg::Shutdown);
            let _ = t.waker.wake();
        }
        for j in self.threads.drain(..) {
            let _ = j.join();
        }
    }
}

/// Wakes every I/O thread so that handlers look at their spool files again.
#[derive(Clone)]
pub struct IoWaker {
    threads: Vec<(Arc<Waker>, Arc<AtomicBool>)>,
}

impl IoWaker {
    pub fn wake(&self) {
        for (w, flag) in &self.threads {
            // Only the first wake-up between two loop turns costs a syscall.
            if !flag.swap(true, Ordering::AcqRel) {
                let _ = w.wake();
            }
        }
    }
}

struct IoThread {
    poll: Poll,
    rx: Receiver<Msg>,
    /// This thread's entry in `placer.slots` (its wake flag and handler count).
    slot: usize,
    handlers: HashMap<usize, Box<dyn Handler>>,
    keys: HashMap<u64, usize>,
    next_token: usize,
    logger: Logger,
    placer: Arc<Placer>,
}

impl IoThread {
    fn slot(&self) -> &Slot {
        &self.placer.slots[self.slot]
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.logger.error(
                        module_path!(),
                        format_args!(
                            "I/O thread poll failed, {} connection(s) dropped: {e}",
                            self.handlers.len()
                        ),
                    );
                    return;
                }
            }
            let now = Instant::now();
            let mut ctx = Ctx::new(&self.placer);
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                let tok = ev.token().0;
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                let writable = ev.is_writable() || ev.is_write_closed();
                self.drive(tok, &mut ctx, |h, ctx| {
                    h.on_ready(now, readable, writable, ctx)
                });
            }
            // Commands and new handlers.
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Add(h)) => self.insert(h),
                    Ok(Msg::Command(key, cmd)) => {
                        if let Some(&tok) = self.keys.get(&key) {
                            self.drive(tok, &mut ctx, |h, ctx| h.on_command(cmd, now, ctx));
                        }
                    }
                    Ok(Msg::Shutdown) => return self.shutdown(),
                    Err(_) => break,
                }
            }
            if self.slot().data_woken.swap(false, Ordering::AcqRel) {
                self.drive_all(&mut ctx, |h, ctx| h.on_wake(now, ctx));
            }
            if now >= next_tick {
                next_tick = now + TICK;
                self.drive_all(&mut ctx, |h, ctx| h.on_tick(now, ctx));
            }
            for h in ctx.added.drain(..) {
                self.slot().load.fetch_add(1, Ordering::Relaxed);
                self.insert(h);
            }
        }
    }

    fn insert(&mut self, mut h: Box<dyn Handler>) {
        let tok = self.next_token;
        self.next_token = self.next_token.wrapping_add(1) % (usize::MAX - 1);
        if let Err(e) = h.register(self.poll.registry(), Token(tok)) {
            self.logger.error(
                module_path!(),
                format_args!("cannot register a connection with the I/O thread: {e}"),
            );
            self.slot().load.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        if let Some(k) = h.key() {
            self.keys.insert(k, tok);
        }
        self.handlers.insert(tok, h);
        // Edge-triggered: give the new handler a first turn so it can start writing.
        let now = Instant::now();
        let mut ctx = Ctx::new(&self.placer);
        self.drive(tok, &mut ctx, |h, ctx| h.on_ready(now, true, true, ctx));
        for h in ctx.added {
            self.slot().load.fetch_add(1, Ordering::Relaxed);
            self.insert(h);
        }
    }

    fn drive(
        &mut self,
        tok: usize,
        ctx: &mut Ctx,
        f: impl FnOnce(&mut dyn Handler, &mut Ctx) -> Flow,
    ) {
        let Some(h) = self.handlers.get_mut(&tok) else {
            return;
        };
        match f(h.as_mut(), ctx) {
            Flow::Continue => {}
            Flow::Close => self.remove(tok),
            Flow::Replace(new) => {
                self.remove(tok);
                ctx.added.push(new);
            }
        }
    }

    fn drive_all(&mut self, ctx: &mut Ctx, mut f: impl FnMut(&mut dyn Handler, &mut Ctx) -> Flow) {
        let toks: Vec<usize> = self.handlers.keys().copied().collect();
        for tok in toks {
            self.drive(tok, ctx, &mut f);
        }
    }

    fn remove(&mut self, tok: usize) {
        if let Some(mut h) = self.handlers.remove(&tok) {
            h.deregister(self.poll.registry());
            if let Some(k) = h.key() {
                self.keys.remove(&k);
            }
            self.slot().load.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn shutdown(mut self) {
        let now = Instant::now();
        let toks: Vec<usize> = self.handlers.keys().copied().collect();
        let mut ctx = Ctx::new(&self.placer);
        for tok in toks {
            self.drive(tok, &mut ctx, |h, ctx| {
                h.on_command(
                    Command::Abort {
                        reason: "engine stopped".into(),
                        code: 503,
                    },
                    now,
                    ctx,
                )
            });
            self.remove(tok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::log::Level;

    /// A test handler that registers nothing. `fails`: its registration fails. `spread`: like a
    /// listener, on its first turn it adds that many handlers "anywhere" (each a plain one that
    /// stays until the pool ends).
    #[derive(Default)]
    struct Probe {
        fails: bool,
        spread: usize,
    }

    impl Handler for Probe {
        fn register(&mut self, _: &Registry, _: Token) -> io::Result<()> {
            if self.fails {
                return Err(io::Error::other("no such socket"));
            }
            Ok(())
        }
        fn deregister(&mut self, _: &Registry) {}
        fn on_ready(&mut self, _: Instant, _: bool, _: bool, ctx: &mut Ctx) -> Flow {
            for _ in 0..std::mem::take(&mut self.spread) {
                ctx.add_anywhere(Box::new(Probe::default()));
            }
            Flow::Continue
        }
        fn on_wake(&mut self, _: Instant, _: &mut Ctx) -> Flow {
            Flow::Continue
        }
        fn on_tick(&mut self, _: Instant, _: &mut Ctx) -> Flow {
            Flow::Continue
        }
        fn on_command(&mut self, _: Command, _: Instant, _: &mut Ctx) -> Flow {
            Flow::Continue
        }
    }

    #[test]
    fn handlers_added_anywhere_spread_over_the_threads() {
        let pool = IoPool::start(3, Logger::queue(Level::Debug, 8, None)).unwrap();
        pool.add(Box::new(Probe {
            spread: 20,
            ..Probe::default()
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.loads().iter().sum::<usize>() != 21 {
            assert!(Instant::now() < deadline, "load {:?}", pool.loads());
            std::thread::yield_now();
        }
        // 21 handlers (the spreader and its 20) on 3 threads: 7 each.
        assert_eq!(pool.loads(), [7, 7, 7]);
    }

    #[test]
    fn a_registration_failure_goes_to_the_logger() {
        let logger = Logger::queue(Level::Debug, 8, None);
        let pool = IoPool::start(1, logger.clone()).unwrap();
        pool.add(Box::new(Probe {
            fails: true,
            ..Probe::default()
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        let record = loop {
            if let Some(r) = logger.pop() {
                break r;
            }
            assert!(Instant::now() < deadline, "no log record within 10 s");
            std::thread::yield_now();
        };
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.target, "msrpcast::runtime::io");
        assert!(
            record.message.contains("no such socket"),
            "{}",
            record.message
        );
        // The failed handler is not counted as a connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.loads() != [0] {
            assert!(Instant::now() < deadline, "load {:?}", pool.loads());
            std::thread::yield_now();
        }
    }
}
