"""The code judge's side inside the sandbox. judge.py runs this file's text as the sandboxed program (it never
imports it there); the spec arrives as JSON on stdin, descriptor numbers in argv. Modes:

  tests REC           the candidate on each test input, each test in a forked child; one JSON record per test goes
                      to descriptor REC: {"i", "value": repr(result)} | {"i", "stdout": text} | {"i", "error": text} |
                      {"i", "timeout": true}; or {"load_error": text}. No expected output is ever here: the trainer
                      decodes the values with decode_plain and compares them itself.
  serve REQ RESP      the candidate as a function server: {"name", "args", "kwargs"} requests (repr text) on REQ,
                      {"value": repr(result)} | {"error": text, "type": exception name} answers on RESP.
  check REQ RESP REC  trusted: the dataset's checker (HumanEval's check(candidate), MBPP's asserts) runs here against
                      proxies of the serving candidate; one {"i", "ok", ...} record per test to REC. No candidate code
                      runs in this process and nothing but decode_plain'd plain data comes from the candidate.
judge.py imports decode_plain from here for the trainer's side.
"""
import ast
import io
import json
import linecache
import os
import select
import signal
import sys
import time
import traceback

_ATOMS = (type(None), bool, int, float, complex, str, bytes)


def decode_plain(text: str):
    """The value of `text` when it is the repr() of plain data (None, bool, int, float incl. inf/nan, complex, str,
    bytes, and tuples/lists/sets/dicts of them); ValueError for anything else, so no object with its own __eq__
    (user class or builtin subclass) can be made from it."""
    try:
        return _plain(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, RecursionError, MemoryError, TypeError) as e:
        raise ValueError(f"not plain data: {type(e).__name__}") from None


def _plain(node):
    if isinstance(node, ast.Constant) and type(node.value) in _ATOMS:
        return node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [_plain(n) for n in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items if isinstance(node, ast.List) else set(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_plain(k): _plain(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _plain(node.operand)
        if type(value) in (int, float, complex):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):          # complex: (1+2j)
        a, b = _plain(node.left), _plain(node.right)
        if type(a) in (int, float) and type(b) is complex:
            return a + b if isinstance(node.op, ast.Add) else a - b
    if isinstance(node, ast.Name) and node.id in ("inf", "nan"):
        return float(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("set", "frozenset") \
            and not node.keywords and len(node.args) <= 1:
        return set(_plain(node.args[0])) if node.args else set()
    raise ValueError("not plain data")


def error_text(e: BaseException) -> str:
    """The traceback of `e`, keeping only the frames of the candidate's and the dataset's code."""
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if f.filename in ("solution.py", "setup.py", "tests.py")]
    head = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames)) if frames else ""
    return head + "".join(traceback.format_exception_only(type(e), e))


def run_source(src: str, filename: str, ns: dict) -> None:
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    exec(compile(src, filename, "exec"), ns)


def load(spec: dict, name: str = "solution") -> dict:
    ns = {"__name__": name}
    run_source(spec.get("setup", ""), "setup.py", ns)
    run_source(spec["code"], "solution.py", ns)
    return ns


def entry(ns: dict, name: str):
    """The function under test: Solution().<name> for LeetCode-style code, else the top-level <name>."""
    return getattr(ns["Solution"](), name) if "Solution" in ns and name not in ns else ns[name]


# -- tests mode -------------------------------------------------------------------------------------------------
def _one_test(spec: dict, test, ns, program) -> None:
    """In the forked child: run one test with fd 0/1/2 on files; exit 0 when it finished."""
    signal.setitimer(signal.ITIMER_REAL, spec["test_timeout"])   # default SIGALRM action ends an overlong test
    for fd, name, mode in ((0, "in.txt", os.O_RDONLY), (1, "out.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                           (2, "err.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        os.dup2(os.open(name, mode, 0o600), fd)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, closefd=False)))
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)))
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), line_buffering=True)
    try:
        if spec["kind"] == "stdio":
            try:
                exec(program, ns)
            except SystemExit:
                pass
            if "threading" in sys.modules:      # as at interpreter exit: wait for the program's own threads
                threading = sys.modules["threading"]
                for t in threading.enumerate():
                    if t is not threading.main_thread() and not t.daemon:
                        t.join()
        else:
            args = decode_plain(test) if spec["kind"] == "call" else \
                [json.loads(line) for line in test.split("\n") if line.strip()]
            value = entry(ns, spec["entry_point"])(*args)
            with open("value.txt", "w") as f:
                f.write(repr(value))
        sys.stdout.flush()
    except BaseException as e:
        with open("error.txt", "w") as f:
            f.write(error_text(e))
        os._exit(1)
    os._exit(0)


def _read(name: str) -> str:
    try:
        with open(name, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def run_tests(spec: dict, rec: int) -> None:
    out = os.fdopen(rec, "w")

    def put(**record):
        out.write(json.dumps(record) + "\n")
        out.flush()

    program, ns = None, None
    try:
        if spec["kind"] == "stdio":
            ns = {"__name__": "__main__"}
            run_source(spec["setup"], "setup.py", ns)     # the import prelude, once; each test re-runs the code
            linecache.cache["solution.py"] = (len(spec["code"]), None, spec["code"].splitlines(True), "solution.py")
            program = compile(spec["code"], "solution.py", "exec")
        else:
            ns = load(spec)
    except BaseException as e:
        put(load_error=error_text(e))
        return
    for i, test in enumerate(spec["tests"]):
        for name in ("value.txt", "error.txt"):
            if os.path.exists(name):
                os.unlink(name)
        with open("in.txt", "w") as f:
            f.write(test if spec["kind"] == "stdio" else "")
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _one_test(spec, test, dict(ns) if spec["kind"] == "stdio" else ns, program)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
            put(i=i, timeout=True)
            return
        if status == 0 and spec["kind"] == "stdio":
            put(i=i, stdout=_read("out.txt"))
        elif status == 0 and os.path.exists("value.txt"):
            put(i=i, value=_read("value.txt"))
        else:
            why = _read("error.txt") or _read("err.txt")[-2000:] or \
                f"the program stopped (status {status}) before the test finished"
            put(i=i, error=why)


# -- serve / check modes ----------------------------------------------------------------------------------------
class Channel:
    """JSON lines over a pair of pipe descriptors; recv waits at most `timeout` seconds."""

    def __init__(self, rfd: int, wfd: int):
        self.rfd, self.wfd, self.buf = rfd, wfd, b""

    def send(self, obj) -> None:
        data = (json.dumps(obj) + "\n").encode()
        while data:
            data = data[os.write(self.wfd, data):]

    def recv(self, timeout: float | None = None, cap: int = 64 << 20):
        end = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = None if end is None else max(0.0, end - time.monotonic())
            if not select.select([self.rfd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk or len(self.buf) > cap:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def serve(spec: dict, req: int, resp: int) -> None:
    ch = Channel(req, resp)
    try:
        ns = load(spec)
    except BaseException as e:
        ch.send({"load_error": error_text(e)})
        return
    ch.send({"ready": True})
    while True:
        try:
            call = ch.recv()
        except EOFError:
            return
        try:
            value = ns[call["name"]](*eval(call["args"], {"inf": float("inf"), "nan": float("nan")}),
                                     **eval(call["kwargs"], {"inf": float("inf"), "nan": float("nan")}))
            if hasattr(value, "__next__") or type(value).__name__ in ("dict_keys", "dict_values", "dict_items"):
                value = list(value)             # what the checker would see when it iterates over the result
            reply = {"value": repr(value)}
        except BaseException as e:
            reply = {"error": error_text(e), "type": type(e).__name__}
        ch.send(reply)


STOPPED = "the program stopped before answering"


class CandidateFailed(Exception):
    """The candidate raised, stopped, or answered with something that is not plain data."""


class TestTimeout(BaseException):
    pass


def check(spec: dict, req: int, resp: int, rec: int) -> None:
    import builtins
    ch, out, deadline = Channel(resp, req), os.fdopen(rec, "w"), [0.0]

    def put(**record):
        out.write(json.dumps(record) + "\n")
        out.flush()

    def proxy(name):
        def call(*args, **kwargs):
            ch.send({"name": name, "args": repr(args), "kwargs": repr(kwargs)})
            try:
                reply = ch.recv(max(0.0, deadline[0] - time.monotonic()))
            except TimeoutError:
                raise TestTimeout from None
            except EOFError:
                raise CandidateFailed(STOPPED) from None
            if "value" in reply:
                try:
                    return decode_plain(str(reply["value"]))
                except ValueError:
                    raise CandidateFailed(f"{name}() returned something that is not plain data: "
                                          f"{str(reply['value'])[:200]}") from None
            exc = getattr(builtins, str(reply.get("type")), None)
            text = str(reply.get("error", "")).strip()
            if isinstance(exc, type) and issubclass(exc, Exception) and exc is not AssertionError:
                try:
                    err = exc(CandidateFailed(text))      # dataset checks may expect e.g. a ValueError
                except Exception:
                    err = CandidateFailed(text)
                raise err
            raise CandidateFailed(text)
        return call

    try:
        hello = ch.recv(spec["test_timeout"])
    except TimeoutError:
        hello = {"timeout": True}
    except EOFError:
        hello = {}
    if "load_error" in hello:
        put(load_error=str(hello["load_error"]))
        return
    if not hello.get("ready"):
        put(i=0, timeout=True) if "timeout" in hello else put(i=0, ok=False, error=STOPPED)
        return
    ns = {"__name__": "checker"}
    run_source(spec["prelude"], "setup.py", ns)
    if spec["kind"] == "check":
        run_source(spec["test_code"], "tests.py", ns)
        tests = [f"check({spec['entry_point']})"]
    else:
        tests = spec["tests"]
    for name in spec["proxies"]:
        ns[name] = proxy(name)
    for i, test in enumerate(tests):
        deadline[0] = time.monotonic() + spec["test_timeout"]
        try:
            if spec["kind"] == "check":
                ns["check"](ns[spec["entry_point"]])
            else:
                run_source(test, "tests.py", ns)
            put(i=i, ok=True)
        except TestTimeout:
            put(i=i, timeout=True)
            return
        except AssertionError as e:
            put(i=i, ok=False, error=error_text(e), **explain_assert(test, ns))
        except BaseException as e:
            cause = e.args[0] if e.args and isinstance(e.args[0], CandidateFailed) else e
            put(i=i, ok=False, error=str(cause) if isinstance(cause, CandidateFailed) else error_text(e))
            if str(cause) == STOPPED:
                return


def explain_assert(stmt: str, ns: dict) -> dict:
    """For a failed `assert X == Y`: {"expected": repr(Y), "got": repr(X)} (else {})."""
    try:
        node = ast.parse(stmt).body[0]
        cmp = node.test
        if isinstance(node, ast.Assert) and isinstance(cmp, ast.Compare) and isinstance(cmp.ops[0], ast.Eq):
            got = eval(compile(ast.Expression(cmp.left), "tests.py", "eval"), ns)
            want = eval(compile(ast.Expression(cmp.comparators[0]), "tests.py", "eval"), ns)
            return {"expected": repr(want), "got": repr(got)}
    except BaseException:
        pass
    return {}


if __name__ == "__main__":
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    SPEC = json.loads(sys.stdin.read())
    fds = [int(a) for a in sys.argv[1:]]
    {"tests": run_tests, "serve": serve, "check": check}[SPEC["mode"]](SPEC, *fds)
