"""Person names: a normalized form unique per domain, and safe folder names."""

from __future__ import annotations

import re
import unicodedata

from anyascii import anyascii

# Where the usual romanization differs from anyascii's letter-by-letter one: Serbian Latin đ
# is 'dj', Serbian Cyrillic is written as Serbian Latin (so both scripts give one name), and
# Bulgarian ъ is a vowel ('a'; Russian names hardly use the hard sign).
LATIN = str.maketrans({"đ": "dj"})
SERBIAN_CYRILLIC = str.maketrans({"ж": "z", "ш": "s", "ч": "c", "х": "h", "ц": "c", "џ": "dz"})
SERBIAN_ONLY_LETTERS = frozenset("ђјљњћџ")
CYRILLIC_SIGNS = str.maketrans({"ъ": "a", "ь": ""})
# ISO 843: Greek υ after α, ε, η, ο is 'u' (ου -> ou), not anyascii's 'y'.
GREEK_DIPHTHONG_U = re.compile(r"(?<=[αεηο])[υύ]")


def _letters_only(text: str) -> str:
    """Symbols, emoji and punctuation become spaces, so anyascii never spells them out."""
    return "".join(char if unicodedata.category(char)[0] in "LMN" else " " for char in text)


def normalize_name(name: str) -> str:
    """'Novak Đoković' and 'Новак Ђоковић' -> 'novak_djokovic'; 'Γιάννης Αντετοκούνμπο' ->
    'giannis_antetokounmpo'; a name with no letter or digit -> 'unnamed'."""
    text = _letters_only(unicodedata.normalize("NFC", name.strip().lower())).translate(LATIN)
    if SERBIAN_ONLY_LETTERS.intersection(text):
        text = text.translate(SERBIAN_CYRILLIC)
    text = GREEK_DIPHTHONG_U.sub("u", text.translate(CYRILLIC_SIGNS))
    text = re.sub(r"[^a-z0-9]+", "_", anyascii(text).lower()).strip("_")
    return text[:200] or "unnamed"


def display_name_from_folder(folder_name: str) -> str:
    """'novak_djokovic' -> 'Novak Djokovic', 'jean-claude_juncker' -> 'Jean-Claude Juncker';
    only the underscore stands for a space: hyphens and apostrophes are part of names
    ('Kim_Dae-jung' -> 'Kim Dae-jung'), and names with capitals are kept as they are. A
    folder name with no letter at all is named after the folder, quoted."""
    words = [word for word in re.split(r"[_\s]+", folder_name.strip()) if word]
    if folder_name == folder_name.lower():
        words = ["-".join(part.capitalize() for part in word.split("-")) for word in words]
    return " ".join(words) or f"(unnamed folder {folder_name!r})"


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
