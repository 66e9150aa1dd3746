"""LoRA training on the worker's base model (issue 12).

- ``core``: a LoRA trained from (images, captions, settings) on the base model, in resumable
  chunks, independent of packs (a likeness model can reuse it).
- ``chunks``: one Celery chunk of a style pack's TrainingRun, from claiming its row to
  queueing the next chunk or installing the finished pack.
- ``pack``: the finished LoRA written out as a style pack folder and installed.
"""
