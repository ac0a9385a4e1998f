"""What the commands print: TensorFlow's own chatter left out, everything else kept; and the one
command-line parser of every script (`ArgumentParser`: no abbreviated flags, a mistyped flag named
in one line with the nearest valid one).

TensorFlow writes some notices straight to the process's stderr file descriptor, whatever
TF_CPP_MIN_LOG_LEVEL says: absl's "before InitializeLog" and oneDNN's notices when it loads, and
Grappler's "remapper failed" error, which looks like a crash but only means that one graph rewrite
was skipped (the remapper stays on: it is faster here, benchmarks/RESULTS.md). `tensorflow_quiet`
passes stderr through a filter that drops those lines and keeps every other one, errors included.
"""
import argparse
import contextlib
import difflib
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser for every script: a long option must be written in full (`--per-clas 5`
    is not taken for `--per-class`), and an unknown flag is one line of stderr naming it and the
    nearest valid flag, then exit status 2:

        generate.py: error: unrecognized argument --per-clas (did you mean --per-class?)

    Other errors (a missing argument, a bad choice) print usage and the error as argparse does."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self._given = []

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def unknown_flag(self, argv):
        """The first item of `argv` that looks like a flag this parser does not have, else None."""
        for arg in map(str, argv):
            if arg == "--":
                return None
            if len(arg) < 2 or arg[0] not in self.prefix_chars or " " in arg:
                continue  # a value or a positional argument
            if self._negative_number_matcher.match(arg) and not self._has_negative_number_optionals:
                continue  # a negative number
            name = arg.split("=", 1)[0]
            if name in self._option_string_actions:
                continue
            if arg[1] not in self.prefix_chars and arg[:2] in self._option_string_actions:
                continue  # a short flag with its value attached (-n5) or short flags together
            return name
        return None

    def suggestion(self, flag):
        """The valid flag nearest to `flag`, or None when none is near."""
        options = [option for action in self._actions if action.help != argparse.SUPPRESS
                   for option in action.option_strings]
        close = difflib.get_close_matches(flag, options, n=1)
        return close[0] if close else None

    def error(self, message):
        flag = self.unknown_flag(self._given)
        if flag is None:
            super().error(message)
        near = self.suggestion(flag)
        hint = f" (did you mean {near}?)" if near else f" (see {self.prog} --help)"
        self.exit(2, f"{self.prog}: error: unrecognized argument {flag}{hint}\n")
