"""Search: spaces, storage, studies and the worker loop."""
