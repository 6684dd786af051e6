"""StudioConfig: the settings of `defectgen studio`, the one definition the Python API
(`StudioSession`, `serve`) takes and the CLI's options are made from. The inputs (checkpoint,
dataset, split, output folder) are arguments, not settings."""

from __future__ import annotations

from dataclasses import dataclass

from defectgen.errors import ConfigError
from defectgen.settings import check_precision, setting


@dataclass
class StudioConfig:
    host: str = setting("127.0.0.1", "Address to listen on (127.0.0.1: this machine only).")
    port: int = setting(8765, "Port to listen on (0: any free port).")
    device: str = setting("cpu", "cpu, cuda, cuda:1.")
    precision: str = setting("auto", "auto | bf16 | fp32.")

    def validate(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ConfigError(f"`host` must be an address, e.g. 127.0.0.1; got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"`port` must be in 0..65535, got {self.port!r}")
        if not isinstance(self.device, str):
            raise ConfigError(f"`device` must be cpu, cuda or cuda:N, got {self.device!r}")
        check_precision(self.precision)
