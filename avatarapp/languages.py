"""Languages Django does not know yet.

Django's LANG_INFO lacks Gujarati and Odia (and Assamese); without an entry,
``get_language_info`` raises for them and the language switcher breaks. Their
local names are also fixed for Kannada and Punjabi, which Django lists in English.
"""

from django.conf import locale

EXTRA_LANG_INFO = {
    "gu": {"bidi": False, "code": "gu", "name": "Gujarati", "name_local": "ગુજરાતી"},
    "or": {"bidi": False, "code": "or", "name": "Odia", "name_local": "ଓଡ଼ିଆ"},
    "as": {"bidi": False, "code": "as", "name": "Assamese", "name_local": "অসমীয়া"},
}
LOCAL_NAME_FIXES = {"kn": "ಕನ್ನಡ", "pa": "ਪੰਜਾਬੀ"}


def register_missing() -> None:
    for code, info in EXTRA_LANG_INFO.items():
        locale.LANG_INFO.setdefault(code, info)
    for code, name in LOCAL_NAME_FIXES.items():
        locale.LANG_INFO[code] = {**locale.LANG_INFO[code], "name_local": name}
