"""Sans-I/O protocol layer: bytes in, events and bytes out.

Nothing in this package may import trio, asyncio, socket or logging, or read a
clock: tests feed byte transcripts and compare events (tests/test_layering.py).
"""
