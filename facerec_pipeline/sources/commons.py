"""Photos from Wikimedia Commons: a person's P18 files and Commons category, with the licence
and attribution fields kept per file, and a licence policy. Parsing and client; no Dagster."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from facerec_pipeline.sources.polite_http import BadResponse, PoliteSession

COMMONS_API_URL = "https://commons.wikimedia.org/w/api.php"
THUMB_WIDTHS = (20, 40, 60, 120, 250, 330, 500, 960, 1280, 1920, 3840)
IMAGE_MIMES = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}
EXTMETADATA_FIELDS = (
    "LicenseShortName|License|LicenseUrl|UsageTerms|Artist|Credit|Attribution|"
    "AttributionRequired|Copyrighted|Restrictions"
)
TITLES_PER_REQUEST = 50
FREE_LICENSE = re.compile(
    r"^(cc0|cc[- ]by(-sa)?([- ][0-9.]+)?|cc[- ]by(-sa)?[- ]\S+|public domain|pd\b|pd-|"
    r"gfdl|attribution|no restrictions|copyrighted free use|fal|free art)",
    re.I,
)
NON_FREE = re.compile(
    r"\b(nc|nd)\b|non-?commercial|no derivative|fair use|all rights reserved", re.I
)


@dataclass
class CommonsFile:
    title: str
    page_id: int | None
    url: str
    download_url: str
    description_url: str | None
    sha1: str | None
    mime: str
    size: int | None
    width: int | None
    height: int | None
    license_short_name: str | None
    license_url: str | None
    usage_terms: str | None
    artist_html: str | None
    artist: str | None
    credit: str | None
    attribution: str | None
    attribution_required: bool | None
    copyrighted: bool | None
    restrictions: str | None


class _TextOfHtml(HTMLParser):
    """The text a reader sees: nested tags' text kept, entities decoded (html.unescape),
    script and style dropped, a break at block-level tags and none inside a word."""

    BREAKS = frozenset(
        "address br dd div dl dt h1 h2 h3 h4 h5 h6 hr li ol p table td th tr ul".split()
    )
    HIDDEN = frozenset({"script", "style"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BREAKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BREAKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def strip_html(text: str | None) -> str | None:
    """Commons extmetadata HTML (Artist, Credit, UsageTerms...) as plain text, whitespace
    collapsed; None for nothing left."""
    if text is None:
        return None
    parser = _TextOfHtml()
    parser.feed(text)
    parser.close()
    return " ".join("".join(parser.parts).split()) or None


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return {"true": True, "false": False}.get(value.strip().lower())


def base_params(width: int) -> dict[str, Any]:
    if width not in THUMB_WIDTHS:
        raise ValueError(f"thumbnail width {width} is not one of Commons' {THUMB_WIDTHS}")
    return {
        "action": "query",
        "format": "json",
        "formatversion": "2",
        "maxlag": "5",
        "prop": "imageinfo",
        "iiprop": "url|size|mime|sha1|extmetadata",
        "iiurlwidth": str(width),
        "iiextmetadatafilter": EXTMETADATA_FIELDS,
    }


def parse_page(page: dict[str, Any]) -> CommonsFile | None:
    """One `query.pages` entry; None for a missing or info-less page."""
    if page.get("missing") or page.get("invalid") or not page.get("imageinfo"):
        return None
    info = page["imageinfo"][0]
    meta = info.get("extmetadata") or {}

    def field(name: str) -> str | None:
        entry = meta.get(name)
        return entry.get("value") if isinstance(entry, dict) else None

    url = info.get("url")
    if not url:
        return None
    return CommonsFile(
        title=page.get("title", ""),
        page_id=page.get("pageid"),
        url=url,
        download_url=info.get("thumburl") or url,
        description_url=info.get("descriptionurl"),
        sha1=info.get("sha1"),
        mime=info.get("mime", ""),
        size=info.get("size"),
        width=info.get("width"),
        height=info.get("height"),
        license_short_name=strip_html(field("LicenseShortName")),
        license_url=field("LicenseUrl"),
        usage_terms=strip_html(field("UsageTerms")),
        artist_html=field("Artist"),
        artist=strip_html(field("Artist")),
        credit=strip_html(field("Credit")),
        attribution=strip_html(field("Attribution")),
        attribution_required=_flag(field("AttributionRequired")),
        copyrighted=_flag(field("Copyrighted")),
        restrictions=strip_html(field("Restrictions")),
    )


def pages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    query = payload.get("query", {})
    if not isinstance(query, dict):
        raise BadResponse("Commons answer: `query` is not an object")
    found = query.get("pages", [])
    if not isinstance(found, list):
        raise BadResponse("Commons answer: `query.pages` is not a list (use formatversion=2)")
    return found


def license_refusal(file: CommonsFile, policy: str) -> str | None:
    """None when `policy` allows the file, else the recorded reason. Policies: "free" (the
    default: free licences and public domain only) and "any"."""
    if policy == "any":
        return None
    if policy != "free":
        raise ValueError(f"unknown licence policy {policy!r} (free, any)")
    if file.copyrighted is False:
        return None
    name = file.license_short_name
    if not name:
        return "license_unknown"
    if FREE_LICENSE.match(name) and not NON_FREE.search(name):
        return None
    return "license_not_free"


class CommonsClient:
    def __init__(self, http: PoliteSession, api_url: str, thumb_width: int = 960):
        self.http = http
        self.api_url = api_url
        self.params = base_params(thumb_width)

    def files(self, names: list[str]) -> tuple[list[CommonsFile], list[str]]:
        """Files by name (without `File:`): (found, missing names)."""
        found: list[CommonsFile] = []
        missing: list[str] = []
        for start in range(0, len(names), TITLES_PER_REQUEST):
            chunk = names[start : start + TITLES_PER_REQUEST]
            titles = "|".join(f"File:{name}" for name in chunk)
            payload = self.http.get_json(self.api_url, {**self.params, "titles": titles})
            by_title = {}
            for page in pages(payload):
                parsed = parse_page(page)
                if parsed is not None:
                    by_title[_plain_title(parsed.title)] = parsed
            for name in chunk:
                match = by_title.get(_plain_title(f"File:{name}"))
                if match is None:
                    missing.append(name)
                else:
                    found.append(match)
        return found, missing

    def category_files(self, category: str, limit: int) -> list[CommonsFile]:
        """Files of `Category:<category>`, following continuation until `limit` image files
        (jpeg, png, webp) are found or the category ends. Other files seen on the way are
        returned too, so the caller can record why it skipped them."""
        params = {
            **self.params,
            "generator": "categorymembers",
            "gcmtitle": f"Category:{category}",
            "gcmtype": "file",
            "gcmlimit": "50",
        }
        merged: dict[int, CommonsFile] = {}
        continuation: dict[str, Any] = {}
        while True:
            payload = self.http.get_json(self.api_url, {**params, **continuation})
            for page in pages(payload):
                parsed = parse_page(page)
                if parsed is not None and parsed.page_id is not None:
                    merged.setdefault(parsed.page_id, parsed)
            images = [f for f in merged.values() if f.mime in IMAGE_MIMES]
            continuation = payload.get("continue") or {}
            if len(images) >= limit or not continuation:
                kept = {file.page_id for file in images[:limit]}
                return [
                    f for f in merged.values() if f.mime not in IMAGE_MIMES or f.page_id in kept
                ]


def _plain_title(title: str) -> str:
    return title.replace("_", " ").strip().casefold()
