"""Provenance written into every output: the visible label, the watermark, C2PA signing.

Only the worker writes these; reading them back (metadata, watermark, C2PA) is
web-side, in avatarapp/provenance/.
"""
