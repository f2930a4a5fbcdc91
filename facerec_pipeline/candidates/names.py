"""Person names: a normalized form unique per domain, and safe folder names."""

from __future__ import annotations

import re
import unicodedata

# Letters NFKD does not decompose, and Serbian Cyrillic, transliterated the usual way.
TRANSLITERATION = str.maketrans(
    {
        "đ": "dj", "Đ": "Dj", "ß": "ss", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae",
        "Æ": "Ae", "þ": "th", "ı": "i",
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "ђ": "dj", "е": "e", "ж": "z",
        "з": "z", "и": "i", "ј": "j", "к": "k", "л": "l", "љ": "lj", "м": "m", "н": "n",
        "њ": "nj", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "ћ": "c", "у": "u",
        "ф": "f", "х": "h", "ц": "c", "ч": "c", "џ": "dz", "ш": "s", "й": "j", "ы": "y",
        "э": "e", "ю": "ju", "я": "ja", "ь": "", "ъ": "", "щ": "sc", "ё": "e", "є": "je",
        "і": "i", "ї": "ji", "ґ": "g",
    }
)  # fmt: skip


def normalize_name(name: str) -> str:
    """'Novak Đoković' -> 'novak_djokovic'; 'Новак Ђоковић' -> 'novak_djokovic'."""
    text = name.strip().lower().translate(TRANSLITERATION)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    return text[:200] or "unnamed"


def display_name_from_folder(folder_name: str) -> str:
    """'novak_djokovic' -> 'Novak Djokovic'; names with capitals are kept as they are."""
    words = re.split(r"[_\-\s]+", folder_name.strip())
    if folder_name == folder_name.lower():
        words = [word.capitalize() for word in words]
    return " ".join(word for word in words if word) or folder_name


def unique_normalized_name(base: str, taken: set[str], disambiguator: str | None) -> str:
    """`base` if free, else `base_<disambiguator>` (e.g. a Wikidata id), else `base_2`, `_3`..."""
    if base not in taken:
        return base
    if disambiguator:
        candidate = f"{base}_{normalize_name(disambiguator)}"
        if candidate not in taken:
            return candidate
    counter = 2
    while f"{base}_{counter}" in taken:
        counter += 1
    return f"{base}_{counter}"
