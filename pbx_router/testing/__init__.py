"""Test support: an Asterisk 22 ARI emulator faithful to recordings of a real Asterisk 22.10.1."""

from pbx_router.testing.agents import AgentBehaviour
from pbx_router.testing.call import PlaybackRecord, SimulatedCall
from pbx_router.testing.emulator import AsteriskEmulator
from pbx_router.testing.pbx import AriError

__all__ = ["AgentBehaviour", "AriError", "AsteriskEmulator", "PlaybackRecord", "SimulatedCall"]
