"""What the commands print: TensorFlow's own chatter left out, everything else kept.

TensorFlow writes some notices straight to the process's stderr file descriptor, whatever
TF_CPP_MIN_LOG_LEVEL says: absl's "before InitializeLog" and oneDNN's notices when it loads, and
Grappler's "remapper failed" error, which looks like a crash but only means that one graph rewrite
was skipped (the remapper stays on: it is faster here, benchmarks/RESULTS.md). `tensorflow_quiet`
passes stderr through a filter that drops those lines and keeps every other one, errors included.
"""
import contextlib
import os
import sys
import threading

TENSORFLOW_CHATTER = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "remapper failed",
    "triggered tf.function retracing",
    "To enable the following instructions",
    "This TensorFlow binary is optimized to use available CPU instructions",
)


def _chatter(line):
    return any(text in line for text in TENSORFLOW_CHATTER)


@contextlib.contextmanager
def tensorflow_quiet():
    """Inside: file descriptor 2 goes through a thread that forwards every line but TensorFlow's
    chatter to the real stderr. Nested or repeated use is fine."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (rare embedded interpreters): nothing to filter
        yield
        return
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def forward():
        with os.fdopen(read, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = [line + b"\n" for line in lines if not _chatter(line.decode(errors="replace"))]
                if kept:
                    os.write(saved, b"".join(kept))
            if pending and not _chatter(pending.decode(errors="replace")):
                os.write(saved, pending)

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread reads to its end
        thread.join(timeout=10)
        os.close(saved)
