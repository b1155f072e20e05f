"""What fork() copies, and what it does not: three short experiments.

    python3 apps/fork_threads.py

Not an app: a script for lesson 07, run with any python3 (standard library
only). Each experiment forks once and waits for its child.

1. Unflushed output is copied. A program's output waits in a buffer in its
   memory until the buffer is flushed (Python's stdout when it is a pipe,
   C's stdio, Rust's stdout until the end of a line). fork() copies that
   memory, buffer included, so the child prints the same bytes again.
   Servers flush before every fork. (The experiment writes through a
   buffer of its own, so it shows in a terminal and in a pipe alike.)
2. A lock held by another thread is copied locked. fork() copies the whole
   memory but only the thread that called it. A lock another thread held
   at that moment stays locked in the child forever: no thread there will
   ever release it. The child blocks on it until an alarm (SIGALRM, whose
   default action ends the process) stops it. CPython's own locks (the
   GIL, the import lock) would do the same, which is why os.fork() takes
   them before forking and re-creates them in the child: PyOS_BeforeFork
   and PyOS_AfterFork_Child, what lesson 07's --preload calls.
3. The same lock, with fork hooks. os.register_at_fork() lets a module do
   for its own lock what CPython does for its own: take it before the fork
   (waiting for the other thread to let go), release it in both processes
   after. The child gets it at once.
"""
import os
import signal
import sys
import threading
import time

STUCK_FOR = 2  # seconds the child of experiment 2 may wait for the lock


# stdout with a buffer of 64 KiB and no flush at the end of a line.
BUFFERED = open(sys.stdout.fileno(), "w", buffering=65536, closefd=False)


def fork_and_wait(child):
    """Fork; the child runs `child()` and exits with its status. The parent
    waits for it and says how it ended."""
    sys.stdout.flush()  # as a server does; BUFFERED is left as it is
    pid = os.fork()
    if pid == 0:
        status = child()
        BUFFERED.flush()  # what a normal exit would flush
        sys.stdout.flush()
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return f"was killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def unflushed_output():
    print("1. printed once, before the fork, not flushed", file=BUFFERED)
    how = fork_and_wait(lambda: 0)
    BUFFERED.flush()
    print(f"   parent: the child {how}; count the lines above")


def hold(lock, ready, seconds):
    """Another thread: take the lock, say so, keep it a while."""
    with lock:
        ready.set()
        time.sleep(seconds)


def lock_in_child(lock, timeout=None):
    if timeout is not None:
        signal.alarm(timeout)  # SIGALRM's default action ends the process
    threads = [t.name for t in threading.enumerate()]
    print(f"   child: threads here: {threads}; lock.locked() = {lock.locked()}")
    sys.stdout.flush()
    lock.acquire()
    print("   child: got the lock")
    return 0


def lock_held_by_a_thread():
    print("2. a raw fork while another thread holds a lock")
    lock, ready = threading.Lock(), threading.Event()
    holder = threading.Thread(target=hold, args=(lock, ready, 2 * STUCK_FOR))
    holder.start()
    ready.wait()
    how = fork_and_wait(lambda: lock_in_child(lock, timeout=STUCK_FOR))
    print(f"   parent: the child {how}: it waited {STUCK_FOR} s for a lock no thread could release")
    holder.join()


def lock_with_fork_hooks():
    print("3. the same, with os.register_at_fork (CPython's protocol)")
    lock, ready = threading.Lock(), threading.Event()
    os.register_at_fork(before=lock.acquire,
                        after_in_parent=lock.release,
                        after_in_child=lock.release)
    holder = threading.Thread(target=hold, args=(lock, ready, 0.5))
    holder.start()
    ready.wait()
    how = fork_and_wait(lambda: lock_in_child(lock))
    print(f"   parent: the child {how}; the fork waited until the holder let go")
    holder.join()


if __name__ == "__main__":
    unflushed_output()
    lock_held_by_a_thread()
    lock_with_fork_hooks()
