"""What the browser scripts share: their checks and their closing line."""


class Checks:
    """One line per check; `summary()` prints `browser: N passed, N failed` and returns
    the exit status (1 when a check failed)."""

    def __init__(self):
        self.results = []

    def __call__(self, name, ok, detail=""):
        self.results.append(bool(ok))
        print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}",
              flush=True)

    def summary(self):
        passed = sum(self.results)
        failed = len(self.results) - passed
        print(f"browser: {passed} passed, {failed} failed")
        return 1 if failed else 0
