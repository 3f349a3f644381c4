//! `msrpcast send`: one file to a list of MSRP URIs through the library's engine, reporting
//! progress per receiver as bars (terminal), plain lines, or JSON events.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use msrpcast::config::Config;
use msrpcast::json::Object;
use msrpcast::roster::DeliveryState;
use msrpcast::runtime::Engine;

use crate::{exit, Fail, SetArgs};

#[derive(Args)]
pub struct SendArgs {
    /// The file to send.
    file: PathBuf,
    /// A receiver's MSRP URI, or a space-separated path (relays first) as `msrpcast receive
    /// --relay` prints it. Repeatable.
    #[arg(long, value_name = "MSRP_URI", required = true)]
    to: Vec<String>,
    /// Body bytes per MSRP chunk on every path, direct or through relays (sets both chunk_bytes
    /// and direct_chunk_bytes).
    #[arg(long, value_name = "N")]
    chunk_bytes: Option<String>,
    /// Give up on receivers not done after this many milliseconds (they count as failed).
    #[arg(long, value_name = "MS", default_value_t = 600_000)]
    timeout_ms: u64,
    /// One JSON object per line on stdout for each event (start, state, progress, result,
    /// summary) instead of the plain lines and bars.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    set: SetArgs,
}

/// How often progress is shown (bars, JSON `progress` events, plain lines at most this often).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where the events go.
enum Out {
    Bars(MultiProgress, Vec<ProgressBar>),
    Plain,
    Json,
}

struct Receiver {
    uri: String,
    key: String,
    state: &'static str,
    bytes: u64,
    /// Last progress shown (plain lines: per 10 %).
    shown: u64,
    /// `bytes` moved since progress was last shown (shown at the next PROGRESS_EVERY tick).
    moved: bool,
}

pub fn run(a: SendArgs) -> Result<u8, Fail> {
    let file = a.file.display().to_string();
    let mut cfg = Config::default();
    let spool = std::env::temp_dir().join(format!("msrpcast-send-{}", std::process::id()));
    let set =
        |cfg: &mut Config, k: &str, v: &str| cfg.set(k, v).map_err(|e| Fail::usage(e.to_string()));
    set(&mut cfg, "spool_dir", &spool.to_string_lossy())?;
    set(&mut cfg, "msrp_listen", "127.0.0.1:0")?;
    set(&mut cfg, "log_level", "warn")?;
    if let Some(c) = &a.chunk_bytes {
        set(&mut cfg, "chunk_bytes", c)?;
        set(&mut cfg, "direct_chunk_bytes", c)?;
    }
    a.set.apply(&mut cfg)?;
    let mut f = std::fs::File::open(&a.file).map_err(|e| Fail::start(format!("{file}: {e}")))?;
    let size = f
        .metadata()
        .map_err(|e| Fail::start(format!("{file}: {e}")))?
        .len();
    let engine = Engine::start(cfg).map_err(|e| Fail::start(e.to_string()))?;
    let result = deliver(&a, &engine, &mut f, size);
    engine.stop();
    let _ = std::fs::remove_dir_all(&spool);
    result
}

fn deliver(a: &SendArgs, engine: &Engine, f: &mut std::fs::File, size: u64) -> Result<u8, Fail> {
    let file = a.file.display().to_string();
    let conf = "cli";
    let mut rx: Vec<Receiver> = Vec::new();
    for (i, uri) in a.to.iter().enumerate() {
        let key = format!("r{i}");
        engine
            .join_direct(conf, &key, uri)
            .map_err(|e| Fail::usage(format!("--to {uri}: {e}")))?;
        rx.push(Receiver {
            uri: uri.clone(),
            key,
            state: "queued",
            bytes: 0,
            shown: 0,
            moved: false,
        });
    }
    // Joins are queued; wait until the roster has them all.
    let t0 = Instant::now();
    while engine
        .roster()
        .conference(conf)
        .map(|c| c.participants.len())
        .unwrap_or(0)
        < rx.len()
    {
        if t0.elapsed() > Duration::from_secs(5) {
            return Err(Fail::start("the engine did not take the receivers"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let name = a
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut out = if a.json {
        Out::Json
    } else if std::io::stderr().is_terminal() {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .map_err(|e| Fail::start(e.to_string()))?
        .progress_chars("=> ");
        let bars = rx
            .iter()
            .map(|r| {
                let b = mp.add(ProgressBar::new(size));
                b.set_style(style.clone());
                b.set_prefix(r.uri.clone());
                b.set_message("queued");
                b
            })
            .collect();
        Out::Bars(mp, bars)
    } else {
        Out::Plain
    };
    if let Out::Json = out {
        json_line(|o| {
            o.str("event", "start")
                .str("file", &name)
                .u64("bytes", size)
                .array("receivers", &rx, |o, r| {
                    o.push_str(&msrpcast::json::escape(&r.uri))
                });
        });
    }
    let mut up = engine
        .upload(conf, &name, "application/octet-stream", Some(size))
        .map_err(|e| Fail::start(e.to_string()))?;
    let transfer = up.transfer;
    // The file is spooled on its own thread: deliveries (and their bars) move meanwhile.
    let spooled = std::thread::scope(|s| {
        let spooler = s.spawn(move || -> Result<(), String> {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).map_err(|e| format!("{file}: {e}"))?;
                if n == 0 {
                    break;
                }
                up.append(&buf[..n]).map_err(|e| e.to_string())?;
            }
            up.finish().map(|_| ()).map_err(|e| e.to_string())
        });
        let deadline = Instant::now() + Duration::from_millis(a.timeout_ms);
        let mut last_shown = Instant::now() - PROGRESS_EVERY;
        let final_snapshot = loop {
            let t = engine.roster().transfer(transfer);
            let Some(t) = t else {
                break None;
            };
            let now = Instant::now();
            let show_progress = now.duration_since(last_shown) >= PROGRESS_EVERY;
            if show_progress {
                last_shown = now;
            }
            for (i, r) in rx.iter_mut().enumerate() {
                let Some(d) = t.deliveries.iter().find(|d| d.participant == r.key) else {
                    continue;
                };
                let bytes = match &d.state {
                    DeliveryState::Sending { bytes, .. } => *bytes,
                    DeliveryState::Done => size,
                    _ => r.bytes,
                };
                let state = d.state.name();
                if state != r.state {
                    r.state = state;
                    r.bytes = bytes;
                    r.moved = false;
                    show_state(&mut out, i, r, &d.state, size);
                } else if bytes != r.bytes {
                    r.bytes = bytes;
                    r.moved = true;
                }
                // Bytes that moved between two ticks are shown at the next tick (not only when
                // they happen to move on the tick itself).
                if r.moved && show_progress {
                    r.moved = false;
                    show_bytes(&mut out, i, r, size);
                }
            }
            let all_ended = t.deliveries.len() == rx.len()
                && t.deliveries.iter().all(|d| d.state.is_terminal());
            if all_ended || now > deadline {
                break Some(t);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let spooled = spooler
            .join()
            .unwrap_or_else(|_| Err("the spooling thread panicked".into()));
        (spooled, final_snapshot)
    });
    let (spooled, t) = spooled;
    let t = t.ok_or_else(|| Fail::start("the transfer vanished from the roster"))?;
    if let Err(e) = spooled {
        // The deliveries say how that ended for each receiver; the reason is worth a line.
        eprintln!("msrpcast: reading or spooling {}: {e}", a.file.display());
    }
    if let Out::Bars(mp, bars) = &out {
        for b in bars {
            if !b.is_finished() {
                b.abandon();
            }
        }
        let _ = mp.clear();
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut ok_count = 0usize;
    for r in &rx {
        let d = t.deliveries.iter().find(|d| d.participant == r.key);
        let (ok, code, reason) = match d.map(|d| &d.state) {
            Some(DeliveryState::Done) => (true, None, String::new()),
            Some(DeliveryState::Failed { reason, code }) => (false, *code, reason.clone()),
            Some(other) => (false, None, format!("timed out while {}", other.name())),
            None => (false, None, "never started".into()),
        };
        ok_count += usize::from(ok);
        match out {
            Out::Json => {
                json_line(|o| {
                    o.str("event", "result")
                        .str("receiver", &r.uri)
                        .bool("ok", ok)
                        .u64("bytes", if ok { size } else { r.bytes })
                        .opt_u64("code", code.map(u64::from))
                        .opt_str("reason", (!ok).then_some(reason.as_str()));
                });
            }
            _ if ok => println!("ok {} {size} bytes", r.uri),
            _ => match code {
                Some(c) => println!("failed {} {c} {reason}", r.uri),
                None => println!("failed {} - {reason}", r.uri),
            },
        }
    }
    if let Out::Json = out {
        json_line(|o| {
            o.str("event", "summary")
                .u64("bytes", size)
                .u64("receivers", rx.len() as u64)
                .u64("ok", ok_count as u64)
                .u64("failed", (rx.len() - ok_count) as u64)
                .raw("seconds", |o| o.push_str(&format!("{secs:.3}")));
        });
    } else {
        eprintln!(
            "msrpcast: {size} bytes to {} receivers in {secs:.3} s",
            rx.len()
        );
    }
    Ok(if ok_count == rx.len() {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn show_state(out: &mut Out, i: usize, r: &mut Receiver, state: &DeliveryState, size: u64) {
    let why = match state {
        DeliveryState::Failed { reason, code } => Some(match code {
            Some(c) => format!("{c} {reason}"),
            None => reason.clone(),
        }),
        _ => None,
    };
    match out {
        Out::Bars(_, bars) => {
            let b = &bars[i];
            b.set_position(r.bytes);
            match state {
                DeliveryState::Done => b.finish_with_message("done"),
                DeliveryState::Failed { .. } => {
                    b.abandon_with_message(format!("failed: {}", why.unwrap_or_default()))
                }
                DeliveryState::Cancelled => b.abandon_with_message("cancelled"),
                _ => b.set_message(r.state),
            }
        }
        Out::Plain => match why {
            Some(why) => eprintln!("msrpcast: {} {}: {why}", r.uri, r.state),
            None => eprintln!("msrpcast: {} {}", r.uri, r.state),
        },
        Out::Json => {
            json_line(|o| {
                o.str("event", "state")
                    .str("receiver", &r.uri)
                    .str("state", r.state)
                    .u64("bytes", r.bytes)
                    .u64("total", size)
                    .opt_str("reason", why.as_deref());
            });
        }
    }
}

fn show_bytes(out: &mut Out, i: usize, r: &mut Receiver, size: u64) {
    match out {
        Out::Bars(_, bars) => bars[i].set_position(r.bytes),
        Out::Plain => {
            // A line per tenth of the file.
            let tenth = (size / 10).max(1);
            if r.bytes / tenth > r.shown / tenth {
                r.shown = r.bytes;
                eprintln!(
                    "msrpcast: {} {} of {size} bytes ({}%)",
                    r.uri,
                    r.bytes,
                    r.bytes.saturating_mul(100) / size.max(1)
                );
            }
        }
        Out::Json => {
            json_line(|o| {
                o.str("event", "progress")
                    .str("receiver", &r.uri)
                    .u64("bytes", r.bytes)
                    .u64("total", size);
            });
        }
    }
}

/// Prints one JSON object on its own line (`--json`).
fn json_line(f: impl FnOnce(&mut Object<'_>)) {
    let mut s = String::new();
    let mut o = Object::begin(&mut s);
    f(&mut o);
    o.end();
    println!("{s}");
}
