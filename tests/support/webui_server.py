"""Run a real webui as a subprocess on 127.0.0.1 for end-to-end tests.

    server = WebuiServer(prepared)              # prepared = webui_env.prepare_data_dir(...)
    server.start()                              # waits until the API answers
    server.post("/sdapi/v1/txt2img", {...}).json()
    with server.temporarily(extra_args=["--hide-ui-dir-config"]):
        ...                                     # restarted with the variable, restored afterwards
    server.stop()
    with with_checkpoint(server, "tiny-sdxl"):   # another checkpoint of models/Stable-diffusion
        ...                                     # the previous one is selected again afterwards

The server gets its own process group, so ``stop()`` ends the launcher and every child it started.
"""

import atexit
import contextlib
import http.client
import json as jsonlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

HOST = "127.0.0.1"  # never anything else: tests must not listen on public interfaces

# The flags that start v1.10.1 without network on a CPU (tests/e2e/README.md explains each).
BASE_ARGS = (
    "--skip-prepare-environment", "--skip-install", "--skip-torch-cuda-test", "--no-download-sd-model",
    "--use-cpu", "all", "--no-half", "--api", "--opt-sdp-attention",
)
STARTED_MARKER = "Startup time:"  # printed by webui.py once the UI, the API and app_started callbacks are set up
READY_PATH = "/sdapi/v1/sd-models"
MODEL_LOADED_MARKER = "Model loaded in"  # the last line of modules/sd_models.py load_model
MODEL_FAILED_MARKER = "Stable diffusion model failed to load"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    body: bytes

    @property
    def ok(self):
        return 200 <= self.status < 300

    def json(self):
        return jsonlib.loads(self.body)

    def text(self):
        return self.body.decode("utf-8", "replace")


class WebuiStartupError(RuntimeError):
    pass


def _exited(pid):
    """Whether our child has exited, without reaping it (WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


class WebuiServer:
    def __init__(self, prepared, extra_args=(), extra_env=None, startup_timeout=None):
        self.prepared = prepared
        self.extra_args = list(extra_args)
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = float(startup_timeout or os.environ.get("WEBUI_STARTUP_TIMEOUT", 300))
        self.log_path = prepared.data_dir / "logs" / "webui.log"
        self.port = None
        self.proc = None
        self._log_offset = 0
        self.startup_seconds = None
        # Proxies from the environment must never see loopback traffic.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def base_url(self):
        return f"http://{HOST}:{self.port}"

    def command(self):
        p = self.prepared
        return [str(p.checkout.python), "launch.py", *BASE_ARGS, "--server-name", HOST, "--port", str(self.port),
                "--data-dir", str(p.data_dir), "--ckpt", str(p.checkpoint), *self.extra_args]

    def start(self):
        if self.proc is not None:
            raise RuntimeError("webui already running")
        for attempt in range(3):
            self.port = free_port()
            self._spawn()
            try:
                self._wait_ready()
                return self
            except WebuiStartupError:
                # Another process may have taken the port between free_port() and the bind.
                retry = attempt < 2 and "cannot find empty port" in self.log_tail().lower()  # gradio's words
                self.stop()
                if not retry:
                    raise

    def _spawn(self):
        env = self.prepared.env()
        env.update(self.extra_env)
        cmd = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            extra = " ".join(f"{k}={v}" for k, v in sorted(self.extra_env.items()))
            log.write(f"\n===== {time.strftime('%H:%M:%S')} start: {extra} {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=str(self.prepared.checkout.root), env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)

    def _wait_ready(self):
        started = time.monotonic()
        deadline = started + self.startup_timeout
        while time.monotonic() < deadline:
            if _exited(self.proc.pid):  # not reaped, so stop() can still signal its group safely
                raise WebuiStartupError(self._failure("the webui exited during startup"))
            # No HTTP request before the webui says it is set up: v1.10.1 adds the API middleware
            # after the server is listening, and a request in between makes that fail ("Cannot add
            # middleware after an application has started"), which kills the webui.
            if STARTED_MARKER in self._log_text():
                try:
                    if self.get(READY_PATH, timeout=5).ok:
                        self.startup_seconds = time.monotonic() - started
                        return
                except (OSError, http.client.HTTPException):  # refused / reset / timed out
                    pass
            time.sleep(0.5)
        raise WebuiStartupError(self._failure(f"the webui API did not answer within {self.startup_timeout:.0f} s"))

    def wait_for_startup_model(self, timeout=300):
        """Wait until the checkpoint the webui loads at startup is loaded. v1.10.1 loads it in a thread
        after the API answers (modules/initialize.py); changing ``sd_model_checkpoint`` meanwhile runs a
        second load beside it that does not take its lock, and the two break each other (the new model's
        weights stay on the meta device) while the options POST still answers 200."""
        if "--skip-load-model-at-start" in self.extra_args:
            return
        deadline = time.monotonic() + timeout
        while True:
            text = self._log_text()
            if MODEL_LOADED_MARKER in text:
                return
            if MODEL_FAILED_MARKER in text:
                raise WebuiStartupError(self._failure("the startup checkpoint failed to load"))
            if self.proc is None or _exited(self.proc.pid):
                raise WebuiStartupError(self._failure("the webui exited while it loaded the startup checkpoint"))
            if time.monotonic() > deadline:
                raise WebuiStartupError(self._failure(f"the startup checkpoint was not loaded within {timeout:.0f} s"))
            time.sleep(0.2)

    def _failure(self, what):
        return f"{what} ({self.base_url}); log {self.log_path}, last lines:\n{self.log_tail()}"

    def _log_text(self):
        """What the current (or last) run wrote to the log so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=60):
        # tqdm progress bars redraw with \r; keep the last state of each line.
        text = self._log_text().rstrip("\n")
        return "\n".join(line.split("\r")[-1] for line in text.split("\n")[-lines:])

    def stop(self, timeout=20):
        proc, self.proc = self.proc, None
        atexit.unregister(self.stop)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the whole group: launcher, webui and anything they spawned
        deadline = time.monotonic() + timeout
        while not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        # The leader is still unreaped here, so its id cannot name another group yet.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def restart(self, extra_args=None, extra_env=None):
        """Restart; ``extra_args`` / ``extra_env`` replace the current extras when given (``{}`` clears)."""
        self.stop()
        if extra_args is not None:
            self.extra_args = list(extra_args)
        if extra_env is not None:
            self.extra_env = dict(extra_env)
        return self.start()

    @contextlib.contextmanager
    def temporarily(self, extra_args=None, extra_env=None):
        """Run the block against a server restarted with these extras, then restart it as it was."""
        saved = (list(self.extra_args), dict(self.extra_env))
        self.restart(extra_args=extra_args, extra_env=extra_env)
        try:
            yield self
        finally:
            self.restart(extra_args=saved[0], extra_env=saved[1])

    def request(self, method, path, json=None, timeout=300):
        data = None if json is None else jsonlib.dumps(json).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with self._http.open(req, timeout=timeout) as resp:
                return Response(resp.status, resp.read())
        except urllib.error.HTTPError as err:  # 4xx/5xx still carry a body worth asserting on
            return Response(err.code, err.read())

    def get(self, path, timeout=60):
        return self.request("GET", path, timeout=timeout)

    def post(self, path, json=None, timeout=300):
        return self.request("POST", path, json=json, timeout=timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def current_checkpoint(server):
    """The title of the checkpoint the webui has selected (``tiny-sd15.safetensors [0123456789]``)."""
    response = server.get("/sdapi/v1/options")
    assert response.ok, f"GET /sdapi/v1/options answered {response.status}: {response.text()[:2000]}"
    return response.json()["sd_model_checkpoint"]


def select_checkpoint(server, name, timeout=600):
    """Load checkpoint ``name`` (its file name without extension, its file name or its title) and
    return its title. v1.10.1 loads it inside the POST (the option's onchange), so it is active when
    this returns; an unknown name is answered 500 ("model ... not found"). A failed load is not an
    error answer (opts.set logs it and goes on), hence the check of what is selected afterwards."""
    server.wait_for_startup_model()
    response = server.post("/sdapi/v1/options", {"sd_model_checkpoint": name}, timeout=timeout)
    assert response.ok, (f"selecting checkpoint {name!r} answered {response.status}: {response.text()[:2000]}\n"
                         f"{server.log_tail(40)}")
    title = current_checkpoint(server)
    assert checkpoint_stem(title) == checkpoint_stem(name), f"asked for {name!r}, the webui has {title!r}"
    return title


def checkpoint_stem(name):
    """``tiny-sdxl`` for ``tiny-sdxl``, ``tiny-sdxl.safetensors`` and ``tiny-sdxl.safetensors [0123456789]``."""
    base = name.split(" [")[0]
    for ext in (".safetensors", ".ckpt"):
        if base.endswith(ext):
            return base[:-len(ext)]
    return base


@contextlib.contextmanager
def with_checkpoint(server, name):
    """Run the block with checkpoint ``name`` loaded; the checkpoint selected before is loaded again
    afterwards, also when the block fails. Yields the loaded checkpoint's title."""
    previous = current_checkpoint(server)
    try:
        yield select_checkpoint(server, name)
    finally:
        if server.proc is not None:  # not when the block stopped the server
            select_checkpoint(server, previous)
