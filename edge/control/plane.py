"""The node's command handler: ``set_desired_version``, ``set_traffic_split``, twin deltas.

Commands arrive on the MQTT thread of :class:`edge.sync.agent.EdgeSync`, which runs each
command id once. With an acker attached (``attach_acker(sync.ack_command)``, as ``EdgeNode``
does) the handler only queues the apply and returns ``COMMAND_PENDING``: one worker thread
applies one command at a time, a newer command replaces a queued (not yet started) older one
(acked ``superseded``), and the outcome is acked when done -- ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "<type>: <reason>"}`` -- so paho's network thread never waits for a
download. Without an acker ``handle`` blocks and returns the outcome (bounded by
``control_apply_timeout_s``). The ack is the outcome, not a receipt. The work itself runs on the
serving event loop:
download into the model cache (in a worker thread), verify + load + warm + switch through the
serving ``ModelManager`` (which also holds the traffic split's second slot), then the
last-known-good pointer. Any failure leaves the current
version serving; the ack names the reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from contracts.commands import Command, CommandKind
from contracts.errors import BadRequest, BundleError, GatewayTimeout, Unavailable
from contracts.logging import get_logger
from edge.control.cache import LastGood, ModelCache
from edge.control.downloader import RegistryDownloader
from edge.serving.loaded_model import LoadedModel
from edge.serving.service import InferenceService
from edge.sync.commands import COMMAND_PENDING

Acker = Callable[..., object]  # EdgeSync.ack_command(command_id, result=None, *, error=None)

log = get_logger("autoglm.edge.control")

TWIN_DESIRED_VERSION = "desired_model_version"


class ControlPlane:
    def __init__(
        self,
        service: InferenceService,
        cache: ModelCache,
        downloader: RegistryDownloader | None,
        *,
        apply_timeout_s: float = 300.0,
        keep_versions: int = 4,
        model_name: str | None = None,
    ) -> None:
        self.service = service
        self.cache = cache
        self.downloader = downloader
        self.apply_timeout_s = apply_timeout_s
        self.keep_versions = keep_versions
        self.model_name = model_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bound = threading.Event()
        self._lock: asyncio.Lock | None = None
        self.applied: list[dict[str, Any]] = []  # outcomes, newest last (status / tests)
        self._acker: Acker | None = None
        self._jobs = threading.Condition()
        self._queued: dict[str, Any] | None = None  # the next command to apply (newest wins)
        self._worker: threading.Thread | None = None
        self._closed = False

    # -- wiring ------------------------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The serving event loop (where the ModelManager lives); commands wait for it."""
        self._loop = loop
        self._lock = asyncio.Lock()
        self._bound.set()

    def attach_acker(self, acker: Acker) -> None:
        """Apply commands in the worker thread and ack them with ``acker`` (``EdgeSync.ack_command``)."""
        self._acker = acker

    def handle(self, command: Command | Mapping[str, Any]) -> Any:
        """``EdgeSync.on_command`` handler (MQTT thread). None for commands it does not own;
        ``COMMAND_PENDING`` when an acker is attached (acked from the worker); else the outcome."""
        cmd = command if isinstance(command, Command) else Command.model_validate(command)
        if cmd.kind is None:
            return None
        if self._acker is not None and cmd.command_id:
            self.submit(cmd.payload())
            return COMMAND_PENDING
        return self._apply_blocking(cmd.payload())

    def _apply_blocking(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd.get("type") == CommandKind.SET_TRAFFIC_SPLIT:
            return self._run(self.apply_split(cmd))
        return self._run(self.apply_version(cmd))

    def submit(self, cmd: dict[str, Any]) -> None:
        """Queue ``cmd`` for the worker; it replaces a queued, not yet started command."""
        with self._jobs:
            replaced, self._queued = self._queued, cmd
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="edge-control-apply", daemon=True)
                self._worker.start()
            self._jobs.notify_all()
        if replaced is not None:
            log.info(
                "command %s (%s) superseded before it started by %s",
                replaced.get("command_id"),
                replaced.get("version") or replaced.get("type"),
                cmd.get("command_id") or cmd.get("source"),
            )
            self._ack(
                replaced,
                {"detail": "superseded by a newer command", "superseded_by": cmd.get("command_id")},
                None,
            )

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once no command is queued or applying (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._jobs:
            while self._queued is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._jobs.wait(left)
        return True

    _busy = False

    def close(self) -> None:
        """Stop the worker after the running command; a queued one is dropped (the cloud resends)."""
        with self._jobs:
            self._closed = True
            self._queued = None
            self._jobs.notify_all()

    def _work(self) -> None:
        while True:
            with self._jobs:
                while self._queued is None and not self._closed:
                    self._jobs.wait()
                if self._closed or self._queued is None:
                    return
                cmd: dict[str, Any] = self._queued
                self._queued = None
                self._busy = True
            try:
                result = self._apply_blocking(cmd)
            except Exception as err:
                if self._closed:  # shutting down mid-apply: no ack, the cloud resends after restart
                    log.info("command %s interrupted by shutdown", cmd.get("command_id"))
                    continue
                if cmd.get("source") == "twin":
                    log.warning("twin desired version %s not applied: %s", cmd.get("version"), err)
                self._ack(cmd, None, err)
            else:
                self._ack(cmd, result, None)
            finally:
                with self._jobs:
                    self._busy = False
                    self._jobs.notify_all()

    def _ack(
        self, cmd: Mapping[str, Any], result: Mapping[str, Any] | None, err: BaseException | None
    ) -> None:
        cid = cmd.get("command_id")
        if not cid or self._acker is None:
            return
        try:
            if err is not None:
                self._acker(str(cid), error=err)
            else:
                self._acker(str(cid), result)
        except Exception:  # pragma: no cover - the sync layer logs its own failures
            log.exception("could not ack command %s", cid)

    def on_twin_delta(self, delta: Mapping[str, str]) -> None:
        """KubeEdge desired ``desired_model_version`` → the same path as a cloud command."""
        version = delta.get(TWIN_DESIRED_VERSION)
        if not version:
            return
        active = self.service.active
        model = self.model_name or (active.name if active is not None else None)
        if not model:
            log.warning("twin asks for version %s but the node knows no model name yet", version)
            return
        self.submit(
            {
                "type": CommandKind.SET_DESIRED_VERSION.value,
                "model": model,
                "version": version,
                "source": "twin",
            }
        )

    def _run(self, coro: Any) -> dict[str, Any]:
        if not self._bound.wait(min(self.apply_timeout_s, 30.0)) or self._loop is None:
            coro.close()
            raise Unavailable("the serving loop is not running yet")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            result: dict[str, Any] = fut.result(self.apply_timeout_s)
            return result
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise GatewayTimeout(
                f"applying the command took longer than {self.apply_timeout_s:.0f}s"
            ) from None

    # -- set_desired_version -----------------------------------------------------------------------
    async def apply_version(self, cmd: dict[str, Any]) -> dict[str, Any]:
        model, version = str(cmd.get("model") or ""), str(cmd.get("version") or "")
        if not model or not version:
            raise BadRequest("set_desired_version needs 'model' and 'version'")
        assert self._lock is not None
        async with self._lock:
            try:
                out = await self._apply_version(model, version, cmd)
            except Exception as err:
                self._record(model, version, False, str(err))
                raise
            self._record(model, version, True, out.get("detail", ""))
            return out

    async def _apply_version(self, model: str, version: str, cmd: dict[str, Any]) -> dict[str, Any]:
        service = self.service
        await self._wait_idle()
        service.clear_split()
        active = service.active
        msha = str(cmd.get("manifest_sha256") or "") or None
        same = active is not None and active.name == model and active.version == version
        if active is not None and same and (msha is None or self._manifest_sha(active) in (None, msha)):
            self._remember(active)
            return self._result(active, "already serving")
        vdir = await self._download(model, version, msha, cmd.get("manifest_url"))
        loaded = await service.load(vdir, expected_name=model)
        if loaded.version != version:
            raise BundleError(f"bundle for {model}@{version} loaded as version {loaded.version}")
        self._remember(loaded)
        self._prune(loaded)
        return self._result(loaded, "applied")

    async def _download(self, model: str, version: str, msha: str | None, url: Any) -> Path:
        if self.downloader is None:
            found = self.cache.find(msha) if msha else None
            if found is None:
                raise Unavailable(
                    f"{model}@{version} is not in the model cache and the cloud registry is not "
                    "connected (no cloud URL, or registration still pending)"
                )
            return found
        dl = self.downloader
        return await asyncio.to_thread(dl.fetch_version, model, version, msha, str(url) if url else None)

    async def _wait_idle(self) -> None:
        """A load already running (e.g. the start-up bundle) finishes first."""
        while self.service.loading:
            await asyncio.sleep(0.05)

    # -- set_traffic_split -------------------------------------------------------------------------
    async def apply_split(self, cmd: dict[str, Any]) -> dict[str, Any]:
        model = str(cmd.get("model") or "")
        weights_raw = cmd.get("weights")
        if not model or not isinstance(weights_raw, dict) or not weights_raw:
            raise BadRequest("set_traffic_split needs 'model' and 'weights'")
        weights = {str(v): float(w) for v, w in weights_raw.items() if float(w) > 0}
        if not weights or len(weights) > 2 or any(w < 0 for w in weights.values()):
            raise BadRequest(
                f"traffic split weights {weights_raw} must name one or two versions with weight > 0"
            )
        service = self.service
        raw_manifests = cmd.get("manifests")
        manifests: dict[str, Any] = raw_manifests if isinstance(raw_manifests, dict) else {}
        assert self._lock is not None
        async with self._lock:
            await self._wait_idle()
            primary = max(weights, key=lambda v: weights[v])
            active = service.active
            if active is None or active.name != model or active.version not in weights:
                info = manifests.get(primary) or {}
                await self._apply_version(
                    model,
                    primary,
                    {
                        "manifest_sha256": info.get("manifest_sha256"),
                        "manifest_url": info.get("manifest_url"),
                    },
                )
                active = service.active
            assert active is not None
            if len(weights) == 1:
                service.clear_split()
                return {**self._result(active, "single version"), "weights": {active.version: 1.0}}
            other = next(v for v in weights if v != active.version)
            info = manifests.get(other) or {}
            vdir = await self._download(model, other, info.get("manifest_sha256"), info.get("manifest_url"))
            secondary = await service.load_secondary(vdir)
            if secondary.version != other or secondary.name != model:
                secondary.close()
                raise BundleError(
                    f"bundle for {model}@{other} loaded as {secondary.name}@{secondary.version}"
                )
            service.set_split(secondary, weights)
            log.info("traffic split %s", service.split_weights)
            return {**self._result(active, "split"), "weights": service.split_weights}

    # -- last-known-good ---------------------------------------------------------------------------
    def last_good_dir(self) -> tuple[Path, str | None] | None:
        """The last-known-good bundle dir (and adapter set) if it is still complete."""
        lkg = self.cache.read_last_good()
        if lkg is None:
            return None
        path = Path(lkg.path)
        found = self.cache.find(lkg.manifest_sha256)
        if found is None or found.resolve() != path.resolve():
            log.warning("last-known-good %s@%s is gone from the cache", lkg.model, lkg.version)
            return None
        return path, lkg.adapter_set

    def _remember(self, m: LoadedModel) -> None:
        if m.source is None:
            return
        msha = self._manifest_sha(m)
        if msha is None or self.cache.find(msha) is None:
            return  # served from outside the cache (e.g. --bundle): nothing to point at
        self.cache.write_last_good(
            LastGood(m.name, m.version, msha, str(self.cache.find(msha)), m.adapter_set)
        )

    def _prune(self, m: LoadedModel) -> None:
        protect = {p for p in (m.source, *(d.source for d in self.service.draining)) if p is not None}
        for p in list(protect):  # an adapter-only update needs its parent's dir
            parent = self._parent_dir(p)
            if parent is not None:
                protect.add(parent)
        try:
            self.cache.prune(self.keep_versions, protect)
        except OSError as err:  # pragma: no cover - disk trouble is not an apply failure
            log.warning("model cache prune failed: %s", err)

    def _parent_dir(self, source: Path) -> Path | None:
        from contracts.manifest import Manifest

        path = source / "manifest.yaml"
        if not path.is_file():
            return None
        man = Manifest.from_yaml(path.read_bytes(), str(path))
        return self.cache.find(man.parent.manifest_sha256) if man.parent is not None else None

    @staticmethod
    def _manifest_sha(m: LoadedModel) -> str | None:
        from contracts.bundle import sha256_file

        if m.source is None or not (m.source / "manifest.yaml").is_file():
            return None
        return sha256_file(m.source / "manifest.yaml")

    @staticmethod
    def _result(m: LoadedModel, detail: str) -> dict[str, Any]:
        return {"version": m.version, "model": m.name, "adapter_set": m.adapter_set, "detail": detail}

    def _record(self, model: str, version: str, ok: bool, detail: str) -> None:
        self.applied.append({"model": model, "version": version, "ok": ok, "detail": detail})
        del self.applied[:-50]
        if ok:
            log.info("now serving %s@%s (%s)", model, version, detail)
        else:
            log.warning(
                "could not apply %s@%s, still serving the current version: %s", model, version, detail
            )
