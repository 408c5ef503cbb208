"""A local Uppzy M2M API that behaves like the documented one: for the demo, the smoke test, benchmarks, tests."""

from simulator.keys import key_fingerprint, parse_key_binding
from simulator.server import Fault, RecordedRequest, Simulator, SimulatorConfig

__all__ = ["Fault", "RecordedRequest", "Simulator", "SimulatorConfig", "key_fingerprint", "parse_key_binding"]
