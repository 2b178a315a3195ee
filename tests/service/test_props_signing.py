"""AK/SK signing against huaweicloudsdkcore on generated requests (hypothesis)."""

from __future__ import annotations

import string
from urllib.parse import quote

import yarl
from hypothesis import example, given
from hypothesis import strategies as st

from tests.service.test_aksk import _ours, _sdk_authorization

# Any text without surrogates (they cannot be UTF-8 encoded, so never reach a URL), with the
# reserved and percent characters made likely.
_RESERVED = "-_.~ %+/=&?#:@!$'()*,;[]\"<>\\^`{|}"
_ANY_CHAR: st.SearchStrategy[str] = st.characters(exclude_categories=["Cs"])
texts = st.text(
    _ANY_CHAR | st.sampled_from(_RESERVED),
    min_size=0,
    max_size=12,
)
hosts = st.sampled_from(
    [
        "https://csbs.cn-north-1.myhuaweicloud.com",
        "https://csbs.cn-north-1.myhuaweicloud.com:8443",
        "http://127.0.0.1:43123",
        "http://[::1]:8080",
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, yarl.URL, dict[str, str], bytes]:
    """A request as the client builds it: percent-encoded path and query, its headers."""
    segments = draw(st.lists(texts, min_size=1, max_size=5))
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    if draw(st.booleans()):
        path += "/"
    keys = texts.map(lambda t: t or "k")
    pairs: list[tuple[str, str]] = draw(st.lists(st.tuples(keys, texts), max_size=5))
    repeat: bool = draw(st.booleans())
    if pairs and repeat:
        pairs.append((pairs[0][0], draw(texts)))  # a repeated key
    query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)
    url = yarl.URL(draw(hosts) + path + (f"?{query}" if query else ""), encoded=True)
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
    headers = {"X-Project-Id": draw(st.text(string.ascii_letters + string.digits, min_size=1))}
    body = b""
    if method not in {"GET", "HEAD"}:
        headers["Content-Type"] = "application/json"
        body = draw(st.binary(max_size=200))
    return method, url, headers, body


@given(request=requests())
@example(
    request=(
        "GET",
        yarl.URL("http://127.0.0.1:1/v1/p/items?b=2&a=1&a=0&c=%E4%B8%AD", encoded=True),
        {"X-Project-Id": "p"},
        b"",
    )
)
def test_our_signature_equals_the_sdk_one(
    request: tuple[str, yarl.URL, dict[str, str], bytes],
) -> None:
    """For any method, path, query (repeated keys, unicode, reserved characters) and body,
    the Authorization header we send is the one huaweicloudsdkcore computes."""
    method, url, headers, body = request
    ours = _ours(method, url, headers, body)
    assert ours["Authorization"] == _sdk_authorization(method, url, headers, body)
