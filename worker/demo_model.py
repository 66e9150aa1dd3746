"""Build Chhavi's demo model and demo style packs, with no network.

The demo model has Stable Diffusion's architecture (CLIP text encoder, UNet,
VAE with the usual 8x downsampling, DDIM scheduler) at a tiny width, with
deterministic random weights. Its pictures are abstract colour fields shaped
by the photo, not portraits: it exists so the whole path (queue, LoRA packs,
storage, sharing) runs and is tested on any CPU. Real weights plug in through
AVATAR_BASE_MODEL.

The tokenizer is written here too: a byte-level BPE vocabulary over the
printable characters plus a few hundred merges learned from the demo prompts,
so prompts tokenise to real, distinct ids without a model hub.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any, TypedDict

import torch
from django.conf import settings  # read lazily, once main() has named the settings module

from avatarapp.modelstore.families import FAMILY_MARKER

# Bump when this module changes what it writes: `build` then rebuilds the packs.
DEMO_PACK_VERSION = "1.2.0"
SEED = 20261121
TEXT_DIM = 64
MAX_TOKENS = 77



class DemoPack(TypedDict):
    names: dict[str, str]
    descriptions: dict[str, str]
    prompt: str
    negative_prompt: str
    colour: tuple[int, int, int]


DEMO_PACKS: dict[str, DemoPack] = {
    "cinematic": {
        "names": {
            "en": "Cinematic", "hi": "सिनेमाई", "bn": "সিনেমাটিক", "mr": "सिनेमॅटिक", "te": "సినిమాటిక్",
            "ta": "சினிமா பாணி", "gu": "સિનેમેટિક", "kn": "ಸಿನಿಮೀಯ", "ml": "സിനിമാറ്റിക്", "pa": "ਸਿਨੇਮੈਟਿਕ",
            "or": "ସିନେମାଟିକ୍", "ur": "فلمی",
        },
        "descriptions": {
            "en": "Film-still lighting and deep colour, like a movie poster.",
            "hi": "फ़िल्मी रोशनी और गहरे रंग, जैसे किसी फ़िल्म का पोस्टर।",
            "bn": "সিনেমার মতো আলো আর গাঢ় রং, যেন ছবির পোস্টার।",
            "mr": "चित्रपटासारखा प्रकाश आणि गडद रंग, अगदी सिनेमाच्या पोस्टरसारखे.",
            "te": "సినిమా పోస్టర్‌లా, సినిమా వెలుగు మరియు గాఢమైన రంగులు.",
            "ta": "திரைப்பட போஸ்டர் போல, சினிமா ஒளியும் அடர்ந்த நிறங்களும்.",
            "gu": "ફિલ્મ પોસ્ટર જેવો, ફિલ્મી પ્રકાશ અને ઘેરા રંગો.",
            "kn": "ಸಿನಿಮಾ ಪೋಸ್ಟರ್‌ನಂತೆ, ಸಿನಿಮೀಯ ಬೆಳಕು ಮತ್ತು ಗಾಢ ಬಣ್ಣಗಳು.",
            "ml": "സിനിമാ പോസ്റ്റർ പോലെ, സിനിമാ വെളിച്ചവും കടുത്ത നിറങ്ങളും.",
            "pa": "ਫ਼ਿਲਮੀ ਪੋਸਟਰ ਵਾਂਗ, ਫ਼ਿਲਮੀ ਰੌਸ਼ਨੀ ਅਤੇ ਗੂੜ੍ਹੇ ਰੰਗ।",
            "or": "ସିନେମା ପୋଷ୍ଟର ପରି, ସିନେମା ଆଲୋକ ଓ ଗାଢ଼ ରଙ୍ଗ।",
            "ur": "فلمی پوسٹر کی طرح، فلمی روشنی اور گہرے رنگ۔",
        },
        "prompt": "{subject}, cinematic film still, dramatic rim lighting, shallow depth of field, rich colour grade",
        "negative_prompt": "blurry, low quality, distorted face, extra fingers, watermark",
        "colour": (40, 60, 120),
    },
    "avatar": {
        "names": {
            "en": "Avatar", "hi": "अवतार", "bn": "অবতার", "mr": "अवतार", "te": "అవతార్", "ta": "அவதார்",
            "gu": "અવતાર", "kn": "ಅವತಾರ್", "ml": "അവതാർ", "pa": "ਅਵਤਾਰ", "or": "ଅବତାର", "ur": "اوتار",
        },
        "descriptions": {
            "en": "A bright, friendly cartoon avatar for your profile picture.",
            "hi": "आपकी प्रोफ़ाइल फ़ोटो के लिए एक चमकीला, प्यारा कार्टून अवतार।",
            "bn": "আপনার প্রোফাইল ছবির জন্য উজ্জ্বল, মিষ্টি কার্টুন অবতার।",
            "mr": "तुमच्या प्रोफाइल फोटोसाठी एक उजळ, गोड कार्टून अवतार.",
            "te": "మీ ప్రొఫైల్ ఫోటో కోసం ప్రకాశవంతమైన, ముద్దైన కార్టూన్ అవతార్.",
            "ta": "உங்கள் சுயவிவரப் படத்துக்கு ஒரு பளிச்சென்ற, அழகான கார்ட்டூன் அவதார்.",
            "gu": "તમારા પ્રોફાઇલ ફોટો માટે એક તેજસ્વી, મીઠો કાર્ટૂન અવતાર.",
            "kn": "ನಿಮ್ಮ ಪ್ರೊಫೈಲ್ ಚಿತ್ರಕ್ಕಾಗಿ ಹೊಳೆಯುವ, ಮುದ್ದಾದ ಕಾರ್ಟೂನ್ ಅವತಾರ್.",
            "ml": "നിങ്ങളുടെ പ്രൊഫൈൽ ചിത്രത്തിനായി തിളക്കമുള്ള, ഓമനത്തമുള്ള കാർട്ടൂൺ അവതാർ.",
            "pa": "ਤੁਹਾਡੀ ਪ੍ਰੋਫਾਈਲ ਫੋਟੋ ਲਈ ਇੱਕ ਚਮਕਦਾਰ, ਪਿਆਰਾ ਕਾਰਟੂਨ ਅਵਤਾਰ।",
            "or": "ଆପଣଙ୍କ ପ୍ରୋଫାଇଲ ଫଟୋ ପାଇଁ ଏକ ଉଜ୍ଜ୍ୱଳ, ସୁନ୍ଦର କାର୍ଟୁନ ଅବତାର।",
            "ur": "آپ کی پروفائل تصویر کے لیے ایک روشن، پیارا کارٹون اوتار۔",
        },
        "prompt": "{subject}, 3d cartoon avatar, soft studio light, vibrant colours, clean background",
        "negative_prompt": "photo, realistic, dark, blurry, low quality, watermark",
        "colour": (220, 120, 60),
    },
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (what CLIP's BPE works on)."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = visible[:]
    n = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(visible, map(chr, chars), strict=True))


def learn_merges(corpus: list[str], count: int) -> list[tuple[str, str]]:
    """A few rounds of BPE over the demo prompts, so common words become single tokens."""
    words: Counter[tuple[str, ...]] = Counter()
    for text in corpus:
        for spelled in text.lower().replace(",", " ").split():
            words[tuple(spelled[:-1]) + (spelled[-1] + "</w>",)] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in words.items():
            for a, b in pairwise(word):
                pairs[(a, b)] += freq
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, freq in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        words = merged
    return merges


def write_tokenizer(folder: Path) -> int:
    """Write vocab.json / merges.txt / configs for a CLIPTokenizer; return the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = [p["prompt"].replace("{subject}", "portrait of a person") + " " + p["negative_prompt"]
              for p in DEMO_PACKS.values()]
    corpus.append("a photo portrait of a woman man person smiling face selfie")
    merges = learn_merges(corpus, 300)
    symbols = list(bytes_to_unicode().values())
    vocab_tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab_tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab: dict[str, int] = {}
    for token in vocab_tokens:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    }))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_TOKENS,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "do_lower_case": True,
    }))
    return len(vocab)


def build_pipeline(folder: Path) -> Any:
    """Create the tiny SD pipeline with seeded random weights and save it as a diffusers folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab_size = write_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=MAX_TOKENS, projection_dim=TEXT_DIM,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    ))
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=TEXT_DIM,
        attention_head_dim=8, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    # Any: diffusers' lazy top-level module shows mypy its dummy classes, which lack save_pretrained.
    pipe: Any = StableDiffusionImg2ImgPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    # Its own family, so its packs (LoRAs shaped for this tiny UNet) never meet a real SD1.5 model.
    (folder / FAMILY_MARKER).write_text(json.dumps({"family": "demo"}) + "\n", encoding="utf-8")
    return pipe


def build_lora(unet: Any, seed: int, rank: int = 4, scale: float = 0.6) -> dict:
    """A LoRA for the demo UNet's attention layers in diffusers' peft format, seeded per pack."""
    from peft import LoraConfig, get_peft_model_state_dict

    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                        init_lora_weights=False)
    unet.add_adapter(config, adapter_name="build")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale / rank**0.5)
    state = get_peft_model_state_dict(unet, adapter_name="build")
    unet.delete_adapters("build")
    return state


def write_pack(packs_dir: Path, slug: str, unet: Any, seed: int) -> None:
    from diffusers import StableDiffusionPipeline
    from PIL import Image, ImageDraw

    spec = DEMO_PACKS[slug]
    folder = packs_dir / slug
    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=build_lora(unet, seed),
                                              weight_name=f"{slug}.safetensors", safe_serialization=True)
    # A small "speed" LoRA for the 4-step preview, standing in for an LCM-LoRA.
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=build_lora(unet, seed + 100, scale=0.2),
                                              weight_name="speed.safetensors", safe_serialization=True)
    # A small preview card: the pack's colour with a portrait silhouette.
    preview = Image.new("RGB", (160, 160), spec["colour"])
    draw = ImageDraw.Draw(preview)
    draw.ellipse([55, 30, 105, 80], fill=(250, 230, 210))
    draw.pieslice([30, 85, 130, 185], 180, 360, fill=(250, 230, 210))
    preview.save(folder / "preview.webp", "WEBP", quality=80)

    def toml_table(d: dict[str, str]) -> str:
        return "".join(f'{k} = {json.dumps(v, ensure_ascii=False)}\n' for k, v in d.items())

    (folder / "pack.toml").write_text(
        f'slug = "{slug}"\nversion = "{DEMO_PACK_VERSION}"\nbase_family = "demo"\n'
        f'prompt = {json.dumps(spec["prompt"])}\nnegative_prompt = {json.dumps(spec["negative_prompt"])}\n'
        f'preview = "preview.webp"\n\n[names]\n{toml_table(spec["names"])}\n'
        f'[descriptions]\n{toml_table(spec["descriptions"])}\n'
        f'[[lora]]\nfile = "{slug}.safetensors"\nweight = 1.0\n\n'
        "[defaults]\nsteps = 8\nguidance = 5.0\nstrength = 0.6\nwidth = 512\nheight = 512\n\n"
        '[fast]\nscheduler = "lcm"\nsteps = 4\nguidance = 1.0\nlora = "speed.safetensors"\nlora_weight = 1.0\n',
        encoding="utf-8",
    )


def build_demo(model_dir: Path, packs_dir: Path, force: bool = False) -> list[str]:
    """Build what is missing; return what was built."""
    built: list[str] = []
    pipe = None
    if force or not (model_dir / "model_index.json").is_file():
        pipe = build_pipeline(model_dir)
        built.append(str(model_dir))
    elif not (model_dir / FAMILY_MARKER).is_file():
        # A demo model built before it named its family (Chhavi 0.1): name it now.
        (model_dir / FAMILY_MARKER).write_text(json.dumps({"family": "demo"}) + "\n", encoding="utf-8")
        built.append(str(model_dir / FAMILY_MARKER))
    for index, slug in enumerate(DEMO_PACKS):
        manifest = packs_dir / slug / "pack.toml"
        if force or not manifest.is_file() or f'version = "{DEMO_PACK_VERSION}"' not in manifest.read_text():
            if pipe is None:
                from diffusers import UNet2DConditionModel

                unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", local_files_only=True)
            else:
                unet = pipe.unet
            write_pack(packs_dir, slug, unet, seed=SEED + 1 + index)
            built.append(str(packs_dir / slug))
    return built


def main(argv: list[str] | None = None) -> int:
    """`python -m worker.demo_model build`: the demo model and packs under var/, if missing or outdated.

    A worker-side command (it needs torch); the web side only registers the packs it finds
    (`python manage.py register_packs`).
    """
    parser = argparse.ArgumentParser(prog="python -m worker.demo_model", description=main.__doc__)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--force", action="store_true", help="rebuild even if present and current")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarapp.settings")
    demo_dir = settings.VAR_DIR / "models" / "demo"
    built = build_demo(demo_dir, settings.AVATAR_PACKS_DIR, force=args.force)
    for path in built:
        print(f"built {path}")
    print("demo model and packs are current" if not built else f"built {len(built)} item(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
