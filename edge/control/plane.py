"""The node's command handler: ``set_desired_version``, ``set_traffic_split``, twin deltas.

Commands arrive on the MQTT thread of :class:`edge.sync.agent.EdgeSync`, which runs each
command id once and sends back what the handler returns as ``{"ok": true, "result": ...}`` —
or ``{"ok": false, "error": "<type>: <reason>"}`` when it raises. The handler therefore
blocks until the version serves or failed (bounded by ``control_apply_timeout_s``): the ack the
cloud gets is the outcome, not a receipt. The work itself runs on the serving event loop:
download into the model cache (in a worker thread), verify + load + warm + switch through the
serving ``ModelManager``, then the last-known-good pointer. Any failure leaves the current
version serving; the ack names the reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.errors import AutoGLMError, BadRequest, BundleError, GatewayTimeout, Unavailable
from contracts.logging import get_logger
from edge.control.cache import LastGood, ModelCache
from edge.control.downloader import RegistryDownloader
from edge.serving.loaded_model import LoadedModel
from edge.serving.service import InferenceService

log = get_logger("autoglm.edge.control")

CMD_SET_VERSION = "set_desired_version"
CMD_TRAFFIC_SPLIT = "set_traffic_split"
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

    # -- wiring ------------------------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The serving event loop (where the ModelManager lives); commands wait for it."""
        self._loop = loop
        self._lock = asyncio.Lock()
        self._bound.set()

    def handle(self, command: Mapping[str, Any]) -> dict[str, Any] | None:
        """``EdgeSync.on_command`` handler (MQTT thread). None for commands it does not own."""
        kind = command.get("type")
        if kind == CMD_SET_VERSION:
            return self._run(self.apply_version(dict(command)))
        if kind == CMD_TRAFFIC_SPLIT:
            return self._run(self.apply_split(dict(command)))
        return None

    def on_twin_delta(self, delta: Mapping[str, str]) -> None:
        """KubeEdge desired ``desired_model_version`` → the same path as a cloud command."""
        version = delta.get(TWIN_DESIRED_VERSION)
        if not version:
            return
        model = self.model_name or (self.service.manager.active.name if self.service.manager.active else None)
        if not model:
            log.warning("twin asks for version %s but the node knows no model name yet", version)
            return

        def work() -> None:
            try:
                self._run({"type": CMD_SET_VERSION, "model": model, "version": version, "source": "twin"})
            except Exception as err:
                log.warning("twin desired version %s not applied: %s", version, err)

        threading.Thread(target=work, name="edge-control-twin", daemon=True).start()

    def _run(self, coro: Any) -> dict[str, Any]:
        if isinstance(coro, dict):  # from on_twin_delta: a command to apply
            coro = self.apply_version(coro)
        if not self._bound.wait(min(self.apply_timeout_s, 30.0)) or self._loop is None:
            coro.close()
            raise Unavailable("the serving loop is not running yet")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            result: dict[str, Any] = fut.result(self.apply_timeout_s)
            return result
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise GatewayTimeout(f"applying the command took longer than {self.apply_timeout_s:.0f}s") from None

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
        manager = self.service.manager
        await self._wait_idle()
        if hasattr(manager, "clear_split"):
            manager.clear_split()
        active = manager.active
        msha = str(cmd.get("manifest_sha256") or "") or None
        same = active is not None and active.name == model and active.version == version
        if active is not None and same and (msha is None or self._manifest_sha(active) in (None, msha)):
            self._remember(active)
            return self._result(active, "already serving")
        vdir = await self._download(model, version, msha, cmd.get("manifest_url"))
        loaded = await manager.load(vdir, expected_name=model)
        if loaded.version != version:
            raise BundleError(f"bundle for {model}@{version} loaded as version {loaded.version}")
        self._remember(loaded)
        self._prune(loaded)
        return self._result(loaded, "applied")

    async def _download(self, model: str, version: str, msha: str | None, url: Any) -> Path:
        if self.downloader is None:
            found = self.cache.find(msha) if msha else None
            if found is None:
                raise Unavailable(f"{model}@{version} is not in the model cache and the cloud registry is not "
                                  "connected (no cloud URL, or registration still pending)")
            return found
        dl = self.downloader
        return await asyncio.to_thread(dl.fetch_version, model, version, msha, str(url) if url else None)

    async def _wait_idle(self) -> None:
        """A load already running (e.g. the start-up bundle) finishes first."""
        while self.service.manager.loading:
            await asyncio.sleep(0.05)

    # -- set_traffic_split -------------------------------------------------------------------------
    async def apply_split(self, cmd: dict[str, Any]) -> dict[str, Any]:
        model = str(cmd.get("model") or "")
        weights_raw = cmd.get("weights")
        if not model or not isinstance(weights_raw, dict) or not weights_raw:
            raise BadRequest("set_traffic_split needs 'model' and 'weights'")
        weights = {str(v): float(w) for v, w in weights_raw.items() if float(w) > 0}
        if not weights or len(weights) > 2 or any(w < 0 for w in weights.values()):
            raise BadRequest(f"traffic split weights {weights_raw} must name one or two versions with weight > 0")
        manager = self.service.manager
        if len(weights) == 2 and not hasattr(manager, "set_split"):
            raise BadRequest("this node's model manager cannot keep two versions loaded")
        raw_manifests = cmd.get("manifests")
        manifests: dict[str, Any] = raw_manifests if isinstance(raw_manifests, dict) else {}
        assert self._lock is not None
        async with self._lock:
            await self._wait_idle()
            primary = max(weights, key=lambda v: weights[v])
            active = manager.active
            if active is None or active.name != model or active.version not in weights:
                info = manifests.get(primary) or {}
                await self._apply_version(model, primary, {"manifest_sha256": info.get("manifest_sha256"),
                                                           "manifest_url": info.get("manifest_url")})
                active = manager.active
            assert active is not None
            if len(weights) == 1:
                manager.clear_split()  # type: ignore[attr-defined]
                return {**self._result(active, "single version"), "weights": {active.version: 1.0}}
            other = next(v for v in weights if v != active.version)
            info = manifests.get(other) or {}
            vdir = await self._download(model, other, info.get("manifest_sha256"), info.get("manifest_url"))
            secondary: LoadedModel = await manager.load_secondary(vdir)  # type: ignore[attr-defined]
            if secondary.version != other or secondary.name != model:
                secondary.close()
                raise BundleError(f"bundle for {model}@{other} loaded as {secondary.name}@{secondary.version}")
            manager.set_split(secondary, weights)  # type: ignore[attr-defined]
            log.info("traffic split %s", manager.weights)  # type: ignore[attr-defined]
            return {**self._result(active, "split"), "weights": dict(manager.weights)}  # type: ignore[attr-defined]

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
        self.cache.write_last_good(LastGood(m.name, m.version, msha, str(self.cache.find(msha)), m.adapter_set))

    def _prune(self, m: LoadedModel) -> None:
        protect = {p for p in (m.source, *(d.source for d in self.service.manager.draining)) if p is not None}
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
            log.warning("could not apply %s@%s, still serving the current version: %s", model, version, detail)


def error_text(err: BaseException) -> str:
    return err.message if isinstance(err, AutoGLMError) else str(err)
