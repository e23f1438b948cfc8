"""Progress of long calls: a tqdm bar when tqdm is installed, otherwise the command-line tool's
one-line display on stderr. The core reports through begin/update/end/info/warning; every report
also lets Ctrl-C interrupt the call (KeyboardInterrupt; files written so far stay resumable)."""

import sys
import time
import warnings


class _Silent:
    def begin(self, label, total, unit):
        pass

    def update(self, done, extra):
        pass

    def end(self, extra):
        pass

    def info(self, message):
        pass

    def warning(self, message):
        warnings.warn(message, stacklevel=3)


class _Tqdm(_Silent):
    def __init__(self, tqdm):
        self._tqdm = tqdm
        self._bar = None
        self._done = 0

    def begin(self, label, total, unit):
        self.end("")
        self._bar = self._tqdm(total=total, desc=label, unit=" " + unit if unit else "it", leave=False)
        self._done = 0

    def update(self, done, extra):
        if self._bar is not None:
            self._bar.update(done - self._done)
            self._done = done
            if extra:
                self._bar.set_postfix_str(extra, refresh=False)

    def end(self, extra):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def info(self, message):
        print(message, file=sys.stderr)


class _Line(_Silent):
    """The command-line display: label, done/total, rate and ETA, redrawn at most 10 times a second."""

    def __init__(self, stream):
        self._stream = stream
        self._label = ""
        self._total = 0
        self._unit = ""
        self._start = 0.0
        self._last = 0.0

    def begin(self, label, total, unit):
        self._label, self._total, self._unit = label, total, unit
        self._start = self._last = time.monotonic()

    def update(self, done, extra):
        now = time.monotonic()
        if now - self._last < 0.1 and done < self._total:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        eta = (self._total - done) / rate if rate > 0 else 0.0
        self._stream.write(
            f"\r{self._label}: {done}/{self._total} {self._unit}, {rate:.0f}/s, ETA {eta:.0f} s {extra}\033[K"
        )
        self._stream.flush()

    def end(self, extra):
        if self._total:
            self._stream.write("\r\033[K")
            self._stream.flush()
        self._total = 0

    def info(self, message):
        print(message, file=self._stream)


def sink(progress):
    """The object the core reports to: progress=True (a bar), False (nothing), None (a bar when
    stderr is a terminal) or any object with begin/update/end/info/warning methods."""
    if progress is None:
        progress = sys.stderr.isatty()
    if progress is False:
        return _Silent()
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return _Line(sys.stderr)
        return _Tqdm(tqdm)
    return progress
