//! `msrpcast send`'s progress output as a user sees it: on a terminal, one indicatif bar per
//! receiver (run under a pseudo-terminal, driven by python3's `pty` module, and rendered by a
//! small terminal model below); without one, plain lines.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::proc::{scratch, text, Proc};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_msrpcast")
}

/// The file both tests send, and the receivers' read rates: the file is larger than what the
/// loopback socket buffers hold, so each receiver's pace shows for a second or more as bytes
/// between 0 and the total (a window wide enough for a loaded machine to draw at least once:
/// progress is drawn every 250 ms).
const SIZE: usize = 12_000_000;
const RATES: [u64; 2] = [4_000_000, 6_000_000];

/// `msrpcast receive` reading at most `rate` bytes/s (so that bars have time to move); returns
/// it, its URI and a reader of its `received ...` lines.
fn receiver(dir: &Path, session: &str, rate: u64) -> (Proc, String, BufReader<ChildStdout>) {
    let rate = format!("rate={rate}");
    common::proc::receiver(session, dir, &["--misbehave", &rate])
}

/// Waits for `child` with a hang guard (not a timing assertion).
fn wait_output(child: Child, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(o) => o.expect(what),
        Err(_) => {
            // Ends the process this test started, by its PID.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{what} did not end within 300 s");
        }
    }
}

/// Runs `args` on the slave side of a new pseudo-terminal of `cols` columns (stdin, stdout and
/// stderr all on it, TERM=xterm-256color) and returns everything written to the terminal and
/// the command's exit status. python3's `pty` module is the driver: no `unsafe` here.
fn run_in_pty(cols: u16, args: &[&str]) -> (Vec<u8>, i32) {
    const DRIVER: &str = r#"
import errno, fcntl, os, pty, struct, subprocess, sys, termios
cols, cmd = int(sys.argv[1]), sys.argv[2:]
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
env = dict(os.environ, TERM="xterm-256color")
env.pop("NO_COLOR", None)
p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
os.close(slave)
out = bytearray()
while True:
    try:
        b = os.read(master, 65536)
    except OSError as e:
        if e.errno != errno.EIO:
            raise
        break
    if not b:
        break
    out += b
rc = p.wait()
sys.stdout.buffer.write(out)
sys.stdout.flush()
sys.exit(rc if rc >= 0 else 128 - rc)
"#;
    let child = Command::new("python3")
        .args(["-c", DRIVER, &cols.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/install-deps.sh installs it)");
    let o = wait_output(child, "the pty driver");
    assert!(
        o.stderr.is_empty(),
        "pty driver failed: {}",
        text(&o.stderr)
    );
    (o.stdout, o.status.code().unwrap_or(-1))
}

/// Just enough of a VT100/xterm to replay indicatif's output: printable characters with
/// xterm's deferred autowrap, CR, LF, BS, and the CSI sequences for cursor moves and erasing
/// (SGR and private modes are ignored). Every row is recorded each time it is erased or the
/// replay ends, so `history` holds every state a row was drawn in, in order.
struct Screen {
    cols: usize,
    rows: Vec<Vec<char>>,
    r: usize,
    c: usize,
    wrap_pending: bool,
    history: Vec<String>,
    /// CSI sequences seen that move the cursor up: indicatif redraws its bars in place.
    ups: usize,
}

impl Screen {
    fn replay(cols: usize, bytes: &[u8]) -> Screen {
        let mut s = Screen {
            cols,
            rows: vec![Vec::new()],
            r: 0,
            c: 0,
            wrap_pending: false,
            history: Vec::new(),
            ups: 0,
        };
        let chars: Vec<char> = text(bytes).chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            match ch {
                '\x1b' if chars.get(i) == Some(&'[') => {
                    let start = i + 1;
                    let mut end = start;
                    while end < chars.len() && !('\x40'..='\x7e').contains(&chars[end]) {
                        end += 1;
                    }
                    let params: String = chars[start..end.min(chars.len())].iter().collect();
                    let fin = chars.get(end).copied().unwrap_or('m');
                    i = end + 1;
                    s.csi(&params, fin);
                }
                '\x1b' => i += 1, // a two-character escape (none expected): skipped
                '\r' => {
                    s.c = 0;
                    s.wrap_pending = false;
                }
                '\n' => s.down(1),
                '\x08' => {
                    s.c = s.c.saturating_sub(1);
                    s.wrap_pending = false;
                }
                c if c < ' ' => {}
                c => s.put(c),
            }
        }
        for r in 0..s.rows.len() {
            s.record(r);
        }
        s
    }

    fn down(&mut self, n: usize) {
        self.r += n;
        while self.rows.len() <= self.r {
            self.rows.push(Vec::new());
        }
        self.wrap_pending = false;
    }

    fn put(&mut self, ch: char) {
        if self.wrap_pending {
            self.down(1);
            self.c = 0;
        }
        let row = &mut self.rows[self.r];
        if row.len() <= self.c {
            row.resize(self.c + 1, ' ');
        }
        row[self.c] = ch;
        if self.c + 1 >= self.cols {
            self.wrap_pending = true;
        } else {
            self.c += 1;
        }
    }

    fn record(&mut self, r: usize) {
        let line: String = self.rows[r]
            .iter()
            .collect::<String>()
            .trim_end()
            .to_string();
        if !line.is_empty() {
            self.history.push(line);
        }
    }

    fn csi(&mut self, params: &str, fin: char) {
        if params.starts_with('?') {
            return; // private modes (cursor visibility)
        }
        let n = |d: usize| params.parse::<usize>().ok().filter(|&v| v > 0).unwrap_or(d);
        match fin {
            'A' => {
                self.r = self.r.saturating_sub(n(1));
                self.wrap_pending = false;
                self.ups += 1;
            }
            'B' => self.down(n(1)),
            'C' => self.c = (self.c + n(1)).min(self.cols - 1),
            'D' => self.c = self.c.saturating_sub(n(1)),
            'G' => self.c = (n(1) - 1).min(self.cols - 1),
            'K' => {
                self.record(self.r);
                let row = &mut self.rows[self.r];
                match params {
                    "" | "0" => row.truncate(self.c),
                    "1" => row.iter_mut().take(self.c + 1).for_each(|x| *x = ' '),
                    _ => row.clear(),
                }
            }
            'J' => {
                for r in self.r..self.rows.len() {
                    self.record(r);
                }
                self.rows[self.r].truncate(self.c);
                self.rows.truncate(self.r + 1);
            }
            _ => {} // 'm' (colours, bold) and anything else: no effect on the text
        }
    }
}

/// "1.43 MiB" (indicatif's binary bytes) as a number of bytes, approximately.
fn parse_size(s: &str) -> Option<f64> {
    let (num, unit) = s.trim().split_once(' ')?;
    let mult = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(num.parse::<f64>().ok()? * mult)
}

/// One drawn state of a receiver's bar: `URI [bar] DONE/TOTAL rate eta ETA MESSAGE`.
#[derive(Debug)]
struct Frame {
    bar: String,
    done: f64,
    total: f64,
    total_text: String,
    message: String,
}

fn frame(line: &str, uri: &str) -> Option<Frame> {
    let rest = line.strip_prefix(uri)?.strip_prefix(" [")?;
    let (bar, rest) = rest.split_once("] ")?;
    let (done, rest) = rest.split_once('/')?;
    // TOTAL is "<number> <unit>", then the rate, "eta", its value, the message.
    let mut words = rest.splitn(3, ' ');
    let total_text = format!("{} {}", words.next()?, words.next()?);
    let after = words.next().unwrap_or("");
    let message = after
        .split_once(" eta ")
        .map(|(_, t)| t.split_once(' ').map(|(_, m)| m).unwrap_or(""))
        .unwrap_or("")
        .trim()
        .to_string();
    Some(Frame {
        bar: bar.to_string(),
        done: parse_size(done)?,
        total: parse_size(&total_text)?,
        total_text,
        message,
    })
}

#[test]
fn send_on_a_terminal_draws_a_bar_per_receiver_to_the_end() {
    let d = scratch("pty-bars");
    let src = d.join("big.bin");
    let size = SIZE;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &body).unwrap();
    // Two receivers at different paces: each bar moves on its own.
    let (_a, uri_a, mut lines_a) = receiver(&d.join("a"), "pa", RATES[0]);
    let (_b, uri_b, mut lines_b) = receiver(&d.join("b"), "pb", RATES[1]);
    let cols = 160;
    let (raw, rc) = run_in_pty(
        cols,
        &[
            bin(),
            "send",
            src.to_str().unwrap(),
            "--to",
            &uri_a,
            "--to",
            &uri_b,
            "--timeout-ms",
            "240000",
        ],
    );
    let shown = text(&raw).replace('\x1b', "<ESC>");
    assert_eq!(rc, 0, "msrpcast send under a pty: {shown}");
    let screen = Screen::replay(cols as usize, &raw);
    assert!(
        screen.ups > 0,
        "no cursor-up: the bars were not redrawn in place: {shown}"
    );
    for uri in [&uri_a, &uri_b] {
        let frames: Vec<Frame> = screen
            .history
            .iter()
            .filter_map(|l| frame(l, uri))
            .collect();
        assert!(
            frames.len() >= 2,
            "{uri}: fewer than two bar states drawn: {:#?}",
            screen.history
        );
        let first = &frames[0];
        assert_eq!(first.bar, " ".repeat(30), "{uri}: first state {first:?}");
        assert_eq!(first.done, 0.0, "{uri}: first state {first:?}");
        let last = frames.last().unwrap();
        assert_eq!(last.bar, "=".repeat(30), "{uri}: last state {last:?}");
        assert_eq!(last.message, "done", "{uri}: last state {last:?}");
        assert_eq!(last.total_text, "11.44 MiB", "{uri}: {last:?}");
        assert!(
            (last.done - size as f64).abs() < 0.01 * size as f64,
            "{uri}: {last:?}"
        );
        for f in &frames {
            assert!(
                (f.total - size as f64).abs() < 0.01 * size as f64,
                "{uri}: {f:?}"
            );
        }
        // The bar moved on the way: drawn at least once between empty and full.
        assert!(
            frames
                .iter()
                .any(|f| f.done > 0.0 && f.done < f.total && f.bar.contains('>')),
            "{uri}: no partial bar: {frames:#?}"
        );
        // Progress never goes back, and the bar's fill follows it.
        for w in frames.windows(2) {
            assert!(w[1].done >= w[0].done, "{uri}: went back: {w:?}");
        }
        for f in &frames {
            let filled = f.bar.chars().filter(|&c| c == '=').count();
            let expect = (f.done / f.total * 30.0).floor() as usize;
            assert!(
                filled.abs_diff(expect) <= 1,
                "{uri}: bar {:?} for {} of {}",
                f.bar,
                f.done,
                f.total
            );
        }
        // The states between queued and done are named on the bar (at least queued).
        assert!(
            frames.iter().any(|f| f.message == "queued"),
            "{uri}: {frames:#?}"
        );
    }
    // Bar rows belong to one receiver each: no row mixes the two.
    for l in &screen.history {
        assert!(
            !(l.contains(&uri_a) && l.contains(&uri_b)),
            "a row with both receivers: {l}"
        );
    }
    // The result lines follow the bars; no plain progress lines on a terminal.
    let all = screen.history.join("\n");
    for uri in [&uri_a, &uri_b] {
        assert!(
            screen
                .history
                .iter()
                .any(|l| l == &format!("ok {uri} {size} bytes")),
            "{all}"
        );
        assert!(
            !all.contains(&format!("msrpcast: {uri} ")),
            "a plain line on a terminal: {all}"
        );
    }
    assert!(
        screen
            .history
            .iter()
            .any(|l| l.starts_with(&format!("msrpcast: {size} bytes to 2 receivers in "))),
        "{all}"
    );
    // And both got the file.
    for lines in [&mut lines_a, &mut lines_b] {
        let mut l = String::new();
        lines.read_line(&mut l).unwrap();
        assert!(l.starts_with("received "), "{l}");
        let path = l.trim_end().splitn(5, ' ').nth(4).unwrap().to_string();
        assert_eq!(std::fs::read(path).unwrap(), body);
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn send_without_a_terminal_prints_plain_lines() {
    let d = scratch("pty-plain");
    let src = d.join("f.bin");
    let size = SIZE;
    std::fs::write(&src, vec![5u8; size]).unwrap();
    let (_a, uri_a, _la) = receiver(&d.join("a"), "qa", RATES[0]);
    let (_b, uri_b, _lb) = receiver(&d.join("b"), "qb", RATES[1]);
    let child = Command::new(bin())
        .args([
            "send",
            src.to_str().unwrap(),
            "--to",
            &uri_a,
            "--to",
            &uri_b,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("TERM", "xterm-256color")
        .spawn()
        .unwrap();
    let o = wait_output(child, "msrpcast send");
    let err = text(&o.stderr);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains('\x1b') && !err.contains('\r'),
        "terminal control on a pipe: {err:?}"
    );
    assert_eq!(
        out,
        format!("ok {uri_a} {size} bytes\nok {uri_b} {size} bytes\n")
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with("msrpcast: ")), "{err}");
    for uri in [&uri_a, &uri_b] {
        let mine: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("msrpcast: {uri} ")))
            .collect();
        assert_eq!(mine.last(), Some(&"done"), "{uri}: {err}");
        // Progress lines: "N of SIZE bytes (P%)", at least one on the way, increasing, the
        // percentage N's.
        let mut last = 0u64;
        let mut progress = 0;
        for m in &mine {
            if let Some((n, rest)) = m.split_once(" of ") {
                let n: u64 = n.parse().unwrap();
                assert_eq!(
                    rest,
                    format!("{size} bytes ({}%)", n * 100 / size as u64),
                    "{m}"
                );
                assert!(n > last && n <= size as u64, "{uri}: {err}");
                last = n;
                progress += 1;
            }
        }
        assert!(progress >= 1, "{uri}: no progress line: {err}");
    }
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("msrpcast: {size} bytes to 2 receivers in ")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(d);
}
