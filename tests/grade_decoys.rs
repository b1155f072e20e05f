//! Each grader stage is honest: a deliberately wrong server (a decoy, in
//! decoys/) is rejected by exactly the stage written to catch its mistake,
//! and passes all the others; a correct control passes everything. The
//! decoys are bins of the development-only `decoys` package, built here
//! with a nested `cargo build -p decoys`; nothing else ever builds them.

mod grade_support;

use grade_support::{decoy_bin, grade};

/// Grade `bin` on `exercise` and require that exactly `stages` fail.
fn assert_rejected_by(exercise: &str, bin: &str, stages: &[&str]) -> String {
    let graded = grade(&["--bin", &decoy_bin(bin), exercise]);
    assert_eq!(graded.failed(), stages, "{bin}:\n{}", graded.report);
    let expected_status = if stages.is_empty() { 0 } else { 1 };
    assert_eq!(graded.status, Some(expected_status), "{}", graded.report);
    let failed = stages.len();
    let passed = graded.stages.len() - failed;
    assert!(
        graded
            .report
            .ends_with(&format!("{passed} passed, {failed} failed\n")),
        "{}",
        graded.report
    );
    graded.report
}

#[test]
fn an_echo_that_reads_once_fails_echo_large() {
    assert_rejected_by("ex01", "decoy_echo_reads_once", &["echo_large"]);
}

#[test]
fn an_echo_that_leaks_a_descriptor_per_connection_fails_no_fd_leak() {
    assert_rejected_by("ex01", "decoy_echo_leaks_fd", &["no_fd_leak"]);
}

#[test]
fn an_echo_that_ignores_sigterm_fails_sigterm_exits_0() {
    assert_rejected_by("ex01", "decoy_echo_ignores_sigterm", &["sigterm_exits_0"]);
}

#[test]
fn a_threaded_echo_passes_ex01_and_the_concurrency_check() {
    assert_rejected_by("ex01", "control_echo_threaded", &[]);
    assert_rejected_by("demo_concurrency", "control_echo_threaded", &[]);
}

#[test]
fn a_one_client_at_a_time_echo_fails_the_concurrency_check() {
    // A correct ex01 solution (ex01 is iterative by design) ...
    assert_rejected_by("ex01", "decoy_echo_one_at_a_time", &[]);
    // ... that the concurrency stage (for rungs 04 and 05) rejects, although
    // the kernel completes and queues the waiting connections for it.
    assert_rejected_by(
        "demo_concurrency",
        "decoy_echo_one_at_a_time",
        &["serves_while_busy"],
    );
}

#[test]
fn a_hello_without_content_length_fails_content_length_exact() {
    assert_rejected_by("ex02", "decoy_hello_no_length", &["content_length_exact"]);
}

#[test]
fn a_hello_with_bare_lf_fails_status_line_crlf() {
    let report = assert_rejected_by("ex02", "decoy_hello_bare_lf", &["status_line_crlf"]);
    // The report shows the bytes with the line ends visible, says what was
    // expected, where to look, and how to reproduce it by hand.
    for needle in [
        "FAIL  status_line_crlf",
        "got:      \"HTTP/1.1 200 OK\\nContent-Type",
        "expected: ",
        "hint:     RFC 9112",
        "try:      printf 'GET /hello HTTP/1.1\\r\\n",
        "| nc -q 2 127.0.0.1 8002",
    ] {
        assert!(report.contains(needle), "{needle:?} not in:\n{report}");
    }
}

#[test]
fn a_correct_hello_passes_ex02() {
    assert_rejected_by("ex02", "control_hello", &[]);
}

#[test]
fn a_busy_looping_server_fails_idle_without_spinning() {
    assert_rejected_by("ex05", "decoy_epoll_busy_loop", &["idle_without_spinning"]);
}

#[test]
fn a_blocking_one_client_at_a_time_server_fails_the_concurrency_stages() {
    // The kernel completes and queues the waiting clients' connections, and
    // buffers their requests; nobody answers them while one client is served.
    assert_rejected_by(
        "ex05",
        "decoy_epoll_blocking",
        &["slow_reader", "many_clients", "count_stops"],
    );
}

#[test]
fn a_count_that_goes_on_after_its_client_left_fails_count_stops() {
    assert_rejected_by("ex05", "decoy_epoll_count_never_stops", &["count_stops"]);
}

#[test]
fn a_polling_server_that_naps_passes_ex05() {
    // Crude (it wakes a thousand times a second), but nothing the stages can
    // see is wrong with it: the control shows they ask no more than they say.
    assert_rejected_by("ex05", "control_epoll_polling", &[]);
}

#[test]
fn a_cgi_control_passes_every_ex03_stage() {
    assert_rejected_by("ex03", "control_cgi", &[]);
}

#[test]
fn a_one_connection_at_a_time_cgi_server_fails_two_clients_at_once() {
    assert_rejected_by("ex03", "decoy_cgi_one_at_a_time", &["two_clients_at_once"]);
}

#[test]
fn a_gateway_with_swapped_addresses_fails_connection_variables() {
    assert_rejected_by(
        "ex03",
        "decoy_cgi_swapped_addresses",
        &["connection_variables"],
    );
}

#[test]
fn passing_local_redirects_to_the_client_fails_both_redirect_stages() {
    assert_rejected_by(
        "ex03",
        "decoy_cgi_no_local_redirects",
        &["local_redirect_followed", "redirect_loop_stopped"],
    );
}

#[test]
fn a_pool_that_serves_while_holding_the_lock_fails_serves_while_busy() {
    assert_rejected_by("ex04", "decoy_http_lock_held", &["serves_while_busy"]);
}

#[test]
fn a_one_at_a_time_server_that_drops_clients_early_fails_serves_while_busy() {
    assert_rejected_by(
        "ex04",
        "decoy_http_one_at_a_time_short_timeout",
        &["serves_while_busy"],
    );
}

#[test]
fn a_file_server_without_a_head_deadline_fails_silent_client_timeout() {
    assert_rejected_by("ex04", "decoy_http_no_timeout", &["silent_client_timeout"]);
}

#[test]
fn a_file_server_that_exits_at_once_fails_graceful_shutdown() {
    assert_rejected_by("ex04", "decoy_http_exits_at_once", &["graceful_shutdown"]);
}

#[test]
fn naive_path_joining_leaks_and_fails_both_containment_stages() {
    assert_rejected_by(
        "ex04",
        "decoy_http_naive_paths",
        &["refuses_traversal", "refuses_symlink_out"],
    );
}

#[test]
fn following_symlinks_out_of_the_root_fails_refuses_symlink_out() {
    assert_rejected_by(
        "ex04",
        "decoy_http_follows_symlinks",
        &["refuses_symlink_out"],
    );
}

#[test]
fn the_control_file_server_passes_every_ex04_stage() {
    assert_rejected_by("ex04", "control_http_server", &[]);
}

#[test]
fn the_unchanged_gateway_passes_every_ex06_stage() {
    // Lesson 06 with the copy of ladder::wsgi that the decoys below are
    // made from (decoys/build.rs): the copying itself changes nothing.
    assert_rejected_by("ex06", "control_wsgi", &[]);
}

#[test]
fn a_gateway_that_never_calls_close_fails_the_three_close_stages() {
    assert_rejected_by(
        "ex06",
        "decoy_wsgi_no_close",
        &[
            "close_on_normal_end",
            "close_on_app_error",
            "close_on_client_gone",
        ],
    );
}

#[test]
fn closing_only_complete_responses_fails_close_on_error_and_on_client_gone() {
    assert_rejected_by(
        "ex06",
        "decoy_wsgi_close_when_complete",
        &["close_on_app_error", "close_on_client_gone"],
    );
}

#[test]
fn a_utf8_environ_fails_environ_latin1_path() {
    assert_rejected_by("ex06", "decoy_wsgi_utf8_path", &["environ_latin1_path"]);
}

#[test]
fn an_underscore_header_that_spoofs_another_fails_environ_headers() {
    assert_rejected_by("ex06", "decoy_wsgi_underscore_spoof", &["environ_headers"]);
}

#[test]
fn a_head_sent_when_the_app_returns_fails_head_waits_for_body() {
    assert_rejected_by("ex06", "decoy_wsgi_eager_head", &["head_waits_for_body"]);
}

#[test]
fn exc_info_taken_after_the_head_fails_both_exc_info_after_stages() {
    // Seen from the app (start_response did not raise) and on the wire
    // (the response ran to its end, with the error page the app sent).
    assert_rejected_by(
        "ex06",
        "decoy_wsgi_exc_info_never_reraises",
        &["exc_info_after_head", "error_after_head_aborts"],
    );
}

#[test]
fn a_content_length_not_kept_fails_content_length_enforced() {
    assert_rejected_by(
        "ex06",
        "decoy_wsgi_length_unenforced",
        &["content_length_enforced"],
    );
}

#[test]
fn the_unchanged_master_passes_every_ex07_stage() {
    // Lesson 07 as decoys/build.rs copies it for the decoys below.
    assert_rejected_by("ex07", "control_prefork", &[]);
}

#[test]
fn one_waitpid_per_sigchld_leaves_zombies_and_fails_reap_burst() {
    // One kill at a time, each SIGCHLD its own: it passes `respawn`. Three
    // deaths under one SIGCHLD leave two zombies.
    assert_rejected_by("ex07", "decoy_prefork_reaps_one", &["reap_burst"]);
}

#[test]
fn a_master_that_never_replaces_a_dead_worker_fails_respawn() {
    // It counts the workers it ever forked: TTIN still adds one.
    assert_rejected_by("ex07", "decoy_prefork_never_respawns", &["respawn"]);
}

#[test]
fn a_ttou_that_removes_the_last_worker_fails_ttin_ttou() {
    assert_rejected_by("ex07", "decoy_prefork_ttou_kills_last", &["ttin_ttou"]);
}

#[test]
fn a_term_that_cuts_requests_in_flight_fails_graceful_term() {
    assert_rejected_by(
        "ex07",
        "decoy_prefork_term_cuts_requests",
        &["graceful_term"],
    );
}

#[test]
fn an_int_that_waits_for_requests_fails_quick_int() {
    assert_rejected_by("ex07", "decoy_prefork_int_waits", &["quick_int"]);
}

#[test]
fn respawning_workers_that_cannot_boot_fails_boot_failure() {
    assert_rejected_by("ex07", "decoy_prefork_boot_storm", &["boot_failure"]);
}

#[test]
fn a_heartbeat_made_after_the_fork_fails_heartbeat() {
    assert_rejected_by("ex07", "decoy_prefork_heartbeat_unshared", &["heartbeat"]);
}

#[test]
fn the_unchanged_proxy_passes_every_ex08_stage() {
    // Lesson 08 as decoys/build.rs copies it for the decoys below.
    assert_rejected_by("ex08", "control_proxy", &[]);
}

#[test]
fn a_proxy_that_forwards_the_headers_connection_names_fails_hop_by_hop() {
    assert_rejected_by("ex08", "decoy_proxy_forwards_hop_by_hop", &["hop_by_hop"]);
}

#[test]
fn a_proxy_that_never_pools_fails_reuses_connections() {
    // Closing after each response frees the upstream as well as pooling
    // does: it passes `frees_upstream`, and pays a handshake per request.
    assert_rejected_by("ex08", "decoy_proxy_never_pools", &["reuses_connections"]);
}

#[test]
fn a_proxy_that_reads_at_its_clients_pace_fails_frees_upstream() {
    // Responses under its 1 MiB window pass everything else.
    assert_rejected_by(
        "ex08",
        "decoy_proxy_reads_at_client_pace",
        &["frees_upstream"],
    );
}

/// The names `cargo run [-p PACKAGE] --bin` offers (what `cargo ex <TAB>`
/// completes), from cargo's own list; nothing is built.
fn offered_bins(package: Option<&str>) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .arg("run")
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    if let Some(package) = package {
        command.args(["-p", package]);
    }
    let output = command.arg("--bin").output().expect("cargo runs");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    let list = text
        .split_once("Available binaries:")
        .unwrap_or_else(|| panic!("no list of binaries in:\n{text}"))
        .1;
    list.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_decoys_stay_out_of_the_students_rooms() {
    // `cargo ex <TAB>` offers the skeletons and nothing else ...
    let exercises = offered_bins(Some("exercises"));
    assert!(
        !exercises.is_empty() && exercises.iter().all(|bin| bin.starts_with("ex0")),
        "{exercises:?}"
    );
    // ... and the root's default build (`cargo build`, `cargo run --bin`)
    // knows the rungs and the tools, not the decoys.
    let root = offered_bins(None);
    assert!(root.iter().any(|bin| bin == "lesson01_echo"), "{root:?}");
    assert!(
        !root
            .iter()
            .any(|bin| bin.starts_with("decoy_") || bin.starts_with("control_")),
        "{root:?}"
    );
}
