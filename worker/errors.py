"""The engine's one error type, in its own module so the engine and its LoRA modes can both raise it."""


class EngineError(Exception):
    """A model, pack or request problem the operator must fix, with a message that says what."""
