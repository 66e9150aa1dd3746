"""The check behind "no third-party requests" catches every way a page can point at another host."""

import pytest

from tests.helpers import third_party_urls, urls_in_html

SITE = "http://127.0.0.1:8000"


@pytest.mark.parametrize("url", [
    "//cdn.example.com/x.js",  # protocol-relative: the page's own scheme, another host
    " //cdn.example.com/x.js",
    "/\\cdn.example.com/x.js",  # browsers read the backslash as a slash
    "/\t/cdn.example.com/x.js",  # and drop tabs and newlines
    "https://cdn.example.com/x.js",
    "http://127.0.0.1:9000/x.js",  # the same machine, another port: another origin
    "http://localhost:8000/x.js",
    "http://127.0.0.1:8000@cdn.example.com/x.js",
    "javascript:alert(1)",
])
def test_another_host_is_third_party(url):
    assert third_party_urls([url], SITE) == [url]


@pytest.mark.parametrize("url", [
    "/static/app.css", "static/app.css", "?lang=hi", "#main", "http://127.0.0.1:8000/upload",
    "HTTP://127.0.0.1:8000/upload", "data:image/png;base64,iVBORw0KGgo=", "blob:http://127.0.0.1:8000/1f",
    "about:blank",
])
def test_the_sites_own_addresses_are_not(url):
    assert third_party_urls([url], SITE) == []


def test_urls_are_read_from_every_attribute_that_loads_or_links_unescaped():
    html = """<link rel="preload" href="&#47;&#47;fonts.example.com/a.woff2">
      <img src="/a.webp" srcset="/a.webp 1x, //img.example.com/b.webp 2x">
      <form action='/upload'><button formaction="https://forms.example.com/x">go</button></form>
      <video poster=//video.example.com/p.jpg></video><a href="#top">top</a>"""
    urls = urls_in_html(html)
    assert urls == ["//fonts.example.com/a.woff2", "/a.webp", "/a.webp", "//img.example.com/b.webp", "/upload",
                    "https://forms.example.com/x", "//video.example.com/p.jpg", "#top"]
    assert third_party_urls(urls, SITE) == ["//fonts.example.com/a.woff2", "//img.example.com/b.webp",
                                            "https://forms.example.com/x", "//video.example.com/p.jpg"]
