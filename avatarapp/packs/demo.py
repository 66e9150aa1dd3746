"""Facts about the demo packs that both the web side and the worker's builder need (no torch here)."""

# Bump when worker/demo_model.py changes what it writes; prepare_demo then rebuilds the packs.
DEMO_PACK_VERSION = "1.1.0"
DEMO_PACK_SLUGS = ("cinematic", "avatar")
