"""The media path: RTP from Asterisk's externalMedia to PCM the recogniser can use.

Pure building blocks (``rtp``, ``codecs``, ``jitter``, ``vad``, ``ports``) and one asyncio UDP
adapter (``endpoint``). Import from the submodules; this package keeps no state.
"""
