"""Read an image's C2PA Content Credentials (the worker signs them: worker/provenance/c2pa_sign.py)."""

from __future__ import annotations

import io
import json

import c2pa


def read(data: bytes, mime: str) -> dict | None:
    """The active manifest's essentials, or None if the file carries no C2PA manifest."""
    try:
        report = json.loads(c2pa.Reader(mime, io.BytesIO(data)).json())
    except Exception:  # noqa: BLE001 - no manifest, a damaged one or an unknown type all read as "none"
        return None
    active = report.get("manifests", {}).get(report.get("active_manifest", ""), {})
    actions = [a for assertion in active.get("assertions", []) if assertion.get("label", "").startswith("c2pa.actions")
               for a in assertion.get("data", {}).get("actions", [])]
    generators = [g.get("name") for g in active.get("claim_generator_info", []) if g.get("name") != "c2pa-rs"]
    return {
        "claim_generator": active.get("claim_generator") or ", ".join(generators) or None,
        "signer": (active.get("signature_info") or {}).get("common_name"),
        "digital_source_type": next((a.get("digitalSourceType") for a in actions if a.get("digitalSourceType")), None),
        "validation": [s.get("code") for s in report.get("validation_status", [])] or ["valid"],
    }
