//! Placeholder: rung 5 is being built (see the rung 5 issue).
fn main() {
    eprintln!("lesson05_epoll is not written yet");
    std::process::exit(1);
}
