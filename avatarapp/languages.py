"""The languages Chhavi speaks, and the ones Django does not know yet.

The whole site speaks twelve languages (SITE_LANGUAGES). The privacy notice and the
pages that act on it (consent, withdrawal, export, erasure: PRIVACY_PATHS) also speak
every other language of the Constitution's Eighth Schedule (NOTICE_ONLY_LANGUAGES),
because India's DPDP Act (s. 5(3)) lets a person ask for the notice in any of them.
Elsewhere a notice-only language falls back to English (front/middleware.py), so a
page is never half in one language and half in another.

Django's LANG_INFO lacks most of these; without an entry ``get_language_info`` raises
and the language switcher breaks. Local names are also fixed for Kannada and Punjabi,
which Django lists in English.
"""

from django.conf import locale

SITE_LANGUAGES = [
    ("en", "English"),
    ("hi", "हिन्दी"),
    ("bn", "বাংলা"),
    ("mr", "मराठी"),
    ("te", "తెలుగు"),
    ("ta", "தமிழ்"),
    ("gu", "ગુજરાતી"),
    ("kn", "ಕನ್ನಡ"),
    ("ml", "മലയാളം"),
    ("pa", "ਪੰਜਾਬੀ"),
    ("or", "ଓଡ଼ିଆ"),
    ("ur", "اردو"),
]

# The rest of the Eighth Schedule, with the script each is written in here.
NOTICE_ONLY_LANGUAGES = [
    ("as", "অসমীয়া"),  # Assamese, Bengali-Assamese script
    ("brx", "बड़ो"),  # Bodo, Devanagari
    ("doi", "डोगरी"),  # Dogri, Devanagari
    ("ks", "کٲشُر"),  # Kashmiri, Perso-Arabic (right to left)
    ("kok", "कोंकणी"),  # Konkani, Devanagari
    ("mai", "मैथिली"),  # Maithili, Devanagari
    ("mni", "ꯃꯩꯇꯩꯂꯣꯟ"),  # Manipuri (Meitei), Meitei Mayek
    ("ne", "नेपाली"),  # Nepali, Devanagari
    ("sa", "संस्कृतम्"),  # Sanskrit, Devanagari
    ("sat", "ᱥᱟᱱᱛᱟᱲᱤ"),  # Santali, Ol Chiki
    ("sd", "سنڌي"),  # Sindhi, Perso-Arabic (right to left)
]

ALL_LANGUAGES = SITE_LANGUAGES + NOTICE_ONLY_LANGUAGES
NOTICE_ONLY_CODES = frozenset(code for code, _ in NOTICE_ONLY_LANGUAGES)
RIGHT_TO_LEFT = ["ur", "ks", "sd"]

# The source files of the privacy notice and its pages: a notice-only language's catalogue holds
# exactly their strings (tools/prune_notice_catalogues.py), all translated.
PRIVACY_SOURCES = (
    "avatarapp/templates/base.html", "avatarapp/templates/front/consent.html",
    "avatarapp/templates/front/account.html", "avatarapp/templates/front/account_delete.html",
    "avatarapp/templates/front/error.html", "avatarapp/front/account_views.py",
    "avatarapp/accounts/consent.py", "avatarapp/actions/accounts.py",
    # The likeness model's consent and the page that gives, shows and withdraws it.
    "avatarapp/templates/front/likeness.html", "avatarapp/front/likeness_views.py", "avatarapp/actions/likeness.py",
)

# Paths whose pages and messages are translated into every scheduled language.
PRIVACY_PATHS = ("/consent", "/account", "/likeness", "/api/v1/consent", "/api/v1/me", "/api/v1/likeness")

ENGLISH_NAMES = {
    "gu": "Gujarati", "or": "Odia", "as": "Assamese", "brx": "Bodo", "doi": "Dogri", "ks": "Kashmiri",
    "kok": "Konkani", "mai": "Maithili", "mni": "Manipuri", "ne": "Nepali", "sa": "Sanskrit",
    "sat": "Santali", "sd": "Sindhi",
}
LOCAL_NAME_FIXES = {"kn": "ಕನ್ನಡ", "pa": "ਪੰਜਾਬੀ"}


def register_missing() -> None:
    local_names = dict(ALL_LANGUAGES)
    for code, name in ENGLISH_NAMES.items():
        locale.LANG_INFO.setdefault(code, {"bidi": code in RIGHT_TO_LEFT, "code": code, "name": name,
                                           "name_local": local_names[code]})
    for code, name in LOCAL_NAME_FIXES.items():
        locale.LANG_INFO[code] = {**locale.LANG_INFO[code], "name_local": name}


def is_privacy_path(path: str) -> bool:
    return path.startswith(PRIVACY_PATHS)
