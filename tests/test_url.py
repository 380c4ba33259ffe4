"""minipub's urlsplit gives every URL the attributes urllib.parse.urlsplit gives it (plain ones
split without importing urllib.parse)."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from minipub._url import PlainURL, urlsplit

from .children import ROOT

ATTRIBUTES = ("scheme", "netloc", "path", "query", "fragment", "hostname", "username", "password")


def attributes(split: Any, url: str) -> Any:
    """Every attribute of ``split(url)``, or the error it raised (each attribute's own, for the port)."""
    try:
        parts = split(url)
    except ValueError as exc:
        return ("ValueError", str(exc))
    try:
        port: Any = parts.port
    except ValueError as exc:
        port = ("ValueError", str(exc))
    return (*tuple(getattr(parts, name) for name in ATTRIBUTES), port)


hosts = st.text("abcXYZ019.-", min_size=0, max_size=12)
ports = st.one_of(st.just(""), st.integers(0, 99999).map(lambda n: f":{n}"), st.sampled_from([":", ":0080", ":x", ":1:2"]))
tails = st.text(st.sampled_from([*list("/?#@:[]%aZ9 ~\t\n\\"), "é"]), max_size=16)
urls = st.builds(lambda scheme, host, port, tail: f"{scheme}{host}{port}{tail}",
                 st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "http:/", "", " http://"]),
                 st.one_of(hosts, st.sampled_from(["[::1]", "user:pw@host", "@h", "h\u0130st"])), ports, tails)


@given(urls)
def test_every_url_splits_as_urllib_splits_it(url: str) -> None:
    assert attributes(urlsplit, url) == attributes(urllib.parse.urlsplit, url)


plain_urls = st.builds(lambda scheme, host, port, tail: f"{scheme}{host}{port}{tail}",
                       st.sampled_from(["http://", "https://"]), hosts.filter(bool),
                       st.one_of(st.just(""), st.integers(0, 70000).map(lambda n: f":{n}")),
                       st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=24))


@given(plain_urls)
def test_plain_urls_split_as_urllib_splits_them(url: str) -> None:
    assert attributes(urlsplit, url) == attributes(urllib.parse.urlsplit, url)


@given(st.text(max_size=40))
def test_any_text_splits_as_urllib_splits_it(url: str) -> None:
    assert attributes(urlsplit, url) == attributes(urllib.parse.urlsplit, url)


def test_a_plain_url_is_split_without_urllib() -> None:
    parts = urlsplit("http://Api.Example.com:8080/api/v1/publish?x=1#f")
    assert isinstance(parts, PlainURL) and parts.hostname == "api.example.com" and parts.port == 8080
    assert not isinstance(urlsplit("http://user:pw@host/"), PlainURL)
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from minipub._url import urlsplit; "
            "urlsplit('https://api.outpost.hookdeck.com/2025-07-01'); assert 'urllib.parse' not in sys.modules")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
