//! The `msrpcast` command line as a user meets it: help and version, exit statuses, `send` to
//! `receive` processes on 127.0.0.1 (file names, JSON events), and `serve`'s spool folder.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::proc::{scratch, text, Proc};

use msrpcast::runtime::receive::{ReceiveServer, Sink};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_msrpcast"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("msrpcast runs")
}

/// `msrpcast receive` with `extra`; returns it, its first line (the URI) and a reader of the rest.
fn receiver(dir: &Path, extra: &[&str]) -> (Proc, String, BufReader<std::process::ChildStdout>) {
    common::proc::receiver("cli1", dir, extra)
}

fn next_line(r: &mut impl BufRead) -> String {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    l.trim_end().to_string()
}

#[test]
fn every_subcommand_has_help_and_the_exit_table() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let t = text(&top.stdout);
    assert!(
        t.contains("Exit status:") && t.contains("3  could not start"),
        "{t}"
    );
    for sub in ["send", "receive", "serve", "settings", "completions"] {
        let o = run(&[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains("Usage: msrpcast"), "{sub}");
    }
    assert!(text(&run(&["send", "--help"]).stdout).contains("Exit status:"));
    let v = run(&["--version"]);
    assert_eq!(
        text(&v.stdout).trim(),
        format!("msrpcast {}", env!("CARGO_PKG_VERSION"))
    );
    let c = run(&["completions", "bash"]);
    assert!(c.status.success());
    let script = text(&c.stdout);
    assert!(
        script.contains("_msrpcast()") && script.contains("--name-by"),
        "{script}"
    );
}

#[test]
fn exit_statuses_follow_the_table() {
    // 2: usage (clap) and a bad setting; 3: an unreadable file.
    assert_eq!(run(&["send"]).status.code(), Some(2));
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    let d = scratch("cli-exit");
    let f = d.join("f.bin");
    std::fs::write(&f, b"x").unwrap();
    let bad_set = run(&[
        "send",
        f.to_str().unwrap(),
        "--to",
        "msrp://127.0.0.1:1/a;tcp",
        "--set",
        "chunk_bytes=0",
    ]);
    assert_eq!(bad_set.status.code(), Some(2), "{}", text(&bad_set.stderr));
    let missing = run(&[
        "send",
        d.join("nope").to_str().unwrap(),
        "--to",
        "msrp://127.0.0.1:1/a;tcp",
    ]);
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing.stderr));
    let bad = run(&[
        "receive",
        "--listen",
        "127.0.0.1:0",
        "--session-id",
        "x",
        "--discard",
        "--misbehave",
        "bogus",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("never-answer") && text(&bad.stderr).contains("flood"),
        "{}",
        text(&bad.stderr)
    );
    // 1: a receiver that cannot be reached.
    let unreachable = run(&[
        "send",
        f.to_str().unwrap(),
        "--to",
        "msrp://127.0.0.1:1/a;tcp",
        "--timeout-ms",
        "20000",
    ]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(text(&unreachable.stdout).starts_with("failed msrp://127.0.0.1:1/a;tcp - "));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn receive_saves_by_the_offered_name_without_replacing() {
    let d = scratch("cli-named");
    let src = d.join("quarterly report.pdf");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &body).unwrap();
    let rx_dir = d.join("rx");
    let (_rx, uri, mut lines) = receiver(&rx_dir, &[]);
    for _ in 0..2 {
        let o = run(&["send", src.to_str().unwrap(), "--to", &uri]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let first = next_line(&mut lines);
    let second = next_line(&mut lines);
    let path_of = |l: &str| -> PathBuf {
        // `received ID BYTES SHA1 PATH`: the path is the rest of the line.
        PathBuf::from(l.splitn(5, ' ').nth(4).unwrap())
    };
    assert_eq!(
        path_of(&first),
        rx_dir.join("quarterly report.pdf"),
        "{first}"
    );
    assert_eq!(
        path_of(&second),
        rx_dir.join("quarterly report (1).pdf"),
        "{second}"
    );
    for l in [&first, &second] {
        assert_eq!(std::fs::read(path_of(l)).unwrap(), body);
    }

    // --name-by message-id: the old naming.
    let id_dir = d.join("ids");
    let (_rx2, uri2, mut lines2) = receiver(&id_dir, &["--name-by", "message-id"]);
    assert!(run(&["send", src.to_str().unwrap(), "--to", &uri2])
        .status
        .success());
    let l = next_line(&mut lines2);
    let id = l.split(' ').nth(1).unwrap();
    assert_eq!(path_of(&l), id_dir.join(id), "{l}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_hostile_offered_name_stays_inside_the_folder() {
    let d = scratch("cli-hostile");
    let dir = d.join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let server = ReceiveServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "h1",
        Sink::Named(dir.clone()),
        true,
        None,
        1,
    )
    .unwrap();
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    let send = |s: &mut std::net::TcpStream, tid: &str, mid: &str, cd: &str| {
        let frame = format!(
            "MSRP {tid} SEND\r\nTo-Path: {}\r\nFrom-Path: msrp://127.0.0.1:9/peer;tcp\r\n\
             Message-ID: {mid}\r\nByte-Range: 1-5/5\r\nContent-Disposition: {cd}\r\n\
             Content-Type: text/plain\r\n\r\nhello\r\n-------{tid}$\r\n",
            server.uri
        );
        s.write_all(frame.as_bytes()).unwrap();
    };
    send(
        &mut s,
        "tid00001",
        "mid00001",
        "attachment; filename=\"../../escaped.txt\"",
    );
    send(
        &mut s,
        "tid00002",
        "mid00002",
        "attachment; filename*=UTF-8''..%2F..%2F.bashrc",
    );
    send(
        &mut s,
        "tid00003",
        "mid00003",
        "attachment; filename=\"..\"",
    );
    let mut paths = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while paths.len() < 3 && Instant::now() < deadline {
        if let Some(r) = server.next(Duration::from_millis(200)) {
            assert_eq!(r.failure, None);
            paths.push(r.path.expect("saved"));
        }
    }
    assert_eq!(
        paths,
        vec![
            dir.join("escaped.txt"),
            dir.join("bashrc"),
            dir.join("mid00003")
        ]
    );
    assert!(!d.join("escaped.txt").exists());
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn send_json_prints_one_object_per_event() {
    let d = scratch("cli-json");
    let src = d.join("f.bin");
    std::fs::write(&src, vec![7u8; 100_000]).unwrap();
    let (_rx, uri, _lines) = receiver(&d.join("rx"), &[]);
    let o = run(&["send", src.to_str().unwrap(), "--to", &uri, "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("{\"event\":\"") && l.ends_with('}')),
        "{out}"
    );
    assert!(lines[0].starts_with("{\"event\":\"start\",\"file\":\"f.bin\",\"bytes\":100000"));
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{{\"event\":\"result\",\"receiver\":\"{uri}\",\"ok\":true"
        ))),
        "{out}"
    );
    assert!(lines.last().unwrap().starts_with(
        "{\"event\":\"summary\",\"bytes\":100000,\"receivers\":1,\"ok\":1,\"failed\":0"
    ));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn serve_creates_a_missing_spool_folder_private() {
    let d = scratch("cli-spool");
    let spool = d.join("new").join("spool");
    let mut child = bin()
        .args(["serve", "--http", "127.0.0.1:0", "--spool"])
        .arg(&spool)
        .args(["--participant", "c1=msrp://127.0.0.1:1/x;tcp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let _p = Proc(child);
    let url = next_line(&mut out);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    for p in [&spool, &d.join("new")] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} has mode {mode:o}", p.display());
    }
    drop(_p);
    let _ = std::fs::remove_dir_all(d);
}
