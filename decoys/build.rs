//! Build script: the ex06 decoys, each lesson 06 compiled against a copy of
//! `src/wsgi.rs` with ONE flaw; and the ex07 decoys, each a copy of
//! `src/bin/lesson07_prefork.rs` (the master) with ONE flaw; and the ex08
//! decoys, each a copy of `src/bin/lesson08_proxy.rs` with ONE flaw.
//!
//! The ex06 exercise is the library module `ladder::wsgi`, so a decoy for it
//! is a gateway with a mistake in it, run by the unchanged lesson. Writing
//! such gateways by hand would make copies that drift; instead this script
//! copies the module at build time and makes exactly the edits of one
//! `Flaw`, each of which must match the source exactly once (a change to
//! `src/wsgi.rs` that moves one fails this build and says which). The copy
//! is the student's skeleton minus the holes: `crate::` reads `ladder::`,
//! and the lesson's `use ladder::wsgi;` becomes the module.
//!
//! Output, for each flaw NAME: `$OUT_DIR/lesson06_NAME.rs`, which
//! `src/bin/decoy_wsgi_NAME.rs` (or `control_wsgi.rs`) includes; for each
//! master's flaw NAME: `$OUT_DIR/lesson07_NAME.rs`, which
//! `src/bin/decoy_prefork_NAME.rs` (or `control_prefork.rs`) includes; for
//! each proxy's flaw NAME: `$OUT_DIR/lesson08_NAME.rs`, which
//! `src/bin/decoy_proxy_NAME.rs` (or `control_proxy.rs`) includes.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// A flawed gateway (or master, or proxy): its name, and the edits (text,
/// replacement) that make the flaw.
struct Flaw {
    name: &'static str,
    edits: &'static [(&'static str, &'static str)],
}

const FLAWS: &[Flaw] = &[
    // The control: the module as it is.
    Flaw {
        name: "control",
        edits: &[],
    },
    // The iterable's close() is never called.
    Flaw {
        name: "no_close",
        edits: &[(
            "        if !plain && body.hasattr(intern!(py, \"close\")).unwrap_or(false) {\n            \
             trace!(\"wsgi: close()\");\n            \
             if let Err(err) = body.call_method0(\"close\") {\n                \
             out.note(describe(py, \"close() raised\", Some(&err)), Some((py, &err)));\n            \
             }\n        }\n",
            "        let _ = plain; // (flaw: close() is never called)\n",
        )],
    },
    // close() only after a response that completed without a problem.
    Flaw {
        name: "close_when_complete",
        edits: &[(
            "        if !plain && body.hasattr(intern!(py, \"close\")).unwrap_or(false) {\n",
            "        let completed = out.served.ending == Ending::Complete && out.served.problem.is_none();\n        \
             if completed && !plain && body.hasattr(intern!(py, \"close\")).unwrap_or(false) {\n",
        )],
    },
    // Native strings decoded as UTF-8 instead of latin-1.
    Flaw {
        name: "utf8_path",
        edits: &[(
            "let value = latin1(py, value.as_encoded_bytes());",
            "let value = PyString::new(py, &String::from_utf8_lossy(value.as_encoded_bytes()));",
        )],
    },
    // Headers whose name holds `_` are not dropped: `X_Auth_User` becomes
    // HTTP_X_AUTH_USER, over the real `X-Auth-User`.
    Flaw {
        name: "underscore_spoof",
        edits: &[(
            "        // The whole body is in memory already, so a BytesIO over it is a\n",
            "        for header in request.headers.iter().filter(|h| h.name.contains('_')) {\n            \
             let key = format!(\"HTTP_{}\", header.name.to_ascii_uppercase());\n            \
             environ.set_item(key, latin1(py, &header.value))?;\n        }\n        \
             // The whole body is in memory already, so a BytesIO over it is a\n",
        )],
    },
    // The head goes out as soon as the app returns (when it has called
    // start_response by then), before the first body byte.
    Flaw {
        name: "eager_head",
        edits: &[(
            "        // A list of bytes is a body whose length is known before the head\n",
            "        if lock(&self.head).started.is_some()\n            \
             && self.start(py, Body::Stream { len: None }).is_break()\n        {\n            \
             return;\n        }\n        \
             // A list of bytes is a body whose length is known before the head\n",
        )],
    },
    // exc_info after the head: the new status is taken silently, nothing
    // is re-raised.
    Flaw {
        name: "exc_info_never_reraises",
        edits: &[(
            "Some(exc_info) if head.committed => {",
            "Some(exc_info) if head.committed && exc_info.is_none() => {",
        )],
    },
    // The app's Content-Length is announced but not kept: what is more is
    // sent on.
    Flaw {
        name: "length_unenforced",
        edits: &[(
            "            let room = self\n                \
             .content_length\n                \
             .map_or(u64::MAX, |len| len - self.served.bytes);\n",
            "            let room = u64::MAX;\n",
        )],
    },
];

/// The ex07 decoys: lesson 07's master with one mistake each, the kind a
/// student makes in (or around) the exercise's holes `spawn`, `dispatch`
/// and `reap`.
const PREFORK_FLAWS: &[Flaw] = &[
    // The control: the master as it is.
    Flaw {
        name: "control",
        edits: &[],
    },
    // One waitpid per SIGCHLD: deaths whose signals merged stay zombies.
    Flaw {
        name: "reaps_one",
        edits: &[
            (
                "        let mut halt = None;\n        loop {\n",
                "        let mut halt = None;\n        for _ in 0..1 {\n",
            ),
            (
                "        }\n    }\n    // ANCHOR_END: reap",
                "        }\n        halt\n    }\n    // ANCHOR_END: reap",
            ),
        ],
    },
    // Counts the workers it ever forked, not the ones alive: TTIN still
    // works, a dead worker is never replaced.
    Flaw {
        name: "never_respawns",
        edits: &[(
            "        for _ in serving.len()..self.target {\n",
            "        for _ in serving.len().max(self.spawned as usize)..self.target {\n",
        )],
    },
    // TTOU goes down to no worker at all.
    Flaw {
        name: "ttou_kills_last",
        edits: &[(
            "SIGTTOU if self.target > 1 => self.target -= 1,",
            "SIGTTOU if self.target > 0 => self.target -= 1,",
        )],
    },
    // TERM stops the workers at once, cutting the requests in flight.
    Flaw {
        name: "term_cuts_requests",
        edits: &[(
            "SIGTERM => self.stop(signal, SIGTERM),",
            "SIGTERM => self.stop(signal, SIGQUIT),",
        )],
    },
    // INT waits for the requests in flight, as TERM does.
    Flaw {
        name: "int_waits",
        edits: &[(
            "SIGINT | SIGQUIT => self.stop(signal, SIGQUIT),",
            "SIGINT | SIGQUIT => self.stop(signal, SIGTERM),",
        )],
    },
    // A worker that cannot boot is respawned, and fails, for ever.
    Flaw {
        name: "boot_storm",
        edits: &[(
            "                    say(\"ERROR\", \"a worker failed to boot: stopping, not respawning\");\n                    \
             halt = Some(code);\n",
            "                    let _ = code; // (flaw: respawned anyway)\n",
        )],
    },
    // The worker beats a heartbeat of its own, made after the fork: the
    // master's copy never moves, and it kills healthy workers as hung.
    Flaw {
        name: "heartbeat_unshared",
        edits: &[(
            "number, &heartbeat, app);",
            "number, &Heartbeat::new().expect(\"a heartbeat\"), app);",
        )],
    },
];

/// The ex08 decoys: lesson 08 with one mistake each, the kind made in (or
/// around) the exercise's holes `handle_with`, `advance` and `finish`.
const PROXY_FLAWS: &[Flaw] = &[
    // The control: the proxy as it is.
    Flaw {
        name: "control",
        edits: &[],
    },
    // The Connection header is taken off before the request is written for
    // the upstream, so nothing knows the headers it named are hop-by-hop:
    // they are forwarded.
    Flaw {
        name: "forwards_hop_by_hop",
        edits: &[(
            "out: Outgoing::new(request, body, Forwarding::http(client.peer)),",
            "out: Outgoing::new(\n                &{\n                    \
             let mut request = request.clone();\n                    \
             request.headers.retain(|h| !h.name.eq_ignore_ascii_case(\"connection\"));\n                    \
             request\n                },\n                body,\n                \
             Forwarding::http(client.peer),\n            ),",
        )],
    },
    // Every upstream connection is closed after its response: each request
    // pays a new handshake.
    Flaw {
        name: "never_pools",
        edits: &[(
            "            self.group.servers[up].idle.push(slot);\n            \
             let deadline = link.deadline;\n            \
             self.wake_at(deadline, cx);\n",
            "            self.close(slot, \"(flaw: never pooled)\");\n",
        )],
    },
    // A relay's window: it reads at most 1 MiB of a response ahead of its
    // client, then waits for the client to take it. The client gets whole
    // responses only, so the upstream waits for ever on a large one.
    Flaw {
        name: "reads_at_client_pace",
        edits: &[
            ("struct Job {\n", "struct Job {\n    got: usize,\n"),
            (
                "            tried: 0,\n",
                "            tried: 0,\n            got: 0,\n",
            ),
            (
                "        loop {\n            let done = match (&link.stream).read(",
                "        loop {\n            if job.got >= 1 << 20 {\n                \
                 return; // (flaw: waits for the client before reading on)\n            }\n            \
                 let done = match (&link.stream).read(",
            ),
            (
                "Ok(n) => job.reader.feed(&self.scratch[..n]),",
                "Ok(n) => {\n                    job.got += n;\n                    \
                 job.reader.feed(&self.scratch[..n])\n                }",
            ),
        ],
    },
];

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("..");
    let module_path = root.join("src/wsgi.rs");
    let lesson_path = root.join("src/bin/lesson06_wsgi.rs");
    println!("cargo:rerun-if-changed={}", module_path.display());
    println!("cargo:rerun-if-changed={}", lesson_path.display());
    println!("cargo:rerun-if-changed=build.rs");
    // The rpath to the libpython pyo3 links, as the lessons have (../build.rs).
    pyo3_build_config::add_libpython_rpath_link_args();

    let module = read(&module_path).replace("crate::", "ladder::");
    let lesson = read(&lesson_path);
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    for flaw in FLAWS {
        let flawed = apply(&module, flaw, "src/wsgi.rs");
        let module_file = out.join(format!("wsgi_{}.rs", flaw.name));
        write(&module_file, &includable(&flawed));
        let import = format!(
            "#[allow(dead_code)]\nmod wsgi {{\n    include!({:?});\n}}",
            module_file.display().to_string()
        );
        let lines: Vec<&str> = lesson.lines().collect();
        let at: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i] == "use ladder::wsgi;")
            .collect();
        assert!(
            at.len() == 1,
            "src/bin/lesson06_wsgi.rs must import the gateway once, on a line of its own: `use ladder::wsgi;`"
        );
        let main = lesson.replacen("\nuse ladder::wsgi;\n", &format!("\n{import}\n"), 1);
        write(
            &out.join(format!("lesson06_{}.rs", flaw.name)),
            &includable(&main),
        );
    }

    let master_path = root.join("src/bin/lesson07_prefork.rs");
    println!("cargo:rerun-if-changed={}", master_path.display());
    let master = read(&master_path);
    for flaw in PREFORK_FLAWS {
        let flawed = apply(&master, flaw, "src/bin/lesson07_prefork.rs");
        write(
            &out.join(format!("lesson07_{}.rs", flaw.name)),
            &includable(&flawed),
        );
    }

    let proxy_path = root.join("src/bin/lesson08_proxy.rs");
    println!("cargo:rerun-if-changed={}", proxy_path.display());
    let proxy = read(&proxy_path);
    for flaw in PROXY_FLAWS {
        let flawed = apply(&proxy, flaw, "src/bin/lesson08_proxy.rs");
        write(
            &out.join(format!("lesson08_{}.rs", flaw.name)),
            &includable(&flawed),
        );
    }
}

/// `source` with the edits of `flaw`, each of which must match once.
fn apply(source: &str, flaw: &Flaw, file: &str) -> String {
    let mut flawed = source.to_string();
    for (text, replacement) in flaw.edits {
        let found = flawed.matches(text).count();
        assert!(
            found == 1,
            "decoy {}: its edit must match {file} exactly once, found {found} times: {text:?}",
            flaw.name
        );
        flawed = flawed.replacen(text, replacement, 1);
    }
    flawed
}

/// `include!` takes items, not a file's inner doc comment or attributes:
/// the `//!` header becomes plain comments, and an inner attribute
/// (lesson 07's `#![allow(unsafe_code)]`) is left to the including bin.
fn includable(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.strip_prefix("//!") {
            Some(rest) => format!("//{rest}"),
            None if line.starts_with("#![") => format!("// (in the bin) {line}"),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}
