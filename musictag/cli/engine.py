"""``--engine local|ray`` of ``tag`` and ``embed``: the options, written once, and the ray
engine's errors as one line and exit 2. The engine itself is :mod:`musictag.scale`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer

from ..scale import EngineError, connect
from .app import fail, fail_error

ENGINES = ("local", "ray")

EngineOption = Annotated[str, typer.Option(
    "--engine", help="local (this machine, this process) or ray (a pool of Ray actors, each "
                     "loading the model once; pip install 'musictag[ray]').")]
RayAddressOption = Annotated[str | None, typer.Option(
    "--ray-address", help="With --engine ray: the cluster to join (auto, HOST:6379 or "
                          "ray://HOST:10001); default: start a local Ray on this machine. "
                          "Every node must read the files at the same paths.")]
ActorsOption = Annotated[int | None, typer.Option(
    "--actors", min=1, help="With --engine ray: how many actors (default: as many as the "
                            "cluster's CPUs hold).")]
CpusPerActorOption = Annotated[float | None, typer.Option(
    "--cpus-per-actor", min=0.25, help="With --engine ray: CPUs reserved for each actor, which "
                                       "also runs as many compute threads (default 4, or the "
                                       "cluster's CPUs when fewer).")]

Outcome = TypeVar("Outcome")


@dataclass(frozen=True)
class Engine:
    """The engine options of one run."""

    name: str
    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float | None = None

    @classmethod
    def choose(cls, name: str, *, address: str | None, actors: int | None,
               cpus_per_actor: float | None) -> Engine:
        """Exit 2 for an unknown engine, or ray options given to the local one (they would be
        ignored without a word)."""
        if name not in ENGINES:
            fail(f"unknown engine {name!r}; choose {', '.join(ENGINES)}")
        if name == "local" and (address is not None or actors or cpus_per_actor):
            fail("--ray-address, --actors and --cpus-per-actor apply with --engine ray")
        return cls(name, address, actors, cpus_per_actor)

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"

    def connect(self, *, verbose: bool) -> None:
        """Start or join Ray now, before a log is opened (a wrong address then cuts nothing).

        Ray Data's own progress bars and log lines (each run's summary, the traceback of a
        failed run) stay hidden unless ``verbose``: stderr has musictag's progress bar and one
        line per failure, as with the local engine.
        """
        try:  # Ray's start-up notes (token authentication is on, ...) only with --verbose
            connect(self.address, logging_level=logging.INFO if verbose else logging.ERROR)
        except EngineError as error:
            fail_error(error)
        import ray.data  # connect() succeeded, so Ray is installed

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = verbose
        logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.CRITICAL)

    def options(self) -> dict[str, Any]:
        """The :func:`musictag.scale.ray_tag` / ``ray_embed`` keywords these options give."""
        return {"actors": self.actors, "cpus_per_actor": self.cpus_per_actor}


def checked(outcomes: Iterator[Outcome]) -> Iterator[Outcome]:
    """The outcomes, with a ray run that fails as a whole ending in one line and exit 2; the
    records already logged stay, so ``--resume`` goes on from there."""
    try:
        yield from outcomes
    except EngineError as error:
        fail_error(error)
