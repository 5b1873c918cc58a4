"""Engine implementations of :class:`pbx_router.speech.types.Recognizer` (imported lazily: each
pulls in a native library and possibly a large model)."""
