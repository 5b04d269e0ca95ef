"""Progress reporting for training: a rich progress bar, or log lines when not interactive."""

from __future__ import annotations

from typing import Any, Protocol

from contracts.logging import get_logger

log = get_logger("autoglm.cloud.training")


class Reporter(Protocol):
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, loss: float, samples: int) -> None: ...
    def end_epoch(self, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class LogReporter:
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        log.debug("epoch start", extra={"epoch": epoch, "epochs": epochs, "steps": steps})

    def step(self, loss: float, samples: int) -> None:
        pass

    def end_epoch(self, row: dict[str, Any]) -> None:
        log.info("epoch done", extra=row)

    def close(self) -> None:
        pass


class RichReporter:
    """One bar per epoch with running loss and samples/s; a summary line when it ends."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:.0f} samples/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task: Any = None
        self._loss_sum = 0.0
        self._n = 0
        self._samples = 0
        self._t0 = 0.0

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        import time

        self._loss_sum, self._n, self._samples, self._t0 = 0.0, 0, 0, time.perf_counter()
        self._task = self._progress.add_task(f"epoch {epoch}/{epochs}", total=steps, loss=0.0, rate=0.0)

    def step(self, loss: float, samples: int) -> None:
        import time

        self._loss_sum += loss
        self._n += 1
        self._samples += samples
        rate = self._samples / max(time.perf_counter() - self._t0, 1e-9)
        self._progress.update(self._task, advance=1, loss=self._loss_sum / self._n, rate=rate)

    def end_epoch(self, row: dict[str, Any]) -> None:
        self._progress.console.print(
            f"  epoch {row['epoch']}: train loss {row['train_loss']:.4f} · val loss {row['val_loss']:.4f} · "
            f"val acc {row['val_accuracy']:.2%}"
            + "".join(f" ({k[-2:].upper()} {v:.2%})" for k, v in row.items() if k.startswith("val_accuracy_"))
            + f" · val macro-F1 {row['val_macro_f1']:.3f} · {row['seconds']:.0f}s"
            + ("  [green]best[/]" if row.get("best") else "")
        )

    def close(self) -> None:
        self._progress.stop()
