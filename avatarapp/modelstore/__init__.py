"""Getting real base models onto a machine, online or air-gapped.

Plain Python (no torch, diffusers, transformers, peft or accelerate: the web process and the
management commands use it). The pieces:

- ``catalogue``: ``catalogue.toml`` (setting AVATAR_MODEL_CATALOGUE), the models ``fetch_model``
  can download, each pinned to a hub commit with every file's size and SHA-256.
- ``download``: ``fetch_model NAME``, resumable (HTTP Range) and verified downloads through
  huggingface_hub's URLs and client (HF_ENDPOINT for a mirror, HF_TOKEN for gated repos).
- ``importer``: ``import_model PATH`` for a diffusers folder or a single ``.safetensors`` checkpoint.
- ``bundle``: ``export_bundle NAME OUT.tar [--packs]`` and ``import_model OUT.tar``.
- ``identity``: the identity adapter's folder layout (AVATAR_IDENTITY_ADAPTER), checked without torch.
- ``families``: ``detect_family`` (demo / sd15 / sdxl) from a folder or a checkpoint's header.
- ``store``: the models folder (AVATAR_MODELS_DIR, default ``var/models``), records, atomic installs.

Layout of the models folder::

    <models>/.staging/            work in progress: downloads (<file>.part, resumed on the next run)
                                  and imports; never loaded by anything
    <models>/<name>/              an installed model, moved here in one os.replace when every file
                                  has been verified:
        chhavi_model.json         the record: name, title, family, kind, licence, source (catalogue
                                  repo + revision, an imported path, or a bundle), files with size and
                                  sha256, installed_at
        chhavi_family.json        {"family": ...}: the worker's family marker
        kind "diffusers":         model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/ ...
        kind "checkpoint":        <checkpoint>.safetensors at the top of the folder, and the pipeline's
                                  config files laid out as a diffusers folder beside it (model_index.json,
                                  unet/config.json, tokenizer/vocab.json ...): the catalogue entry's own,
                                  or else Chhavi's (pipeline_configs), so the worker loads it with no hub:
                                  AVATAR_BASE_MODEL=<name> (or <folder>, or <folder>/<checkpoint> with
                                  AVATAR_BASE_CONFIG=<folder>). The record's "checkpoint" names the file.
        kind "lora":              the LoRA .safetensors (a speed LoRA for packs of that family)
        kind "ip_adapter":        an identity adapter (AVATAR_IDENTITY_ADAPTER=<name>): ip_adapter.safetensors
                                  and image_encoder/ (model.safetensors, config.json), see ``identity``
"""
