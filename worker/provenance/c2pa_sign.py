"""C2PA Content Credentials for every output, signed with the operator's key.

The manifest records a `c2pa.created` action whose digital source type is
`trainedAlgorithmicMedia`, the generator, the style pack and the output's
short id. Operators give their own certificate chain and key
(AVATAR_C2PA_CERT / AVATAR_C2PA_KEY, PEM files); without them a private root
and signing certificate are made once under var/c2pa/, so manifests are
signed but verifiers report the signer as untrusted until the operator
uses a certificate from a C2PA trust list.
"""

from __future__ import annotations

import datetime
import io
import json
from functools import lru_cache
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings

from avatarapp.provenance.metadata import DIGITAL_SOURCE_TYPE, Provenance


def _self_signed_chain(folder: Path) -> tuple[bytes, bytes]:
    chain_path, key_path = folder / "chain.pem", folder / "signer.key"
    if chain_path.is_file() and key_path.is_file():
        return chain_path.read_bytes(), key_path.read_bytes()
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Chhavi (self-hosted)")])

    def usage(**flags: bool) -> x509.KeyUsage:
        fields = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                  "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"]
        return x509.KeyUsage(**{f: flags.get(f, False) for f in fields})

    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(name("Chhavi local root")).issuer_name(name("Chhavi local root"))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(name("Chhavi content signer")).issuer_name(root.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=730))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    chain = leaf.public_bytes(serialization.Encoding.PEM) + root.public_bytes(serialization.Encoding.PEM)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    folder.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(private)
    key_path.chmod(0o600)
    chain_path.write_bytes(chain)
    return chain, private


@lru_cache(maxsize=1)
def _signer() -> c2pa.Signer:
    if settings.AVATAR_C2PA_CERT and settings.AVATAR_C2PA_KEY:
        chain, key = Path(settings.AVATAR_C2PA_CERT).read_bytes(), Path(settings.AVATAR_C2PA_KEY).read_bytes()
    else:
        chain, key = _self_signed_chain(settings.VAR_DIR / "c2pa")
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=key, ta_url=None))


@lru_cache(maxsize=1)
def _context() -> c2pa.Context:
    # No claim thumbnail: by default the SDK embeds a full-size copy of the picture, which
    # made a 140 KB WebP weigh 2 MB, far too much for a phone on a slow connection.
    return c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))


def manifest_for(p: Provenance) -> dict:
    return {
        "claim_generator_info": [{"name": "Chhavi", "version": "0.1.0"}],
        "title": f"AI portrait {p.output_short_id}",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [
                {"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE,
                 "softwareAgent": p.software},
            ]}},
            {"label": "in.chhavi.output", "data": {"output": p.output_short_id, "pack": p.pack, "model": p.model}},
        ],
    }


def sign(data: bytes, mime: str, p: Provenance) -> bytes:
    out = io.BytesIO()
    c2pa.Builder(json.dumps(manifest_for(p)), _context()).sign(_signer(), mime, io.BytesIO(data), out)
    return out.getvalue()
